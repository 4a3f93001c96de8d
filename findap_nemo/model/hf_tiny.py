"""Random small Hugging Face Llama checkpoints, saved with ``save_pretrained`` like any real model.

Used by the CPU demo (as the "base model") and by tests of every stage that loads HF checkpoints, so those
stages exercise the real ``from_pretrained`` path without a model hub.
"""

from __future__ import annotations

import os
from pathlib import Path


def save_random_llama(out_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike, *, num_layers: int = 2,
                      hidden_size: int = 64, intermediate_size: int = 176, num_attention_heads: int = 4,
                      num_key_value_heads: int = 2, tie_word_embeddings: bool = False,
                      max_position_embeddings: int = 4096, rope_theta: float = 500000.0, seed: int = 0,
                      rope_scaling: dict | None = None) -> Path:
    """Create a random LlamaForCausalLM sized to the tokenizer and save it (model, tokenizer, generation config)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from findap_nemo.tokenizer import load_tokenizer, stop_token_ids

    tok = load_tokenizer(tokenizer_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=intermediate_size,
                      num_hidden_layers=num_layers, num_attention_heads=num_attention_heads,
                      num_key_value_heads=num_key_value_heads, max_position_embeddings=max_position_embeddings,
                      rope_theta=rope_theta, rms_norm_eps=1e-5, tie_word_embeddings=tie_word_embeddings,
                      bos_token_id=tok.bos_token_id, eos_token_id=stop_token_ids(tok),
                      pad_token_id=tok.pad_token_id, rope_scaling=rope_scaling, torch_dtype="float32")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=stop_token_ids(tok),
                                               pad_token_id=tok.pad_token_id, do_sample=False)
    out = Path(out_dir)
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out
