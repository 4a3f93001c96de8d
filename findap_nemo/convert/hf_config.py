"""Mapping between a Hugging Face ``config.json`` and :class:`findap_nemo.config.schema.ModelConfig`.

Supported: the families of :mod:`findap_nemo.model.architectures` as megatron's GPTModel builds them: Llama 3 / 3.1 /
3.2 (including ``rope_type: llama3`` frequency scaling), Mistral (without sliding-window attention) and Qwen2 (QKV
bias). Anything the megatron model cannot reproduce exactly is refused with the key and the reason, never silently
dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from findap_nemo.config import ConfigError
from findap_nemo.config.schema import ModelConfig
from findap_nemo.files import read_json
from findap_nemo.model.architectures import LLAMA3_ROPE_FIXED, architecture, for_model


def read_hf_config(folder: str | Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path}: not found; expected a Hugging Face model folder (config.json + *.safetensors)")
    return read_json(path)


def _rope_params(hf: dict) -> dict | None:
    """transformers 4.x writes ``rope_scaling``; 5.x writes ``rope_parameters`` (which also carries rope_theta)."""
    rp = hf.get("rope_parameters")
    if isinstance(rp, dict) and rp.get("rope_type", "default") != "default":
        return rp
    rs = hf.get("rope_scaling")
    return rs if isinstance(rs, dict) else None


def _rope_theta(hf: dict) -> float:
    rp = hf.get("rope_parameters")
    if isinstance(rp, dict) and "rope_theta" in rp:
        return float(rp["rope_theta"])
    return float(hf.get("rope_theta", 10000.0))


def hf_to_model_config(hf: dict, source: str = "config.json") -> ModelConfig:
    """The megatron model shape for an HF config; raises ConfigError naming every unsupported key."""
    problems: list[str] = []
    arch = architecture(hf.get("model_type"), source)
    heads = int(hf["num_attention_heads"])
    groups = int(hf.get("num_key_value_heads") or heads)
    hidden = int(hf["hidden_size"])
    head_dim = int(hf.get("head_dim") or hidden // heads)
    act = hf.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        problems.append(f"{source}: hidden_act={act!r}: only SwiGLU (silu) MLPs are supported")
    if hf.get("mlp_bias") or hf.get("attention_bias") and not arch.qkv_bias:
        problems.append(f"{source}: attention_bias/mlp_bias=true: linear biases other than Qwen2's QKV bias are "
                        "not supported by the Llama layer spec")
    sw = hf.get("sliding_window")
    if arch.sliding_window and sw and (arch.sliding_window == "set" or hf.get(arch.sliding_window)):
        if int(sw) < int(hf.get("max_position_embeddings", 0)):
            problems.append(f"{source}: sliding_window={sw}: sliding-window attention is not supported; "
                            "use a checkpoint with sliding_window=null (e.g. Mistral-7B v0.2+)")
    rope = _rope_params(hf)
    rope_scaling, factor = False, 8.0
    if rope is not None:
        kind = rope.get("rope_type", rope.get("type"))
        if kind == "llama3":  # the only scaling megatron reproduces (for any family)
            rope_scaling, factor = True, float(rope.get("factor", 8.0))
            for k, want in LLAMA3_ROPE_FIXED.items():
                if k in rope and float(rope[k]) != float(want):
                    problems.append(f"{source}: rope_scaling.{k}={rope[k]}: megatron's llama3 RoPE scaling "
                                    f"uses {want}")
        elif kind not in (None, "default"):
            problems.append(f"{source}: rope_scaling type {kind!r} is not supported (only llama3)")
    if problems:
        raise ConfigError(problems)
    return ModelConfig(
        num_layers=int(hf["num_hidden_layers"]),
        hidden_size=hidden,
        ffn_hidden_size=int(hf["intermediate_size"]),
        num_attention_heads=heads,
        num_query_groups=groups,
        kv_channels=head_dim if head_dim != hidden // heads else None,
        vocab_size=int(hf["vocab_size"]),
        max_position_embeddings=int(hf.get("max_position_embeddings", 8192)),
        rotary_base=_rope_theta(hf),
        rope_scaling=rope_scaling,
        rope_scaling_factor=factor,
        norm_epsilon=float(hf.get("rms_norm_eps", 1e-5)),
        untie_embeddings_and_output_weights=not bool(hf.get("tie_word_embeddings", False)),
        add_qkv_bias=arch.qkv_bias,
    )


def model_config_to_hf(model: ModelConfig, vocab_size: int, base: dict | None = None, *,
                       dtype: str = "float32") -> dict:
    """An HF config.json for ``model``; fields of ``base`` (the source HF config, when known) are kept."""
    out: dict[str, Any] = dict(base or {})
    arch = for_model(model.add_qkv_bias, out.get("model_type"))
    out.update(
        model_type=arch.model_type,
        architectures=[arch.hf_class],
        num_hidden_layers=model.num_layers,
        hidden_size=model.hidden_size,
        intermediate_size=model.ffn_hidden_size,
        num_attention_heads=model.num_attention_heads,
        num_key_value_heads=model.num_query_groups,
        head_dim=model.head_dim,
        vocab_size=vocab_size,
        max_position_embeddings=model.max_position_embeddings,
        rms_norm_eps=model.norm_epsilon,
        hidden_act="silu",
        tie_word_embeddings=not model.untie_embeddings_and_output_weights,
        torch_dtype=dtype,
        dtype=dtype,
    )
    out.update(arch.export_keys)
    rope: dict[str, Any] | None = None
    if model.rope_scaling:
        rope = {"rope_type": "llama3", "factor": model.rope_scaling_factor, **LLAMA3_ROPE_FIXED}
    out.pop("rope_parameters", None)
    out["rope_theta"] = model.rotary_base
    out["rope_scaling"] = rope
    return out
