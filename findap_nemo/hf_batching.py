"""Batching token sequences for Hugging Face decoder models (shared by the eval backend and the GenRM engine)."""

from __future__ import annotations


def left_pad(seqs: list[list[int]], pad_id: int, device):
    """Left-pad to the longest sequence: (input_ids, attention_mask, position_ids), positions starting at 0 at each
    sequence's first real token, so generation continues every row from its own last token."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)
