"""The language-model forward step (CPT + IT with per-token loss masks) and a synthetic dataset."""

from __future__ import annotations

from functools import partial

import numpy as np
import torch


def segment_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """[b, 1, s, s] boolean mask (True = masked) allowing attention only to earlier tokens of the same document."""
    s = segment_ids.shape[-1]
    causal = torch.ones(s, s, dtype=torch.bool, device=segment_ids.device).tril()
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    return ~(causal[None] & same)[:, None]


def masked_lm_loss(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """Sum of per-token losses where the mask is 1, the number of such tokens, and the metric pair.

    megatron divides gradients by the global number of target tokens (``calculate_per_token_loss``), so positions
    with mask 0 (prompts, padding, document boundaries) contribute nothing and every layout trains the same objective.
    """
    losses = output_tensor.float()
    mask = loss_mask.float().view_as(losses)
    loss_sum = (losses * mask).sum()
    num_tokens = mask.sum()
    return loss_sum, num_tokens.to(torch.int), {"lm_loss": torch.stack([loss_sum.detach(), num_tokens.detach()])}


def make_gpt_forward_step(reset_attention_mask: bool = False):
    def forward_step(data_iterator, model):
        batch = next(data_iterator)
        mask = segment_causal_mask(batch["segment_ids"]) if reset_attention_mask else None
        output = model(batch["tokens"], batch["position_ids"], mask, labels=batch["labels"])
        return output, partial(masked_lm_loss, batch["loss_mask"])

    return forward_step


class MockGPTDataset(torch.utils.data.Dataset):
    """Deterministic synthetic packs: two documents of arithmetic token sequences (learnable), the first quarter of
    each pack masked out like a prompt. For smoke tests, layout-equivalence tests and benchmarks."""

    def __init__(self, num_samples: int, seq_length: int, vocab_size: int, seed: int = 0):
        self.n, self.s, self.v, self.seed = num_samples, seq_length, vocab_size, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: int) -> dict:
        rng = np.random.default_rng(self.seed * 1_000_003 + idx)
        s = self.s
        start, step = int(rng.integers(self.v)), int(rng.integers(1, 5))
        seq = (start + step * np.arange(s + 1)) % self.v
        tokens, labels = seq[:-1], seq[1:]
        cut = s // 2
        segment = np.where(np.arange(s) < cut, 1, 2)
        position = np.where(np.arange(s) < cut, np.arange(s), np.arange(s) - cut)
        loss_mask = np.ones(s, dtype=np.float32)
        loss_mask[: s // 4] = 0
        loss_mask[cut - 1] = 0  # the label of the last token of document 1 belongs to document 2
        return {
            "tokens": torch.from_numpy(tokens.astype(np.int64)),
            "labels": torch.from_numpy(labels.astype(np.int64)),
            "loss_mask": torch.from_numpy(loss_mask),
            "position_ids": torch.from_numpy(position.astype(np.int64)),
            "segment_ids": torch.from_numpy(segment.astype(np.int64)),
        }
