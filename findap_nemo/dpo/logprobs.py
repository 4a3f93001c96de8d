"""Per-token log-probabilities from vocab-parallel logits, without gathering the vocabulary on one rank.

Each TP rank holds logits for a slice of the vocabulary. log p(label) = logit[label] - logsumexp(logits) is
computed with megatron's vocab-parallel cross entropy: a max all-reduce, a sum-of-exp all-reduce and a
predicted-logit all-reduce over the TP group, each of size [b, s]. Its autograd backward is the softmax slice
minus the one-hot, local to each rank, so the policy trains through it with no [b, s, V] tensor anywhere.
"""

from __future__ import annotations

import torch


def vocab_parallel_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[b, s, V/TP] logits (any dtype) and [b, s] labels -> [b, s] fp32 log-probs of the labels.

    The logits are consumed (megatron's kernel works in place on an fp32 view); do not reuse them afterwards.
    """
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    return -vocab_parallel_cross_entropy(logits.float(), labels)
