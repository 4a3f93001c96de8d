"""Step-time model of megatron-core training on an H100-class cluster.

    step = (m + (pp - 1) / vpp) x t_microbatch(slowest stage)      1F1B / interleaved schedule incl. the bubble
         + exposed data-parallel gradient reduce-scatter + parameter all-gather
         + optimizer step (memory bound)
    t_microbatch = stage FLOPs / (peak x efficiency) + exposed TP / CP / PP communication

Model FLOPs come from :func:`findap_nemo.train.flops.flops_per_token` (matmuls, causal attention halved); full
recompute adds one forward (hardware FLOPs), which lowers MFU. The GEMM efficiency and the exposed fractions of
communication are calibration constants (:class:`Calibration`), fitted to published H100 throughput for Llama 3 8B
and 70B (docs/planner.md lists the figures and how close the model comes).
"""

from __future__ import annotations

from dataclasses import dataclass

from findap_nemo.config.schema import ModelConfig
from findap_nemo.plan.layout import Layout
from findap_nemo.plan.memory import padded_vocab, stage_params
from findap_nemo.train.flops import flops_per_token


@dataclass
class Calibration:
    gemm_efficiency_bf16: float = 0.62  # achieved fraction of dense peak by large bf16 GEMM-bound layers
    fp8_speedup: float = 1.35  # end-to-end layer speed-up of FP8 over bf16 (non-GEMM work stays bf16)
    tp_exposed: float = 0.5  # fraction of TP all-gather/reduce-scatter not hidden behind GEMMs
    cp_exposed: float = 0.3  # ring-attention KV exchange mostly overlapped with attention
    dp_exposed_overlap: float = 0.15  # with overlap_grad_reduce/param_gather, only the last bucket is exposed
    link_efficiency: float = 0.8  # achieved / nominal bandwidth of NCCL collectives
    hbm_gbps: float = 3350.0  # H100 SXM HBM3


@dataclass
class Cluster:
    nodes: int = 1
    gpus_per_node: int = 8
    gpu_memory_gib: float = 80.0
    reserved_gib: float = 6.0
    peak_tflops_bf16: float = 989.0
    peak_tflops_fp8: float = 1979.0
    nvlink_gbps: float = 450.0  # GB/s per GPU per direction (NVLink 4 via NVSwitch)
    internode_gbps: float = 400.0  # Gb/s per GPU (one 400G NIC per GPU)

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass
class TimeEstimate:
    step_s: float
    compute_s: float
    bubble_s: float
    tp_comm_s: float
    cp_comm_s: float
    pp_comm_s: float
    dp_comm_s: float
    optimizer_s: float
    tokens_per_s_per_gpu: float
    model_tflops_per_gpu: float
    mfu: float  # model FLOPs / bf16 dense peak


def _size_efficiency(model: ModelConfig, layout: Layout, tokens: int) -> float:
    """Smaller per-GPU GEMMs (large TP, short micro-batches) reach less of the peak."""
    width = model.hidden_size / layout.tp
    return (1.0 / (1.0 + 256.0 / width)) / (1.0 + 512.0 / tokens) * 1.08


def estimate_time(model: ModelConfig, layout: Layout, cluster: Cluster, *, seq_length: int, global_batch_size: int,
                  dtype: str = "bf16", fp8: bool = False, overlap_comm: bool = True,
                  cal: Calibration | None = None) -> TimeEstimate:
    cal = cal or Calibration()
    ab = 1 if fp8 else (4 if dtype == "fp32" else 2)
    act_b = 4 if dtype == "fp32" else 2
    tp, pp, cp, dp, vpp = layout.tp, layout.pp, layout.cp, layout.dp, layout.vpp or 1
    mbs = layout.micro_batch_size
    m = global_batch_size // (mbs * dp)
    tokens_mb = mbs * seq_length  # tokens of one micro-batch (whole sequence; CP splits the work)
    h, layers = model.hidden_size, model.num_layers

    per_token = flops_per_token(model, seq_length)
    logits_per_token = 3.0 * 2 * h * padded_vocab(model, 1)
    layer_per_token = (per_token - logits_per_token) / layers
    recompute_factor = 4.0 / 3.0 if layout.recompute == "full" else 1.0
    if layout.recompute == "selective":  # the core attention forward (scores and context) runs twice
        q = model.num_attention_heads * model.head_dim
        recompute_factor = 1.0 + 2 * 2 * seq_length * q * 0.5 / layer_per_token
    # the slowest stage: the last one also runs the output layer and the loss
    last_stage = layer_per_token * (layers / pp) * recompute_factor + logits_per_token
    stage_flops = last_stage * tokens_mb / (tp * cp)
    peak = (cluster.peak_tflops_fp8 if fp8 else cluster.peak_tflops_bf16) * 1e12
    eff = cal.gemm_efficiency_bf16 * _size_efficiency(model, layout, tokens_mb // cp)
    if fp8:
        eff = eff * cal.fp8_speedup * cluster.peak_tflops_bf16 / cluster.peak_tflops_fp8
    t_compute_mb = stage_flops / (peak * eff)

    nvlink = cluster.nvlink_gbps * 1e9 * cal.link_efficiency
    ib = cluster.internode_gbps / 8 * 1e9 * cal.link_efficiency
    gpn = cluster.gpus_per_node
    # TP (with SP: all-gather + reduce-scatter twice per layer forward, twice that in backward)
    tp_bytes = 0.0
    if tp > 1:
        tp_bytes = 3 * 4 * tokens_mb / cp * h * act_b * (tp - 1) / tp * (layers / pp) * recompute_factor
    tp_link = nvlink if tp <= gpn else ib
    t_tp = tp_bytes / tp_link * cal.tp_exposed
    # CP ring attention: K and V passed around the ring, forward and twice in backward
    t_cp = 0.0
    if cp > 1:
        kv = model.num_query_groups * model.head_dim
        cp_bytes = 3 * 2 * tokens_mb / cp * kv / tp * act_b * (cp - 1) * (layers / pp)
        t_cp = cp_bytes / (nvlink if tp * cp <= gpn else ib) * cal.cp_exposed
    # PP point-to-point: activations forward, gradients backward, per virtual stage boundary
    t_pp = 0.0
    if pp > 1:
        p2p = 2 * tokens_mb / cp * h * act_b / (tp if layout.sp else 1) * vpp
        t_pp = p2p / (nvlink if tp * cp * dp * pp <= gpn else ib)
    t_mb = t_compute_mb + t_tp + t_cp + t_pp
    pipeline = (m + (pp - 1) / vpp) * t_mb
    bubble = (pp - 1) / vpp * t_mb

    # DP: reduce-scatter fp32 grads + all-gather bf16 params (distributed optimizer) or all-reduce fp32 grads
    params = stage_params(model, layout, True, pp == 1).total
    group = dp * cp
    t_dp = 0.0
    if group > 1:
        volume = params * ((4 + ab) if layout.distributed_optimizer else 2 * 4) * (group - 1) / group
        link = nvlink if tp * cp * dp <= gpn else ib
        t_dp = volume / link * (cal.dp_exposed_overlap if overlap_comm else 1.0)
    shard = params / (group if layout.distributed_optimizer else 1)
    t_opt = shard * 16 * 3 / (cal.hbm_gbps * 1e9)

    step = pipeline + t_dp + t_opt
    tokens = global_batch_size * seq_length
    n = layout.world_size
    model_flops = per_token * tokens
    return TimeEstimate(
        step_s=step, compute_s=m * t_compute_mb, bubble_s=bubble, tp_comm_s=m * t_tp, cp_comm_s=m * t_cp,
        pp_comm_s=m * t_pp, dp_comm_s=t_dp, optimizer_s=t_opt, tokens_per_s_per_gpu=tokens / step / n,
        model_tflops_per_gpu=model_flops / step / n / 1e12,
        mfu=model_flops / step / n / (cluster.peak_tflops_bf16 * 1e12))
