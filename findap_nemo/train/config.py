"""`findap-nemo train` config schema: the megatron job sections every training job has
(:class:`~findap_nemo.config.schema.MegatronJobConfig`) and the training data (the data stage's manifest)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from findap_nemo.config.schema import MegatronJobConfig, use_te


@dataclass
class TrainDataConfig:
    manifest: Optional[str] = None  # the data stage's manifest.json
    mock: bool = False  # synthetic tokens (benchmarks, smoke tests)
    num_workers: int = 0
    reset_position_ids: bool = True  # positions restart at each packed document
    reset_attention_mask: bool = False  # per-document attention isolation (GPU, TE THD) ; CPU uses a dense mask


@dataclass
class TrainJobConfig(MegatronJobConfig):
    """`findap-nemo train`: joint CPT+IT training."""

    data: TrainDataConfig = field(default_factory=TrainDataConfig)

    def validate(self, world_size: int | None = None) -> None:
        p = self.validate_sections(world_size)
        p.check(self.data.mock or bool(self.data.manifest), "data.manifest", self.data.manifest,
                "give the data stage's manifest.json (findap-nemo data ...) or set data.mock=true")
        if self.data.reset_attention_mask:
            p.check(not use_te(self.model), "data.reset_attention_mask", True,
                    "per-document attention isolation is implemented as a dense mask for megatron's local layers; "
                    "with Transformer Engine set it to false (positions still reset) or model.transformer_impl=local")
        if self.data.manifest and not self.data.mock:
            p.check(os.path.isfile(self.data.manifest), "data.manifest", self.data.manifest,
                    "file not found; build it with `findap-nemo data --config <recipe>`")
        p.raise_if_any()
