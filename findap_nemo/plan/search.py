"""Enumerate TP/PP/VPP/CP/DP/micro-batch/recompute layouts, estimate each, rank those that fit, explain the rest."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from findap_nemo.config.schema import ModelConfig
from findap_nemo.plan.layout import Layout
from findap_nemo.plan.memory import GiB, MemoryBreakdown, estimate_memory
from findap_nemo.plan.timing import Calibration, Cluster, TimeEstimate, estimate_time


@dataclass
class Candidate:
    layout: Layout
    memory: MemoryBreakdown | None = None
    time: TimeEstimate | None = None
    reasons: list[str] = field(default_factory=list)  # why it is impossible or does not fit; empty = fits

    @property
    def fits(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {"layout": asdict(self.layout), "name": self.layout.describe(), "fits": self.fits,
                "reasons": self.reasons, "overrides": self.layout.overrides(),
                "memory_gib": self.memory.as_gib() if self.memory else None,
                "time": asdict(self.time) if self.time else None}


def structural_problems(model: ModelConfig, layout: Layout, cluster: Cluster, *, seq_length: int,
                        global_batch_size: int, impl: str = "te") -> tuple[list[str], list[str]]:
    """(hard, soft) reasons against a layout: hard ones make it impossible to build (divisibility, GPU count), soft
    ones make it a bad idea (TP/CP traffic leaving the NVLink domain) but it is still estimated."""
    hard, soft = [], []
    tp, pp, cp, dp, vpp = layout.tp, layout.pp, layout.cp, layout.dp, layout.vpp
    if layout.world_size != cluster.world_size:
        hard.append(f"uses {layout.world_size} GPUs, the cluster has {cluster.world_size}")
    if model.num_attention_heads % tp or model.num_query_groups % tp:
        hard.append(f"TP={tp} does not divide {model.num_attention_heads} heads / {model.num_query_groups} KV groups")
    layers_div = pp * (vpp or 1)
    if model.num_layers % layers_div:
        hard.append(f"{model.num_layers} layers are not divisible by PP{'xVPP' if vpp else ''}={layers_div}")
    if vpp and pp == 1:
        hard.append("VPP needs PP > 1")
    mbdp = layout.micro_batch_size * dp
    if global_batch_size % mbdp:
        hard.append(f"global batch {global_batch_size} is not divisible by micro-batch x DP = {mbdp}")
    elif vpp and (global_batch_size // mbdp) % pp:
        hard.append(f"interleaved schedule needs the {global_batch_size // mbdp} micro-batches divisible by PP={pp}")
    if cp > 1 and seq_length % (2 * cp):
        hard.append(f"sequence {seq_length} is not divisible by 2xCP={2 * cp}")
    if cp > 1 and impl == "local":
        hard.append("context parallelism needs Transformer Engine attention (GPU)")
    if layout.sp and seq_length % tp:
        hard.append(f"sequence {seq_length} is not divisible by TP={tp} (sequence parallelism)")
    if tp > cluster.gpus_per_node:
        soft.append(f"TP={tp} spans nodes ({cluster.gpus_per_node} GPUs per node): TP traffic needs NVLink")
    elif cp > 1 and tp * cp > cluster.gpus_per_node:
        soft.append(f"TPxCP={tp * cp} spans nodes: keep context parallelism inside the NVLink domain")
    return hard, soft


def enumerate_layouts(model: ModelConfig, cluster: Cluster, search, *, seq_length: int, global_batch_size: int,
                      sequences_per_sample: int = 1):
    """Every combination of the searched sizes that multiplies to the cluster's GPU count (micro-batches in
    sequences: ``search.micro_batch_sizes`` counts samples, e.g. DPO pairs)."""
    n = cluster.world_size
    for tp, pp, cp, vpp, mbs, rc, dist in itertools.product(
            search.tensor_model_parallel_sizes, search.pipeline_model_parallel_sizes, search.context_parallel_sizes,
            search.virtual_pipeline_sizes, search.micro_batch_sizes, search.recompute, search.distributed_optimizer):
        if n % (tp * pp * cp):
            continue
        if vpp is not None and pp == 1:
            continue
        yield Layout(tp=tp, pp=pp, vpp=vpp, cp=cp, dp=n // (tp * pp * cp), sp=tp > 1,
                     micro_batch_size=mbs * sequences_per_sample, recompute=rc, recompute_num_layers=1,
                     distributed_optimizer=bool(dist), sequences_per_sample=sequences_per_sample)


def evaluate(model: ModelConfig, layout: Layout, cluster: Cluster, *, seq_length: int, global_batch_size: int,
             dtype: str = "bf16", fp8: bool = False, impl: str = "te", cal: Calibration | None = None) -> Candidate:
    cand = Candidate(layout)
    hard, soft = structural_problems(model, layout, cluster, seq_length=seq_length,
                                     global_batch_size=global_batch_size, impl=impl)
    cand.reasons = hard + soft
    if hard:
        return cand
    m = global_batch_size // (layout.micro_batch_size * layout.dp)
    cand.memory = estimate_memory(model, layout, seq_length=seq_length, num_microbatches=m, dtype=dtype, impl=impl,
                                  fp8=fp8)
    usable = (cluster.gpu_memory_gib - cluster.reserved_gib) * GiB
    if cand.memory.total > usable:
        mem = cand.memory
        parts = {"activations": mem.activations + mem.transient, "optimizer": mem.optimizer,
                 "weights+grads": mem.weights + mem.grads}
        worst = max(parts, key=parts.get)
        hint = {"activations": "recompute, a smaller micro-batch, or more TP/SP/CP/PP",
                "optimizer": "the distributed optimizer or more data parallelism",
                "weights+grads": "more TP or PP"}[worst]
        cand.reasons.append(f"needs {mem.total / GiB:.1f} GiB > {usable / GiB:.1f} GiB usable on the {mem.stage} "
                            f"stage ({worst} {parts[worst] / GiB:.1f} GiB; try {hint})")
    cand.time = estimate_time(model, layout, cluster, seq_length=seq_length, global_batch_size=global_batch_size,
                              dtype=dtype, fp8=fp8, cal=cal)
    return cand


def plan(model: ModelConfig, cluster: Cluster, search, *, seq_length: int, global_batch_size: int,
         dtype: str = "bf16", fp8: bool = False, cal: Calibration | None = None,
         sequences_per_sample: int = 1) -> list[Candidate]:
    """All candidates: fitting ones by estimated step time (fastest first), then the rest by memory overshoot.

    ``global_batch_size`` counts sequences (DPO: 2 x pairs); ``sequences_per_sample`` scales the searched
    micro-batch sizes the same way."""
    cands = [evaluate(model, lay, cluster, seq_length=seq_length, global_batch_size=global_batch_size, dtype=dtype,
                      fp8=fp8, impl=search.impl, cal=cal)
             for lay in enumerate_layouts(model, cluster, search, seq_length=seq_length,
                                          global_batch_size=global_batch_size,
                                          sequences_per_sample=sequences_per_sample)]

    def key(c: Candidate):
        if c.fits:
            return (0, c.time.step_s, c.memory.total)
        if c.memory is not None:
            return (1, c.memory.total, 0)
        return (2, 0, 0)

    return sorted(cands, key=key)
