"""Model FLOPs of a Llama-architecture decoder, for TFLOP/s and MFU logging (and the planner's time model)."""

from __future__ import annotations

from findap_nemo.config.schema import ModelConfig

H100_PEAK_TFLOPS = {"bf16": 989.0, "fp8": 1979.0}
"""Dense peak of an H100 SXM (NVIDIA datasheet), the denominator of MFU."""


def flops_per_token(m: ModelConfig, seq_length: int, *, causal: bool = True) -> float:
    """Training FLOPs per token (forward + backward = 3x forward), counting matmuls only.

    Per layer: QKV projection 2*h*(h + 2*kv*d), output projection 2*h*h, SwiGLU MLP 3 * 2*h*ffn, attention scores and
    values 2 * 2*s*h (halved for a causal mask); plus the output layer 2*h*V. (Narayanan et al. 2021, with GQA/SwiGLU.)
    """
    h, d = m.hidden_size, m.head_dim
    q = m.num_attention_heads * d
    kv = m.num_query_groups * d
    attn_proj = 2 * h * (q + 2 * kv) + 2 * q * h
    mlp = 3 * 2 * h * m.ffn_hidden_size
    scores = 2 * 2 * seq_length * q * (0.5 if causal else 1.0)
    per_layer = attn_proj + mlp + scores
    logits = 2 * h * m.vocab_size
    return 3.0 * (m.num_layers * per_layer + logits)
