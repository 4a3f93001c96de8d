"""Batching token sequences for Hugging Face decoder models (shared by the eval backend and the GenRM engine).

Prompts of one task (or one GenRM judge template) share a long prefix: the chat template's system turn and the
task's instruction are often more than half of every prompt. ``shared_prefix_batch`` runs that prefix once and
hands its KV cache, repeated over the batch, to the forward pass or ``generate`` (vLLM's automatic prefix caching,
for transformers on CPU): the same logits up to float rounding, for a fraction of the prefill FLOPs.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any

# a prefix shorter than this is not worth a separate forward pass
MIN_SHARED_PREFIX = 8


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


def cache_kwarg(model) -> str:
    """The keyword that passes a KV cache: transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name
    is deprecated there and removed in later releases)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@dataclass
class SharedPrefixBatch:
    """A batch laid out as ``[shared prefix][left padding][own suffix]`` per row.

    ``input_ids``/``attention_mask`` cover the whole row (what ``generate`` takes, with ``cache_kwargs``);
    ``suffix_ids``/``suffix_positions`` are what a forward pass over the cached prefix takes. Without a shared
    prefix (``prefix_len == 0``) it is a plain left-padded batch and ``cache_kwargs`` is empty.
    """

    input_ids: Any
    attention_mask: Any
    suffix_ids: Any
    suffix_positions: Any
    prefix_len: int
    cache_kwargs: dict

    def forward_kwargs(self) -> dict:
        return dict(input_ids=self.suffix_ids, attention_mask=self.attention_mask, position_ids=self.suffix_positions,
                    **self.cache_kwargs)

    def generate_kwargs(self) -> dict:
        return dict(input_ids=self.input_ids, attention_mask=self.attention_mask, **self.cache_kwargs)


def shared_prefix_len(seqs: list[list[int]], reserve: int = 1) -> int:
    """Length of the longest common prefix, leaving at least ``reserve`` tokens of every sequence outside it (the
    positions whose logits are read); 0 when shorter than ``MIN_SHARED_PREFIX``."""
    n = min(len(os.path.commonprefix(seqs)), min(len(s) for s in seqs) - reserve)
    return n if n >= MIN_SHARED_PREFIX else 0


def shared_prefix_batch(model, seqs: list[list[int]], pad_id: int, device, *, reserve: int = 1,
                        share: bool = True) -> SharedPrefixBatch:
    """Prefill the common prefix of ``seqs`` once (batch of one), repeat its KV cache over the batch and left-pad
    the suffixes after it. Positions run on from the prefix, so every row sees exactly its own sequence."""
    import torch

    p = shared_prefix_len(seqs, reserve) if share and len(seqs) > 1 else 0
    suffix_ids, suffix_mask, suffix_pos = left_pad([s[p:] for s in seqs], pad_id, device)
    if not p:
        return SharedPrefixBatch(suffix_ids, suffix_mask, suffix_ids, suffix_pos, 0, {})
    from transformers import DynamicCache

    prefix = torch.tensor([seqs[0][:p]], dtype=torch.long, device=device)
    key = cache_kwarg(model)
    cache = DynamicCache()
    with torch.inference_mode():
        model(input_ids=prefix, use_cache=True, logits_to_keep=1, **{key: cache})
    cache.batch_repeat_interleave(len(seqs))
    n = len(seqs)
    mask = torch.cat([torch.ones((n, p), dtype=suffix_mask.dtype, device=device), suffix_mask], dim=1)
    ids = torch.cat([prefix.expand(n, -1), suffix_ids], dim=1)
    return SharedPrefixBatch(ids, mask, suffix_ids, suffix_pos + p, p, {key: cache})


def last_logits(model, batch: SharedPrefixBatch, keep: int):
    """Logits of the last ``keep`` positions of every row (B x keep x vocab), not of the whole batch."""
    return model(**batch.forward_kwargs(), logits_to_keep=keep).logits[:, -keep:, :]
