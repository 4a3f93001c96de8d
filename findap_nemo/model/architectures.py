"""The Hugging Face decoder families megatron's GPT (Llama layer spec: RMSNorm, SwiGLU, RoPE, GQA) reproduces
exactly, described as data: one entry per family drives the HF config mapping in both directions
(`convert/hf_config.py`) and the random tiny model the tests convert and compare logits with
(`model/hf_tiny.py`). Tensor names are the Llama ones for every family here (`convert/names.py`).

Adding a family that differs from Llama only in what these fields say is one entry below; one that needs a new
tensor or layer (a different norm, attention bias on the output projection) also needs its names in
`convert/names.py` and its module in `model/builder.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Architecture:
    model_type: str  # config.json "model_type"
    hf_class: str  # config.json "architectures"[0]
    qkv_bias: bool = False  # biases on the q/k/v projections (megatron's add_qkv_bias), none elsewhere
    # how the config turns sliding-window attention on (which megatron's spec does not do, so it is refused):
    # "set" = any sliding_window value below the context, "use_sliding_window" = only with that flag true
    sliding_window: str | None = None
    # config keys written on export with these values (transformers' Llama config reads attention/mlp bias flags)
    export_keys: dict = field(default_factory=dict)


LLAMA3_ROPE_FIXED = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
"""megatron's llama3 RoPE scaling hard-codes these; other values would silently move the positions."""

ARCHITECTURES: dict[str, Architecture] = {a.model_type: a for a in (
    Architecture("llama", "LlamaForCausalLM", export_keys={"attention_bias": False, "mlp_bias": False}),
    Architecture("mistral", "MistralForCausalLM", sliding_window="set"),
    Architecture("qwen2", "Qwen2ForCausalLM", qkv_bias=True, sliding_window="use_sliding_window"),
)}


def architecture(model_type: str | None, source: str = "config.json") -> Architecture:
    from findap_nemo.config import ConfigError

    if model_type not in ARCHITECTURES:
        raise ConfigError(f"{source}: model_type={model_type!r} is not supported; supported: "
                          f"{sorted(ARCHITECTURES)} (Llama-architecture decoders: RMSNorm, SwiGLU, RoPE, GQA)")
    return ARCHITECTURES[model_type]


def for_model(qkv_bias: bool, model_type: str | None = None) -> Architecture:
    """The family a megatron model is exported as: ``model_type`` (the source checkpoint's) when it is a family
    with the same QKV bias, else the first family that has it (Llama without bias, Qwen2 with)."""
    if model_type in ARCHITECTURES and ARCHITECTURES[model_type].qkv_bias == qkv_bias:
        return ARCHITECTURES[model_type]
    return next(a for a in ARCHITECTURES.values() if a.qkv_bias == qkv_bias)
