"""Tensor layout mapping between Hugging Face Llama-family weights and megatron-core's GPTModel.

megatron fuses Q, K and V into one ``linear_qkv`` weight laid out per query group (KV head) ``g``::

    [q heads of group g (heads // groups of them), k_g, v_g]   for g = 0 .. groups-1, stacked along dim 0

so every tensor-parallel rank owns whole groups. The gated MLP's gate and up projections are stacked into
``linear_fc1`` (gate first). Embedding and output matrices are padded with zero rows to a multiple of
``make_vocab_size_divisible_by x TP``. All functions are pure and exact (no arithmetic on values).
"""

from __future__ import annotations

import torch


def _check(t: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, found {tuple(t.shape)}")


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, num_groups: int,
             head_dim: int, name: str = "qkv") -> torch.Tensor:
    """HF q/k/v weights ([heads*d, h], [groups*d, h], [groups*d, h]) or biases (1-D) -> megatron linear_qkv."""
    rest = tuple(q.shape[1:])
    _check(q, (num_heads * head_dim, *rest), f"{name} (q_proj)")
    _check(k, (num_groups * head_dim, *rest), f"{name} (k_proj)")
    _check(v, (num_groups * head_dim, *rest), f"{name} (v_proj)")
    per = num_heads // num_groups
    qg = q.reshape(num_groups, per * head_dim, *rest)
    kg = k.reshape(num_groups, head_dim, *rest)
    vg = v.reshape(num_groups, head_dim, *rest)
    return torch.cat([qg, kg, vg], dim=1).reshape((num_heads + 2 * num_groups) * head_dim, *rest)


def split_qkv(qkv: torch.Tensor, num_heads: int, num_groups: int, head_dim: int,
              name: str = "linear_qkv") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`fuse_qkv`: megatron linear_qkv -> HF (q, k, v), each contiguous."""
    rest = tuple(qkv.shape[1:])
    _check(qkv, ((num_heads + 2 * num_groups) * head_dim, *rest), name)
    per = num_heads // num_groups
    g = qkv.reshape(num_groups, (per + 2) * head_dim, *rest)
    q = g[:, : per * head_dim].reshape(num_heads * head_dim, *rest)
    k = g[:, per * head_dim: (per + 1) * head_dim].reshape(num_groups * head_dim, *rest)
    v = g[:, (per + 1) * head_dim:].reshape(num_groups * head_dim, *rest)
    return q.contiguous(), k.contiguous(), v.contiguous()


def fuse_gate_up(gate: torch.Tensor, up: torch.Tensor, name: str = "mlp") -> torch.Tensor:
    """HF gate_proj and up_proj ([ffn, h] each) -> megatron linear_fc1 ([2*ffn, h], gate first)."""
    _check(up, tuple(gate.shape), f"{name} (up_proj vs gate_proj)")
    return torch.cat([gate, up], dim=0)


def split_gate_up(fc1: torch.Tensor, ffn_hidden_size: int, name: str = "linear_fc1"):
    _check(fc1, (2 * ffn_hidden_size, *fc1.shape[1:]), name)
    return fc1[:ffn_hidden_size].contiguous(), fc1[ffn_hidden_size:].contiguous()


def pad_vocab(weight: torch.Tensor, padded_rows: int, name: str = "embedding") -> torch.Tensor:
    """Append zero rows up to ``padded_rows`` (megatron's padded vocabulary)."""
    rows = weight.shape[0]
    if rows > padded_rows:
        raise ValueError(f"{name}: {rows} vocabulary rows exceed the padded size {padded_rows}")
    if rows == padded_rows:
        return weight
    pad = torch.zeros(padded_rows - rows, *weight.shape[1:], dtype=weight.dtype)
    return torch.cat([weight, pad], dim=0)


def unpad_vocab(weight: torch.Tensor, vocab_size: int, name: str = "embedding") -> torch.Tensor:
    if weight.shape[0] < vocab_size:
        raise ValueError(f"{name}: the checkpoint holds {weight.shape[0]} vocabulary rows, fewer than the "
                         f"tokenizer's {vocab_size}")
    return weight[:vocab_size].contiguous()
