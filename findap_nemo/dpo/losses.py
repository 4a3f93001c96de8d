"""Preference losses on per-sequence log-probabilities (pure torch, NeMo-Aligner's definitions).

With D = (policy - reference log-ratio of chosen) - (same of rejected) and Dgt = chosen_reward - rejected_reward:

- ``dpo``:        -logsigmoid(beta * D)
- ``ipo``:        (D - 1 / (2 * beta))^2
- ``rpo_sq``:     (beta * D - scale * Dgt)^2
- ``rpo_fwd_kl``: KL(Bernoulli(sigmoid(beta * D)) || Bernoulli(sigmoid(scale * Dgt)))
- ``rpo_bwd_kl``: KL(Bernoulli(sigmoid(scale * Dgt)) || Bernoulli(sigmoid(beta * D)))

total = preference_loss_weight * preference + sft_loss_weight * sft; every term is returned per pair so the caller can
sum over pairs and let megatron divide by the global number of pairs. The SFT term is the NLL of the chosen
responses, reduced as ``sft_reduction`` says (the mean over pairs is then taken by the caller):

- ``sum``:           -log p(chosen) summed over its tokens, per pair (long responses weigh more);
- ``sequence_mean``: each pair's chosen NLL divided by its own token count (NeMo-Aligner's
                     ``sft_average_log_probs``): every pair weighs the same, whatever its length;
- ``token_mean``:    the chosen NLL summed over all chosen tokens of the micro-batch divided by their total count
                     (TRL's ``rpo_alpha`` NLL term, a cross-entropy over the batch's chosen tokens): every token
                     weighs the same. Equal to ``sequence_mean`` only when the chosen responses have equal lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

PREFERENCE_LOSSES = ("dpo", "ipo", "rpo_bwd_kl", "rpo_fwd_kl", "rpo_sq")
SFT_REDUCTIONS = ("sequence_mean", "token_mean", "sum")


@dataclass
class PairLosses:
    """Per-pair tensors [n]: the differentiable ``total`` and detached terms for metrics."""

    total: torch.Tensor
    preference: torch.Tensor
    sft: torch.Tensor
    rewards_chosen: torch.Tensor
    rewards_rejected: torch.Tensor

    @property
    def margin(self) -> torch.Tensor:
        return self.rewards_chosen - self.rewards_rejected

    @property
    def accuracy(self) -> torch.Tensor:
        return (self.rewards_chosen > self.rewards_rejected).float()


def _bernoulli_kl(log_p: torch.Tensor, log_1mp: torch.Tensor, log_q: torch.Tensor, log_1mq: torch.Tensor):
    """KL(Bernoulli(p) || Bernoulli(q)) from log-probabilities (numerically stable for large logits)."""
    return log_p.exp() * (log_p - log_q) + log_1mp.exp() * (log_1mp - log_1mq)


def preference_loss(kind: str, delta: torch.Tensor, gt_delta: torch.Tensor, beta: float,
                    gt_reward_scale: float = 1.0) -> torch.Tensor:
    """Per-pair preference loss; ``delta`` = D (log-ratio margin), ``gt_delta`` = Dgt (reward margin)."""
    if kind == "dpo":
        return -F.logsigmoid(beta * delta)
    if kind == "ipo":
        return (delta - 1.0 / (2.0 * beta)) ** 2
    gt = gt_reward_scale * gt_delta.to(delta.dtype)
    if kind == "rpo_sq":
        return (beta * delta - gt) ** 2
    model_logits = beta * delta
    log_m, log_1m = F.logsigmoid(model_logits), F.logsigmoid(-model_logits)
    log_g, log_1g = F.logsigmoid(gt), F.logsigmoid(-gt)
    if kind == "rpo_fwd_kl":
        return _bernoulli_kl(log_m, log_1m, log_g, log_1g)
    if kind == "rpo_bwd_kl":
        return _bernoulli_kl(log_g, log_1g, log_m, log_1m)
    raise ValueError(f"dpo.preference_loss={kind!r}: use one of {PREFERENCE_LOSSES}")


def reduce_logps(token_logps: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence sum of masked token log-probs and the number of response tokens ([b, s] -> [b], [b])."""
    keep = mask.bool()  # where(), not a product: a -inf outside the mask must not turn the sum into NaN
    return torch.where(keep, token_logps, torch.zeros_like(token_logps)).sum(-1), keep.to(token_logps.dtype).sum(-1)


def pair_losses(policy_sum: torch.Tensor, ref_sum: torch.Tensor, counts: torch.Tensor, gt_rewards: torch.Tensor, *,
                kind: str, beta: float, preference_loss_weight: float = 1.0, sft_loss_weight: float = 0.0,
                preference_average_log_probs: bool = False, sft_average_log_probs: bool = False,
                gt_reward_scale: float = 1.0, sft_reduction: str | None = None) -> PairLosses:
    """Losses for interleaved sequences [chosen_0, rejected_0, chosen_1, ...].

    ``policy_sum``/``ref_sum``/``counts`` are per-sequence [2n] (sum of response log-probs, response length);
    ``gt_rewards`` is [2n] (chosen_reward, rejected_reward per pair). ``sft_reduction`` (see the module
    docstring) defaults to sequence_mean when ``sft_average_log_probs`` is set, else sum.
    """
    counts = counts.to(policy_sum.dtype).clamp_min(1)
    ratio = policy_sum - ref_sum.to(policy_sum.dtype)
    if preference_average_log_probs:
        ratio = ratio / counts
    chosen, rejected = ratio[0::2], ratio[1::2]
    delta = chosen - rejected
    gt_delta = gt_rewards[0::2] - gt_rewards[1::2]
    pref = preference_loss(kind, delta, gt_delta, beta, gt_reward_scale)
    reduction = sft_reduction or ("sequence_mean" if sft_average_log_probs else "sum")
    chosen_sum, chosen_n = policy_sum[0::2], counts[0::2]
    if reduction == "sum":
        sft = -chosen_sum
    elif reduction == "sequence_mean":
        sft = -chosen_sum / chosen_n
    elif reduction == "token_mean":  # pooled: sum over pairs of sft = n * (total NLL / total tokens)
        sft = -chosen_sum * (chosen_n.numel() / chosen_n.sum())
    else:
        raise ValueError(f"dpo.sft_loss_reduction={reduction!r}: use one of {SFT_REDUCTIONS}")
    total = preference_loss_weight * pref
    if sft_loss_weight:
        total = total + sft_loss_weight * sft
    return PairLosses(total=total, preference=pref.detach(), sft=sft.detach(),
                      rewards_chosen=(beta * chosen).detach(), rewards_rejected=(beta * rejected).detach())
