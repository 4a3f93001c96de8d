"""Per-token log-probabilities from vocab-parallel logits, without gathering the vocabulary on one rank.

Each TP rank holds logits for a slice of the vocabulary. log p(label) = logit[label] - logsumexp(logits) is
computed with megatron's vocab-parallel cross entropy: a max all-reduce, a sum-of-exp all-reduce and a
predicted-logit all-reduce over the TP group, each of size [b, s]. Its autograd backward is the softmax slice
minus the one-hot, local to each rank, so the policy trains through it with no [b, s, V] tensor anywhere.

Padded vocabulary rows (megatron pads the embedding to a multiple of ``make_vocab_size_divisible_by x TP``) are
not tokens: given ``vocab_size`` their logits are set to -inf, so the softmax runs over the real vocabulary only
and the log-probs equal those of the unpadded HF model whatever the padded rows hold.
"""

from __future__ import annotations

from typing import Optional

import torch


def mask_padded_vocab(logits: torch.Tensor, vocab_size: Optional[int], tp_rank: int) -> torch.Tensor:
    """``logits`` [..., V/TP] of TP rank ``tp_rank`` with the columns of ids >= ``vocab_size`` set to -inf
    (a new tensor only on ranks holding padded rows)."""
    part = logits.shape[-1]
    start = tp_rank * part
    if vocab_size is None or start + part <= vocab_size:
        return logits
    ids = torch.arange(start, start + part, device=logits.device)
    return logits.masked_fill(ids >= vocab_size, float("-inf"))


def vocab_parallel_log_probs(logits: torch.Tensor, labels: torch.Tensor,
                             vocab_size: Optional[int] = None) -> torch.Tensor:
    """[b, s, V/TP] logits (any dtype) and [b, s] labels -> [b, s] fp32 log-probs of the labels.

    ``vocab_size``: the real vocabulary (``model.vocab_size``); rows beyond it are masked out of the softmax.
    The logits are consumed (megatron's kernel works in place on an fp32 view); do not reuse them afterwards.
    """
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    logits = mask_padded_vocab(logits.float(), vocab_size, ps.get_tensor_model_parallel_rank())
    return -vocab_parallel_cross_entropy(logits, labels)
