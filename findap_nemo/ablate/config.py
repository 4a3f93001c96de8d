"""`findap-nemo ablate` config: a base pipeline and its variants, listed or as a grid of axes.

A variant is the base pipeline (``pipeline:``, e.g. configs/demo.yaml) with dotted overrides of the pipeline config
(``recipe=sequential``, ``dpo.enabled=false``) and overrides added to one stage's own (``stages: {train:
[optim.lr=1e-5]}``). A grid's axes multiply: ``grid: {recipe: [joint, sequential], lr: [lo, hi]}`` gives four
variants named ``joint-lo``, ``joint-hi``, ... Which stages the variants share is not declared here: it follows from
the stages' fingerprints (see :mod:`findap_nemo.ablate.run`).
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from findap_nemo.config import ConfigError, Problems, load_config
from findap_nemo.pipeline.config import PipelineConfig, StageSpec

# stages whose own overrides a variant can extend (`stages:` keys)
STAGE_KEYS = ("data", "train", "train_cpt", "convert", "genrm", "dpo")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


@dataclass
class VariantSpec:
    name: str = "???"
    overrides: List[str] = field(default_factory=list)  # pipeline-config overrides: recipe=sequential, ...
    stages: Dict[str, List[str]] = field(default_factory=dict)  # stage -> overrides after its own: {train: [..]}


@dataclass
class AblationConfig:
    pipeline: str = ""  # the base pipeline YAML: base model and every stage's config (configs/demo.yaml)
    overrides: List[str] = field(default_factory=list)  # pipeline overrides applied to every variant
    run_dir: str = "runs/ablate"  # store/ (stage outputs, one folder per distinct stage), variants/, compare/
    title: str = "FinDAP ablation"  # the comparison report's heading
    variants: List[VariantSpec] = field(default_factory=list)  # each: name, overrides, stages
    grid: Dict[str, List[VariantSpec]] = field(default_factory=dict)  # axis -> levels; the product adds variants
    # which models of a variant FinEval compares with the base: final (the DPO model when DPO is on, else the
    # trained one) | all (the trained one as <variant>_sft too)
    evaluate: str = "final"
    eval: StageSpec = field(default_factory=StageSpec)  # the comparison's FinEval; default: the pipeline's eval
    # the variant every other one is also compared with, pairwise on the same items (the recipe comparison
    # itself: does sequential forget more than joint?); default: the first variant that finished
    reference: Optional[str] = None
    # SLURM only (--slurm): resources per stage over the cluster config's, e.g. {train: {nodes: 2}, eval: {...}}
    slurm_resources: Dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        p = Problems()
        p.check(os.path.isfile(self.pipeline), "pipeline", self.pipeline, "give the base pipeline YAML "
                "(e.g. configs/demo.yaml)")
        p.check(self.evaluate in ("final", "all"), "evaluate", self.evaluate, "use final or all")
        p.check(bool(self.variants or self.grid), "variants", [], "list variants or give a grid of axes")
        for where, v in [(f"variants[{i}]", v) for i, v in enumerate(self.variants)] + \
                [(f"grid.{axis}[{i}]", v) for axis, levels in self.grid.items() for i, v in enumerate(levels)]:
            p.check(_NAME.fullmatch(v.name or "") is not None and v.name != "base", f"{where}.name", v.name,
                    "use letters, digits, '_' or '-' (it names the variant's folder and its FinEval model); "
                    "'base' is the base model's")
            for stage in v.stages:
                p.check(stage in STAGE_KEYS, f"{where}.stages.{stage}", v.stages[stage],
                        f"stages are {list(STAGE_KEYS)}")
        for axis, levels in self.grid.items():
            p.check(bool(levels), f"grid.{axis}", levels, "an axis needs at least one level")
        from findap_nemo.pipeline.stages import Paths

        for stage, res in self.slurm_resources.items():
            p.check(stage in Paths.FOLDERS, f"slurm_resources.{stage}", res, f"stages are {list(Paths.FOLDERS)}")
        p.raise_if_any()
        names = [v.name for v in expand(self)]
        if self.reference is not None and self.reference not in names:
            raise ConfigError(f"reference={self.reference!r}: not a variant; variants: {names}")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"variants: names {dup} occur twice (a listed variant and a grid combination, or two "
                              f"levels of one axis); variant names must be unique")


def expand(cfg: AblationConfig) -> list[VariantSpec]:
    """The listed variants, then one per combination of the grid's levels (axes in the order given)."""
    out = list(cfg.variants)
    axes = list(cfg.grid.values())
    if axes:
        for combo in itertools.product(*axes):
            stages: dict[str, list[str]] = {}
            for level in combo:
                for k, v in level.stages.items():
                    stages.setdefault(k, []).extend(v)
            out.append(VariantSpec(name="-".join(level.name for level in combo),
                                   overrides=[o for level in combo for o in level.overrides], stages=stages))
    return out


def variant_pipeline(cfg: AblationConfig, variant: VariantSpec) -> PipelineConfig:
    """The variant's pipeline config: the base pipeline, the ablation's overrides, then the variant's. Its own run
    directory holds only its records; its stages write to the ablation's shared store."""
    over = [*cfg.overrides, *variant.overrides, f"run_dir={os.path.join(cfg.run_dir, 'variants', variant.name)}"]
    try:
        pcfg = load_config(PipelineConfig, cfg.pipeline, over)
    except ConfigError as err:
        raise ConfigError([f"variant {variant.name}: {x}" for x in err.problems]) from None
    pcfg.title = f"{cfg.title}: {variant.name}"
    for stage, extra in variant.stages.items():
        spec: StageSpec = getattr(pcfg, stage)
        spec.overrides = [*spec.overrides, *extra]
    return pcfg


def load(path: str, overrides: list[str] = ()) -> AblationConfig:
    return load_config(AblationConfig, path, list(overrides))


def eval_spec(cfg: AblationConfig, base: PipelineConfig) -> StageSpec:
    """The comparison's FinEval: the ablation's eval section over the pipeline's."""
    return StageSpec(config=cfg.eval.config or base.eval.config, overrides=[*base.eval.overrides, *cfg.eval.overrides],
                     nproc_per_node=None)

