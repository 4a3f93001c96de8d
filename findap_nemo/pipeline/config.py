"""`findap-nemo run` config: which config and overrides each stage gets; the wiring between stages is automatic."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from findap_nemo.config import Problems


@dataclass
class StageSpec:
    config: Optional[str] = None  # the stage's own YAML (configs/<stage>/...)
    overrides: list[str] = field(default_factory=list)  # extra dotted overrides for that stage
    nproc_per_node: Optional[int] = None  # megatron stages: local processes (CPU gloo ranks / GPUs)
    enabled: bool = True


@dataclass
class BaseModelSpec:
    """The starting policy: an HF checkpoint folder, or (CPU demo) a random Llama of a preset shape."""

    hf_path: Optional[str] = None  # e.g. a local copy of Meta-Llama-3-8B-Instruct
    random_preset: Optional[str] = "tiny"  # used when hf_path is null: configs/model/<preset>.yaml shape
    tokenizer: Optional[str] = "samples/tokenizer"  # for the random model (real checkpoints bring their own)
    seed: int = 0


@dataclass
class PipelineConfig:
    run_dir: str = "runs/demo"
    title: str = "FinDAP pipeline"
    base_model: BaseModelSpec = field(default_factory=BaseModelSpec)
    data: StageSpec = field(default_factory=StageSpec)
    train: StageSpec = field(default_factory=StageSpec)
    convert: StageSpec = field(default_factory=StageSpec)
    genrm: StageSpec = field(default_factory=StageSpec)
    dpo: StageSpec = field(default_factory=StageSpec)
    eval: StageSpec = field(default_factory=StageSpec)
    genrm_judge: Optional[str] = None  # HF folder of the GenRM judge; default: the CPT+IT policy judges itself

    def validate(self) -> None:
        import os

        p = Problems()
        b = self.base_model
        p.check(bool(b.hf_path) or bool(b.random_preset), "base_model", "hf_path=null, random_preset=null",
                "give base_model.hf_path (an HF checkpoint folder) or base_model.random_preset (e.g. tiny)")
        if b.hf_path:
            p.check(os.path.isdir(b.hf_path), "base_model.hf_path", b.hf_path, "folder not found")
        elif b.tokenizer:
            p.check(os.path.isdir(b.tokenizer), "base_model.tokenizer", b.tokenizer,
                    "folder not found (the demo tokenizer ships in samples/tokenizer)")
        for name in ("data", "train", "genrm", "dpo", "eval"):
            spec: StageSpec = getattr(self, name)
            if spec.enabled:
                p.check(bool(spec.config), f"{name}.config", spec.config, f"give the {name} stage's YAML config")
                if spec.config:
                    p.check(os.path.isfile(spec.config), f"{name}.config", spec.config, "file not found")
        p.raise_if_any()
