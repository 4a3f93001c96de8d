"""Random small Hugging Face checkpoints of any supported family (:mod:`findap_nemo.model.architectures`), saved
with ``save_pretrained`` like any real model.

Used by the CPU demo (as the "base model") and by tests of every stage that loads HF checkpoints, so those
stages exercise the real ``from_pretrained`` path without a model hub, and the converters are proven on every
family by logits parity.
"""

from __future__ import annotations

import os
from pathlib import Path


def save_random_model(out_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike, *, model_type: str = "llama",
                      num_layers: int = 2, hidden_size: int = 64, intermediate_size: int = 176,
                      num_attention_heads: int = 4, num_key_value_heads: int = 2, tie_word_embeddings: bool = False,
                      max_position_embeddings: int = 4096, rope_theta: float = 500000.0, seed: int = 0,
                      rope_scaling: dict | None = None, max_shard_size: str = "5GB") -> Path:
    """Create a random model of ``model_type`` sized to the tokenizer and save it (model, tokenizer, generation
    config). Sliding-window attention is off (the families that have it); QKV biases, where the family has them,
    are random and non-zero so a converter that drops or misplaces them is caught."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from findap_nemo.model.architectures import architecture
    from findap_nemo.tokenizer import load_tokenizer, stop_token_ids

    arch = architecture(model_type, "save_random_model(model_type=...)")
    tok = load_tokenizer(tokenizer_dir)
    window = {"set": {"sliding_window": None}, "use_sliding_window": {"use_sliding_window": False},
              None: {}}[arch.sliding_window]
    cfg = AutoConfig.for_model(
        arch.model_type, vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_attention_heads, num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings, rope_theta=rope_theta, rms_norm_eps=1e-5,
        tie_word_embeddings=tie_word_embeddings, bos_token_id=tok.bos_token_id, eos_token_id=stop_token_ids(tok),
        pad_token_id=tok.pad_token_id, rope_scaling=rope_scaling, torch_dtype="float32", **window)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    assert type(model).__name__ == arch.hf_class, (type(model).__name__, arch.hf_class)
    if arch.qkv_bias:
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_()
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=stop_token_ids(tok),
                                               pad_token_id=tok.pad_token_id, do_sample=False)
    out = Path(out_dir)
    model.save_pretrained(str(out), max_shard_size=max_shard_size)
    tok.save_pretrained(str(out))
    return out
