"""Parameter names and shapes on both sides, derived from a :class:`ModelConfig`.

megatron keys are the global names of its dist checkpoints: ``decoder.layers.*`` tensors are stacked over all layers
(dim 0, global layer index, whatever the pipeline layout), and the norms are stored under Transformer Engine's fused
names (``linear_qkv.layer_norm_weight``, ``linear_fc1.layer_norm_weight``), which megatron's local layers map to too.
"""

from __future__ import annotations

from findap_nemo.config.schema import ModelConfig

EMBED = "embedding.word_embeddings.weight"
FINAL_NORM = "decoder.final_layernorm.weight"
OUTPUT = "output_layer.weight"
QKV_NORM = "decoder.layers.self_attention.linear_qkv.layer_norm_weight"
QKV = "decoder.layers.self_attention.linear_qkv.weight"
QKV_BIAS = "decoder.layers.self_attention.linear_qkv.bias"
PROJ = "decoder.layers.self_attention.linear_proj.weight"
FC1_NORM = "decoder.layers.mlp.linear_fc1.layer_norm_weight"
FC1 = "decoder.layers.mlp.linear_fc1.weight"
FC2 = "decoder.layers.mlp.linear_fc2.weight"
# Modules whose (empty, for bf16/fp32 models) _extra_state megatron stores as ShardedObjects.
EXTRA_STATE_MODULES = ("self_attention.linear_qkv", "self_attention.linear_proj", "mlp.linear_fc1", "mlp.linear_fc2")

HF_EMBED = "model.embed_tokens.weight"
HF_NORM = "model.norm.weight"
HF_LM_HEAD = "lm_head.weight"
# HF tensors that carry no weights megatron needs (recomputed buffers saved by old transformers versions).
HF_IGNORABLE_SUFFIXES = ("rotary_emb.inv_freq",)


def hf_layer(i: int) -> dict[str, str]:
    p = f"model.layers.{i}."
    return {
        "input_layernorm": p + "input_layernorm.weight",
        "q": p + "self_attn.q_proj.weight", "k": p + "self_attn.k_proj.weight", "v": p + "self_attn.v_proj.weight",
        "q_bias": p + "self_attn.q_proj.bias", "k_bias": p + "self_attn.k_proj.bias",
        "v_bias": p + "self_attn.v_proj.bias",
        "o": p + "self_attn.o_proj.weight",
        "post_attention_layernorm": p + "post_attention_layernorm.weight",
        "gate": p + "mlp.gate_proj.weight", "up": p + "mlp.up_proj.weight", "down": p + "mlp.down_proj.weight",
    }


def hf_shapes(m: ModelConfig, vocab_size: int) -> dict[str, tuple[int, ...]]:
    """Every HF tensor name -> shape, in the order an HF checkpoint lists them (the export writes this order)."""
    h, d = m.hidden_size, m.head_dim
    out: dict[str, tuple[int, ...]] = {HF_EMBED: (vocab_size, h)}
    for i in range(m.num_layers):
        n = hf_layer(i)
        out[n["input_layernorm"]] = (h,)
        out[n["q"]] = (m.num_attention_heads * d, h)
        out[n["k"]] = (m.num_query_groups * d, h)
        out[n["v"]] = (m.num_query_groups * d, h)
        if m.add_qkv_bias:
            out[n["q_bias"]] = (m.num_attention_heads * d,)
            out[n["k_bias"]] = (m.num_query_groups * d,)
            out[n["v_bias"]] = (m.num_query_groups * d,)
        out[n["o"]] = (h, m.num_attention_heads * d)
        out[n["post_attention_layernorm"]] = (h,)
        out[n["gate"]] = (m.ffn_hidden_size, h)
        out[n["up"]] = (m.ffn_hidden_size, h)
        out[n["down"]] = (h, m.ffn_hidden_size)
    out[HF_NORM] = (h,)
    if m.untie_embeddings_and_output_weights:
        out[HF_LM_HEAD] = (vocab_size, h)
    return out


def mcore_shapes(m: ModelConfig, padded_vocab: int) -> dict[str, tuple[int, ...]]:
    """Every megatron checkpoint tensor key -> global shape (layer-stacked tensors have L as dim 0)."""
    h, d, L = m.hidden_size, m.head_dim, m.num_layers
    qkv_rows = (m.num_attention_heads + 2 * m.num_query_groups) * d
    out = {
        EMBED: (padded_vocab, h),
        QKV_NORM: (L, h),
        QKV: (L, qkv_rows, h),
    }
    if m.add_qkv_bias:
        out[QKV_BIAS] = (L, qkv_rows)
    out.update({
        PROJ: (L, h, m.num_attention_heads * d),
        FC1_NORM: (L, h),
        FC1: (L, 2 * m.ffn_hidden_size, h),
        FC2: (L, h, m.ffn_hidden_size),
        FINAL_NORM: (h,),
    })
    if m.untie_embeddings_and_output_weights:
        out[OUTPUT] = (padded_vocab, h)
    return out


def is_layer_key(key: str) -> bool:
    return key.startswith("decoder.layers.")


def extra_state_keys(num_layers: int) -> list[str]:
    return [f"decoder.layers.{mod}._extra_state/shard_{i}_{num_layers}"
            for i in range(num_layers) for mod in EXTRA_STATE_MODULES]
