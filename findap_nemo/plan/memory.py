"""Per-GPU memory model of megatron-core training with the Llama architecture.

Everything is counted in bytes per rank, for the first and the last pipeline stage (the first holds the most
in-flight micro-batches, the last holds the logits); the larger of the two is what must fit.

- weights: parameters of the stage, sharded by TP (norm weights replicated), in the parameter dtype (+ an FP8 copy
  of every linear weight under FP8 training).
- gradients: megatron DDP keeps an fp32 ``main_grad`` buffer (``grad_reduce_in_fp32``) for every parameter.
- optimizer: Adam's two fp32 moments, plus an fp32 master copy when the parameters are half precision; the
  distributed optimizer shards all of it over the data-parallel (x context-parallel) group.
- activations: what autograd keeps for backward, tensor by tensor (see :func:`layer_activation_bytes`), times the
  micro-batches the pipeline schedule keeps in flight; reduced by SP (norm regions sharded over TP), CP (sequence
  sharded), selective recompute (attention internals dropped) and full recompute (only layer inputs kept).
- transient: the largest short-lived buffer: the logits' gradient, or one recomputed group of layers.

Two implementations are modelled: ``te`` (Transformer Engine fused layers + flash attention, the GPU path) and
``local`` (megatron's local layers with SDPA or unfused attention: the CPU path, which the tests check tensor-for-tensor
against megatron-core's measured saved tensors).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from findap_nemo.config.schema import ModelConfig
from findap_nemo.plan.layout import Layout

GiB = 1024 ** 3


def padded_vocab(model: ModelConfig, tp: int) -> int:
    multiple = model.make_vocab_size_divisible_by * tp
    return int(math.ceil(model.vocab_size / multiple) * multiple)


@dataclass
class StageParams:
    """Parameter counts held by one rank of one pipeline stage."""

    linear: int  # TP-sharded matmul weights (FP8-castable)
    other: int  # embedding, output layer, norm weights

    @property
    def total(self) -> int:
        return self.linear + self.other


def layer_params(model: ModelConfig, tp: int) -> tuple[int, int]:
    """(TP-sharded linear params, replicated params) of one transformer layer on one TP rank."""
    h, d = model.hidden_size, model.head_dim
    q, kv = model.num_attention_heads * d, model.num_query_groups * d
    linear = h * (q + 2 * kv) + q * h + 3 * h * model.ffn_hidden_size
    bias = (q + 2 * kv) if model.add_qkv_bias else 0
    return (linear + bias) // tp, 2 * h


def stage_params(model: ModelConfig, layout: Layout, first: bool, last: bool) -> StageParams:
    layers = model.num_layers // layout.pp
    lin, rep = layer_params(model, layout.tp)
    vocab_slice = padded_vocab(model, layout.tp) * model.hidden_size // layout.tp
    other = layers * rep
    if first:
        other += vocab_slice
    if last:
        other += model.hidden_size  # final norm
        if model.untie_embeddings_and_output_weights or not first:
            other += vocab_slice  # untied output layer (or the tied copy on the last stage)
    return StageParams(linear=layers * lin, other=other)


def param_bytes(dtype: str) -> int:
    return {"fp32": 4, "bf16": 2, "fp16": 2}[dtype]


def layer_activation_bytes(model: ModelConfig, layout: Layout, *, seq_length: int, dtype: str, impl: str,
                           fp8: bool = False, recompute: str | None = None) -> float:
    """Bytes one transformer layer keeps for backward for one micro-batch on one rank (no full recompute).

    ``local`` (measured on megatron-core's local spec): each RMSNorm keeps its fp32 input, rstd and normalised
    output, and the following linear keeps its input; unfused attention keeps q, k and v expanded to all heads, the
    softmax probabilities [b, heads, s, s] and a boolean mask [s, s], and the context; SDPA attention (the default)
    keeps q, k, v expanded to all heads, the context, one GQA-sized input and the fp32 log-sum-exp per head; SwiGLU keeps fc1's output [t, 2 ffn]
    plus three [t, ffn] tensors. ``te``: fused norm+linear keep input, rstd and the normed input; flash attention
    keeps q, k, v (GQA-sized), the output and fp32 softmax statistics; SwiGLU keeps fc1's output and fc2's input.
    """
    ab = param_bytes(dtype)
    tp, cp = layout.tp, layout.cp
    h, d, ffn = model.hidden_size, model.head_dim, model.ffn_hidden_size
    a, g = model.num_attention_heads, model.num_query_groups
    q, kv = a * d, g * d
    s = seq_length // cp
    t = s * layout.micro_batch_size  # tokens per micro-batch on this rank (before TP/SP)
    sp_div = tp if layout.sp else 1  # norm regions are sharded over TP only with sequence parallelism
    if impl == "local":
        norm = (4 * t * h + 4 * t + 2 * ab * t * h) / sp_div
        unfused = model.attention_backend == "unfused"
        if recompute == "selective":  # core attention checkpointed: keeps q, k, v (GQA-sized) and the context
            attn = ab * t * (2 * q + 2 * kv) / tp + (s * s if unfused else 0)
        elif unfused:
            attn = ab * t * 4 * q / tp + ab * layout.micro_batch_size * (a // tp) * s * s + s * s
        else:  # SDPA: no [s, s] probabilities; an fp32 log-sum-exp per head and token instead
            attn = ab * t * (4 * q + kv) / tp + 4 * t * a / tp
        mlp = ab * 5 * t * ffn / tp
        return 2 * norm + attn + mlp
    # Transformer Engine: LayerNormLinear keeps input (ab), rsigma (fp32) and ln_out (fp8 under FP8)
    ln_out = 1 if fp8 else ab
    norm = (ab * t * h + 4 * t + ln_out * t * h) / sp_div
    attn = (ab * t * (2 * q + 2 * kv) + 4 * t * a) / tp  # q, k, v, output, softmax stats
    if fp8:
        attn += t * q / tp  # fp8 copy of the output projection's input
    mlp = (ab * 2 * t * ffn + (1 if fp8 else ab) * t * ffn) / tp
    return 2 * norm + attn + mlp


def _in_flight_chunks(layout: Layout, num_microbatches: int, stage: int) -> float:
    """Micro-batch x model-chunk activations held by pipeline rank ``stage``, in units of a whole stage."""
    pp, vpp = layout.pp, layout.vpp or 1
    if pp == 1:
        return 1.0
    if vpp == 1:
        return float(min(pp - stage, num_microbatches))
    warmup = (pp - stage - 1) * 2 + (vpp - 1) * pp
    return min(warmup + 1, num_microbatches * vpp) / vpp


@dataclass
class MemoryBreakdown:
    weights: float
    grads: float
    optimizer: float
    activations: float
    transient: float
    optimizer_without_distributed: float
    optimizer_with_distributed: float
    activations_no_recompute: float
    stage: str  # "first" | "last" : the stage this breakdown is for

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations + self.transient

    def as_gib(self) -> dict:
        out = {k: (v / GiB if isinstance(v, float | int) else v) for k, v in asdict(self).items()}
        out["total"] = self.total / GiB
        return out


def estimate_memory(model: ModelConfig, layout: Layout, *, seq_length: int, num_microbatches: int,
                    dtype: str = "bf16", impl: str = "te", fp8: bool = False) -> MemoryBreakdown:
    """Peak per-GPU memory of the worst pipeline stage (see the module docstring)."""
    stages = [("first", 0)] + ([("last", layout.pp - 1)] if layout.pp > 1 else [])
    best = None
    for name, rank in stages:
        b = _stage_memory(model, layout, seq_length=seq_length, num_microbatches=num_microbatches, dtype=dtype,
                          impl=impl, fp8=fp8, rank=rank, name=name)
        if best is None or b.total > best.total:
            best = b
    return best


def _stage_memory(model, layout, *, seq_length, num_microbatches, dtype, impl, fp8, rank, name) -> MemoryBreakdown:
    first, last = rank == 0, rank == layout.pp - 1
    params = stage_params(model, layout, first, last)
    pb = param_bytes(dtype)
    weights = params.total * pb + (params.linear if fp8 else 0)
    grads = params.total * 4
    opt_per_param = 8 + (4 if pb < 4 else 0)  # Adam m, v (+ fp32 master copy)
    opt_full = params.total * opt_per_param
    opt_dist = opt_full / (layout.dp * layout.cp)
    optimizer = opt_dist if layout.distributed_optimizer else opt_full

    ab = pb
    s = seq_length // layout.cp
    t = s * layout.micro_batch_size
    layers = model.num_layers // layout.pp
    per_layer_full = layer_activation_bytes(model, layout, seq_length=seq_length, dtype=dtype, impl=impl, fp8=fp8)
    chunks = _in_flight_chunks(layout, num_microbatches, rank)
    sp_div = layout.tp if layout.sp else 1

    def stage_acts(per_layer: float, stored_layers: float) -> float:
        acts = per_layer * stored_layers
        if first:
            acts += 8 * t  # token ids kept by the embedding's backward
        if last:
            # final norm + the output layer's input, and the fp32 softmax of the vocab-parallel cross entropy
            norm = (4 * t * model.hidden_size + 4 * t + 2 * ab * t * model.hidden_size) / sp_div if impl == "local" \
                else (ab * t * model.hidden_size + 4 * t + ab * t * model.hidden_size) / sp_div
            acts += (norm + 4 * t * padded_vocab(model, layout.tp) / layout.tp) / chunks
        if impl == "local":
            acts += 4 * 4 * s * model.head_dim  # RoPE cos/sin for q and k (shared by all layers)
        return acts

    no_rc = stage_acts(per_layer_full, layers) * chunks
    transient = ab * t * padded_vocab(model, layout.tp) / layout.tp if last else 0.0
    if layout.recompute == "full":
        n = max(1, min(layout.recompute_num_layers, layers))
        groups = math.ceil(layers / n)
        layer_input = ab * t * model.hidden_size / sp_div
        stored = stage_acts(0.0, 0) + groups * layer_input
        acts = stored * chunks
        transient = max(transient, per_layer_full * n)
    elif layout.recompute == "selective":
        per_layer = layer_activation_bytes(model, layout, seq_length=seq_length, dtype=dtype, impl=impl, fp8=fp8,
                                           recompute="selective")
        acts = stage_acts(per_layer, layers) * chunks
    else:
        acts = no_rc
    return MemoryBreakdown(weights=weights, grads=grads, optimizer=optimizer, activations=acts, transient=transient,
                           optimizer_without_distributed=opt_full, optimizer_with_distributed=opt_dist,
                           activations_no_recompute=no_rc, stage=name)
