"""megatron-core GPTModel with the Llama 3 architecture (RMSNorm, SwiGLU, RoPE, GQA, untied embeddings).

Transformer Engine's layer spec is used when TE imports and a GPU is present (needed for FP8), megatron's local
spec otherwise (CPU, or ``model.transformer_impl=local``), with SDPA core attention unless
``model.attention_backend=unfused``.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from findap_nemo.config.schema import ModelConfig, ParallelConfig, PrecisionConfig, use_te
from findap_nemo.runtime import has_cuda


def padded_vocab_size(vocab_size: int, divisible_by: int, tp: int) -> int:
    """Megatron pads the embedding so every TP rank holds an equal, aligned slice."""
    multiple = divisible_by * tp
    return int(math.ceil(vocab_size / multiple) * multiple)


def params_dtype(precision: PrecisionConfig) -> torch.dtype:
    name = precision.params_dtype
    if name == "auto":
        name = "bf16" if has_cuda() else "fp32"
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def transformer_config(model: ModelConfig, parallel: ParallelConfig, precision: PrecisionConfig):
    from megatron.core.transformer.transformer_config import TransformerConfig

    dtype = params_dtype(precision)
    cuda = has_cuda()
    te = use_te(model)
    kwargs = dict(
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        ffn_hidden_size=model.ffn_hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_query_groups=model.num_query_groups,
        kv_channels=model.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=model.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=model.add_qkv_bias,
        attention_dropout=model.attention_dropout,
        hidden_dropout=model.hidden_dropout,
        init_method_std=model.init_method_std,
        tensor_model_parallel_size=parallel.tensor_model_parallel_size,
        pipeline_model_parallel_size=parallel.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline_model_parallel_size,
        context_parallel_size=parallel.context_parallel_size,
        sequence_parallel=parallel.sequence_parallel,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu_initialization=not cuda,
        # Fusions need apex/TE kernels on a GPU; the unfused paths are numerically the reference.
        bias_activation_fusion=cuda and te,
        bias_dropout_fusion=cuda,
        masked_softmax_fusion=cuda and te,
        apply_rope_fusion=cuda and te,
        gradient_accumulation_fusion=cuda and te,
        persist_layer_norm=cuda and te,
        attention_softmax_in_fp32=True,
        recompute_granularity=model.recompute_granularity,
        recompute_method=model.recompute_method,
        recompute_num_layers=model.recompute_num_layers,
        # Losses are sums over target tokens; grads are divided by the global target-token count, so TP/PP/DP
        # layouts and micro-batch splits all optimise the same per-token average.
        calculate_per_token_loss=True,
    )
    if precision.fp8:
        kwargs.update(fp8=precision.fp8, fp8_recipe=precision.fp8_recipe, fp8_margin=precision.fp8_margin,
                      fp8_amax_history_len=precision.fp8_amax_history_len,
                      fp8_amax_compute_algo=precision.fp8_amax_compute_algo,
                      fp8_param=precision.fp8_param_gather)
    if not cuda:
        from findap_nemo.cpu_shims import cpu_transformer_config

        kwargs.update(cpu_transformer_config())
    known = {f.name for f in dataclasses.fields(TransformerConfig)}
    return TransformerConfig(**{k: v for k, v in kwargs.items() if k in known})


def layer_spec(model: ModelConfig, config, vp_stage: int | None = None):
    """The decoder block spec: TE fused layers on GPU, megatron local layers with our RMSNorm (and SDPA attention
    unless ``model.attention_backend=unfused``) otherwise."""
    from megatron.core.models.gpt import gpt_layer_specs
    from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build

    if use_te(model):
        return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec()
    from findap_nemo.model.norms import RMSNorm

    spec = gpt_layer_specs.get_gpt_layer_local_spec(normalization="RMSNorm")
    spec.submodules.input_layernorm = RMSNorm
    spec.submodules.pre_mlp_layernorm = RMSNorm
    if model.attention_backend == "sdpa":
        from findap_nemo.model.sdpa_attention import SDPADotProductAttention

        spec.submodules.self_attention.submodules.core_attention = SDPADotProductAttention
    n = get_num_layers_to_build(config, vp_stage=vp_stage)
    return TransformerBlockSubmodules(layer_specs=[spec] * n, layer_norm=RMSNorm)


def build_model(model: ModelConfig, parallel: ParallelConfig, precision: PrecisionConfig, *,
                wrap_with_ddp: bool = True, for_training: bool = True, overlap_grad_reduce: bool | None = None):
    """Build this rank's model chunks (one per virtual pipeline stage), optionally wrapped in megatron DDP.

    megatron's parallel state must be initialised first (:func:`findap_nemo.parallel.init_distributed`).
    """
    from megatron.core import parallel_state
    from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig
    from megatron.core.models.gpt import GPTModel

    config = transformer_config(model, parallel, precision)
    vocab = padded_vocab_size(model.vocab_size, model.make_vocab_size_divisible_by,
                              parallel.tensor_model_parallel_size)
    vpp = parallel.virtual_pipeline_model_parallel_size
    chunks = []
    for vp_stage in (range(vpp) if vpp else [None]):
        pre = parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage)
        post = parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage)
        kwargs = dict(
            config=config,
            transformer_layer_spec=layer_spec(model, config, vp_stage),
            vocab_size=vocab,
            max_sequence_length=model.max_position_embeddings,
            pre_process=pre,
            post_process=post,
            share_embeddings_and_output_weights=not model.untie_embeddings_and_output_weights,
            position_embedding_type="rope",
            rotary_base=int(model.rotary_base),
            rope_scaling=model.rope_scaling,
            rope_scaling_factor=model.rope_scaling_factor,
            parallel_output=True,
        )
        if vp_stage is not None:
            kwargs["vp_stage"] = vp_stage
        m = GPTModel(**kwargs)
        if has_cuda():
            m.cuda(torch.cuda.current_device())
        if not for_training:
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
        chunks.append(m)
    if wrap_with_ddp and for_training:
        ddp_config = DistributedDataParallelConfig(
            grad_reduce_in_fp32=True,
            overlap_grad_reduce=parallel.overlap_grad_reduce if overlap_grad_reduce is None else overlap_grad_reduce,
            overlap_param_gather=parallel.overlap_param_gather,
            use_distributed_optimizer=parallel.use_distributed_optimizer,
            check_for_nan_in_grad=True,
            bucket_size=None,
        )
        chunks = [DistributedDataParallel(config=config, ddp_config=ddp_config, module=m,
                                          disable_bucketing=i > 0) for i, m in enumerate(chunks)]
    return chunks


def unwrap(chunk):
    """The GPTModel inside a DDP (or other) wrapper."""
    while hasattr(chunk, "module"):
        chunk = chunk.module
    return chunk
