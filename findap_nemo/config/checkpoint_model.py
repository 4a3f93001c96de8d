"""The model config travels with the weights.

A converted checkpoint carries ``model_config.yaml`` and a training/DPO run its resolved ``config.yaml``. A job that
starts from one (``checkpoint.pretrained``) takes the architecture from it — shape, RoPE, norm epsilon, tied
embeddings, vocabulary — so nobody writes a model shape by hand for a real model, and a field that does not
change tensor shapes (``rotary_base``, ``norm_epsilon``, RoPE scaling) can never silently train a different model.
A config that sets one of those keys explicitly to another value is an error naming both values and where each
came from. Runtime choices (layer implementation, recompute, dropout, vocabulary padding) stay the job's own.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

ARCHITECTURE_KEYS = (
    "num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups", "kv_channels",
    "vocab_size", "max_position_embeddings", "rotary_base", "rope_scaling", "rope_scaling_factor", "norm_epsilon",
    "untie_embeddings_and_output_weights", "add_qkv_bias",
)
"""ModelConfig fields that define the trained function; they must match the weights."""


def checkpoint_model(pretrained: str | None) -> tuple[Path, dict[str, Any]] | None:
    """(file, architecture keys + tokenizer) of the checkpoint a job starts from, or None when it has no config."""
    if not pretrained:
        return None
    from findap_nemo.config.model_config_io import find_model_config

    from findap_nemo.checkpoint_layout import checkpoint_root

    root = checkpoint_root(pretrained)
    path = find_model_config(root) if root.is_dir() else None
    if path is None:
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    section = data.get("model", data) if isinstance(data, dict) else {}
    if not isinstance(section, dict):
        return None
    keep = {k: section[k] for k in ARCHITECTURE_KEYS if k in section}
    if section.get("tokenizer"):
        keep["tokenizer"] = section["tokenizer"]
    return path, keep


def _same(key: str, ours: Any, theirs: Any, arch: dict[str, Any]) -> bool:
    if key == "kv_channels":  # null means hidden_size // num_attention_heads
        default = int(arch.get("hidden_size", 0)) // max(int(arch.get("num_attention_heads", 1)), 1)
        return (ours or default) == (theirs or default)
    if isinstance(ours, float) or isinstance(theirs, float):
        try:
            return math.isclose(float(ours), float(theirs), rel_tol=1e-6)
        except (TypeError, ValueError):
            return False
    return ours == theirs


def conflicts(arch: dict[str, Any], source: Path, layers: list[tuple[str, dict]]) -> list[str]:
    """Every explicit ``model.*`` value among ``layers`` ((where, mapping) pairs, later wins) that disagrees with
    the checkpoint's architecture ``arch`` read from ``source``."""
    explicit: dict[str, tuple[Any, str]] = {}
    for where, layer in layers:
        model = (layer or {}).get("model") if isinstance(layer, dict) else None
        if isinstance(model, dict):
            for key, value in model.items():
                if key in ARCHITECTURE_KEYS:
                    explicit[key] = (value, where)
    out = []
    for key, (value, where) in explicit.items():
        if key in arch and not _same(key, value, arch[key], arch):
            out.append(f"model.{key}={value!r} (from {where}) disagrees with the checkpoint's {key}={arch[key]!r} "
                       f"({source}); the model config travels with the weights: remove the setting, or start "
                       f"from a checkpoint of that shape")
    return out
