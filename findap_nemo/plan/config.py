"""`findap-nemo plan` config: the model, the training shape, the cluster and the layouts to search.

A training or DPO config can be given directly: its model/parallel/precision/schedule sections are read and the rest is
ignored, so `findap-nemo plan --config configs/train/llama3-70b-cpt-it-8node.yaml cluster.nodes=8` checks a shipped
layout and ranks the alternatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from findap_nemo.config.loader import Problems
from findap_nemo.config.schema import ModelConfig, ParallelConfig, PrecisionConfig, ScheduleConfig
from findap_nemo.plan.timing import Calibration, Cluster


@dataclass
class ClusterConfig(Cluster):
    """Defaults: DGX/HGX H100 SXM 80 GB nodes, NVLink 4, 8x400 Gb/s InfiniBand."""


@dataclass
class SearchConfig:
    tensor_model_parallel_sizes: list = field(default_factory=lambda: [1, 2, 4, 8])
    pipeline_model_parallel_sizes: list = field(default_factory=lambda: [1, 2, 4, 8, 16])
    virtual_pipeline_sizes: list = field(default_factory=lambda: [None, 2, 4, 5, 10])
    context_parallel_sizes: list = field(default_factory=lambda: [1, 2, 4])
    micro_batch_sizes: list = field(default_factory=lambda: [1, 2, 4])
    recompute: list = field(default_factory=lambda: [None, "selective", "full"])
    distributed_optimizer: list = field(default_factory=lambda: [True])
    impl: str = "te"  # te (GPU: Transformer Engine + flash attention) | local (megatron local layers, CPU)
    top: int = 10  # fitting layouts shown
    show_rejected: int = 10  # rejected layouts shown (closest to fitting first)


@dataclass
class PlanJobConfig:
    RENAMED: ClassVar[dict] = {"train": "schedule (batch sizes, sequence length)"}

    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)  # the layout of the given config, if any
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    # time-model constants; refit them from a measured step (see docs/planner.md) for another cluster or stack
    calibration: Calibration = field(default_factory=Calibration)
    dtype: Optional[str] = None  # parameter dtype; default from precision.params_dtype (auto -> bf16)
    # sequences per training sample: 2 for DPO (chosen + rejected; schedule.micro_batch_size/global_batch_size count
    # pairs there). Set automatically when the given config has a `dpo` section.
    sequences_per_sample: int = 1

    @property
    def param_dtype(self) -> str:
        d = self.dtype or self.precision.params_dtype
        return "bf16" if d == "auto" else d

    def validate(self, world_size: int | None = None) -> None:
        p = Problems()
        c, s = self.cluster, self.search
        p.check(c.nodes >= 1, "cluster.nodes", c.nodes, "must be >= 1")
        p.check(c.gpus_per_node >= 1, "cluster.gpus_per_node", c.gpus_per_node, "must be >= 1")
        p.check(c.gpu_memory_gib > c.reserved_gib, "cluster.gpu_memory_gib", c.gpu_memory_gib,
                f"must exceed cluster.reserved_gib={c.reserved_gib}")
        p.check(self.param_dtype in ("fp32", "bf16", "fp16"), "dtype", self.param_dtype, "use fp32, bf16 or fp16")
        p.check(s.impl in ("te", "local"), "search.impl", s.impl, "use te (GPU) or local (CPU layers)")
        p.check(self.sequences_per_sample in (1, 2), "sequences_per_sample", self.sequences_per_sample,
                "1 (language modelling) or 2 (DPO pairs)")
        p.check(self.schedule.global_batch_size >= 1, "schedule.global_batch_size", self.schedule.global_batch_size,
                "must be >= 1")
        p.check(self.schedule.seq_length >= 1, "schedule.seq_length", self.schedule.seq_length, "must be >= 1")
        for key in ("tensor_model_parallel_sizes", "pipeline_model_parallel_sizes", "context_parallel_sizes",
                    "micro_batch_sizes"):
            vals = getattr(s, key)
            p.check(bool(vals) and all(isinstance(v, int) and v >= 1 for v in vals), f"search.{key}", vals,
                    "a non-empty list of integers >= 1")
        p.check(all(v is None or (isinstance(v, int) and v >= 2) for v in s.virtual_pipeline_sizes),
                "search.virtual_pipeline_sizes", s.virtual_pipeline_sizes, "null or integers >= 2")
        p.check(all(r in (None, "selective", "full") for r in s.recompute), "search.recompute", s.recompute,
                "null, selective or full")
        for key in ("gemm_efficiency_bf16", "tp_exposed", "cp_exposed", "dp_exposed_overlap", "link_efficiency"):
            v = getattr(self.calibration, key)
            p.check(0 < v <= 1, f"calibration.{key}", v, "a fraction in (0, 1]")
        if self.precision.fp8:
            p.check(s.impl == "te", "precision.fp8", self.precision.fp8, "FP8 is modelled for search.impl=te only")
        p.raise_if_any()


def load_plan_config(path: str | None, overrides: list[str]):
    """Read a plan config, or the relevant sections of a train/dpo config."""
    from findap_nemo.config import load_config
    from findap_nemo.config.loader import read_yaml

    base = None
    if path:
        data = read_yaml(path)
        keep = {"model", "parallel", "precision", "schedule", "cluster", "search", "dtype", "calibration",
                "sequences_per_sample"}
        base = {k: v for k, v in data.items() if k in keep}
        if "dpo" in data:  # a DPO config: samples are (chosen, rejected) pairs, and DPO has no context parallelism
            base.setdefault("sequences_per_sample", 2)
            base.setdefault("search", {}).setdefault("context_parallel_sizes", [1])
    return load_config(PlanJobConfig, None, overrides, base=base)
