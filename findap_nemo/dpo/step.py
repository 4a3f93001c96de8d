"""The DPO forward step and loss in megatron's schedule convention (see findap_nemo.train.trainer).

The micro-batch holds interleaved chosen/rejected sequences. The policy forward yields vocab-parallel logits on the
last pipeline stage; the loss reduces them to per-sequence response log-prob sums and applies the configured
preference (+ SFT) loss. The loss is returned as a sum over pairs with the pair count as "tokens", so megatron's
per-token normalisation divides by the global number of pairs: every TP/PP/DP layout optimises the same mean.
Policy and reference log-probs both mask the padded vocabulary rows (``model.vocab_size`` and beyond).
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import torch

from findap_nemo.dpo.config import DPOLossConfig
from findap_nemo.dpo.logprobs import vocab_parallel_log_probs
from findap_nemo.dpo.losses import pair_losses, reduce_logps


def sequence_logps(logits: torch.Tensor, batch: dict, vocab_size: Optional[int] = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence response log-prob sums and response lengths ([2m], [2m]); padded vocab rows masked."""
    token_logps = vocab_parallel_log_probs(logits, batch["labels"], vocab_size)
    return reduce_logps(token_logps, batch["loss_mask"])


def dpo_loss_func(cfg: DPOLossConfig, batch: dict, output_tensor: torch.Tensor, vocab_size: Optional[int] = None):
    policy_sum, counts = sequence_logps(output_tensor, batch, vocab_size)
    if "ref_logps" not in batch:
        raise RuntimeError("DPO micro-batch without reference log-probs: neither precomputed nor computed on the fly")
    pl = pair_losses(policy_sum, batch["ref_logps"].to(policy_sum.device), counts, batch["gt_rewards"],
                     kind=cfg.preference_loss, beta=cfg.ref_policy_kl_penalty,
                     preference_loss_weight=cfg.preference_loss_weight, sft_loss_weight=cfg.sft_loss_weight,
                     preference_average_log_probs=cfg.preference_average_log_probs,
                     sft_reduction=cfg.sft_reduction, gt_reward_scale=cfg.gt_reward_scale)
    n = pl.total.numel()
    count = torch.tensor(float(n), device=policy_sum.device)
    loss_sum = pl.total.sum()

    def pair(v: torch.Tensor) -> torch.Tensor:
        return torch.stack([v.detach().float().sum(), count])

    metrics = {
        "loss": pair(pl.total),
        "preference_loss": pair(pl.preference),
        "sft_loss": pair(pl.sft),
        "rewards_chosen": pair(pl.rewards_chosen),
        "rewards_rejected": pair(pl.rewards_rejected),
        "reward_margin": pair(pl.margin),
        "reward_accuracy": pair(pl.accuracy),
        "response_tokens": pair(counts.float().view(-1, 2).sum(-1)),
        "tokens_per_pair": pair(batch["seq_lengths"].float().view(-1, 2).sum(-1)),
    }
    return loss_sum, torch.tensor(n, dtype=torch.int, device=policy_sum.device), metrics


def make_dpo_forward_step(cfg: DPOLossConfig, vocab_size: Optional[int] = None):
    """The policy's forward step; ``vocab_size`` (model.vocab_size) masks the padded vocabulary rows."""
    def forward_step(data_iterator, model):
        batch = next(data_iterator)
        output = model(batch["tokens"], batch["position_ids"], None)
        return output, partial(dpo_loss_func, cfg, batch, vocab_size=vocab_size)

    return forward_step


def _reference_loss_func(batch: dict, output_tensor: torch.Tensor, vocab_size: Optional[int] = None):
    ref_sum, _ = sequence_logps(output_tensor, batch, vocab_size)
    zero = torch.zeros((), device=ref_sum.device)
    return zero, torch.tensor(0, dtype=torch.int, device=ref_sum.device), {"ref_logps": ref_sum.detach().double()}


def make_reference_forward_step(vocab_size: Optional[int] = None):
    """Forward-only step of the frozen reference: yields {"ref_logps": [2m]} per micro-batch on the last stage."""
    def reference_forward_step(data_iterator, model):
        batch = next(data_iterator)
        output = model(batch["tokens"], batch["position_ids"], None)
        return output, partial(_reference_loss_func, batch, vocab_size=vocab_size)

    return reference_forward_step
