"""A candidate parallel layout and the training shape it is evaluated for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Layout:
    tp: int = 1
    pp: int = 1
    vpp: Optional[int] = None
    cp: int = 1
    dp: int = 1
    sp: bool = False
    micro_batch_size: int = 1  # sequences per micro-batch (a DPO pair is 2 sequences)
    recompute: Optional[str] = None  # None | "selective" | "full"
    recompute_num_layers: int = 1  # full recompute: layers per checkpointed group (uniform method)
    distributed_optimizer: bool = True
    sequences_per_sample: int = 1  # 2 for DPO: the stage's micro_batch_size counts pairs

    @property
    def world_size(self) -> int:
        return self.tp * self.pp * self.cp * self.dp

    def describe(self) -> str:
        parts = [f"TP{self.tp}", f"PP{self.pp}"]
        if self.vpp:
            parts.append(f"VPP{self.vpp}")
        unit = " pairs" if self.sequences_per_sample == 2 else ""
        parts += [f"CP{self.cp}", f"DP{self.dp}", f"mbs{self.micro_batch_size // self.sequences_per_sample}{unit}"]
        if self.sp:
            parts.append("SP")
        if self.recompute:
            parts.append(f"rc={self.recompute}" + (f"/{self.recompute_num_layers}" if self.recompute == "full" else ""))
        if not self.distributed_optimizer:
            parts.append("no-distopt")
        return " ".join(parts)

    def overrides(self) -> list[str]:
        """The config overrides that select this layout in `findap-nemo train`/`dpo`."""
        out = [f"parallel.tensor_model_parallel_size={self.tp}", f"parallel.pipeline_model_parallel_size={self.pp}",
               f"parallel.virtual_pipeline_model_parallel_size={self.vpp if self.vpp else 'null'}",
               f"parallel.context_parallel_size={self.cp}", f"parallel.sequence_parallel={str(self.sp).lower()}",
               f"parallel.use_distributed_optimizer={str(self.distributed_optimizer).lower()}",
               f"schedule.micro_batch_size={self.micro_batch_size // self.sequences_per_sample}",
               f"model.recompute_granularity={self.recompute or 'null'}"]
        if self.recompute == "full":
            out += ["model.recompute_method=uniform", f"model.recompute_num_layers={self.recompute_num_layers}"]
        return out
