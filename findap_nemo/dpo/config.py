"""`findap-nemo dpo` config schema. Preference-loss keys are NeMo-Aligner's (``dpo.ref_policy_kl_penalty`` ...)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from findap_nemo.config.schema import MegatronJobConfig
from findap_nemo.dpo.losses import PREFERENCE_LOSSES, SFT_REDUCTIONS


@dataclass
class DPOLossConfig:
    """The preference objective (names and defaults as in NeMo-Aligner's ``model.dpo`` section)."""

    ref_policy_kl_penalty: float = 0.05  # beta: strength of the implicit KL to the reference policy
    preference_loss: str = "dpo"  # dpo | ipo | rpo_bwd_kl | rpo_fwd_kl | rpo_sq
    preference_loss_weight: float = 1.0
    sft_loss_weight: float = 0.0  # > 0 adds the chosen responses' NLL (TRL's rpo_alpha; FinDAP uses DPO + NLL)
    preference_average_log_probs: bool = False  # length-normalised log-ratios (sum otherwise)
    # How the NLL term is reduced (findap_nemo/dpo/losses.py): sum (per pair, over its tokens) | sequence_mean
    # (each pair's per-token mean, then the mean over pairs) | token_mean (pooled over all chosen tokens of the
    # micro-batch: TRL's rpo_alpha term). null: sequence_mean if sft_average_log_probs else sum.
    sft_loss_reduction: Optional[str] = None
    sft_average_log_probs: Optional[bool] = None  # older key; default: preference_average_log_probs
    gt_reward_scale: float = 1.0  # scale of chosen_reward - rejected_reward in the rpo_* losses
    # Reference log-probs computed once before training by the frozen initial policy and stored next to the run
    # (one forward per step saved, reference weights freed). false: reference forward inside every step.
    precompute_reference_logps: bool = True
    reference_logps_dir: Optional[str] = None  # default: <checkpoint.save>/reference_logps

    @property
    def sft_average(self) -> bool:
        return self.preference_average_log_probs if self.sft_average_log_probs is None else self.sft_average_log_probs

    @property
    def sft_reduction(self) -> str:
        return self.sft_loss_reduction or ("sequence_mean" if self.sft_average else "sum")


@dataclass
class DPODataConfig:
    """Preference JSONL: {"prompt": str | [messages], "chosen_response": str, "rejected_response": str,
    optional "chosen_reward"/"rejected_reward"}; ``chosen``/``rejected`` are accepted as aliases."""

    train_file: Optional[str] = None
    validation_file: Optional[str] = None
    validation_fraction: float = 0.0  # held out from train_file (seeded) when no validation_file is given
    default_chosen_reward: float = 1.0
    default_rejected_reward: float = 0.0
    pad_to_multiple_of: int = 64  # dynamic padding granularity (rounded up to a multiple of TP); PP pads to seq_length


@dataclass
class DPOJobConfig(MegatronJobConfig):
    """`findap-nemo dpo`: preference training of a megatron GPT against its frozen initial weights."""

    data: DPODataConfig = field(default_factory=DPODataConfig)
    dpo: DPOLossConfig = field(default_factory=DPOLossConfig)

    def validate(self, world_size: int | None = None) -> None:
        p = self.validate_sections(world_size)
        d, c = self.dpo, self.checkpoint
        p.check(d.preference_loss in PREFERENCE_LOSSES, "dpo.preference_loss", d.preference_loss,
                f"use one of {list(PREFERENCE_LOSSES)}")
        p.check(d.ref_policy_kl_penalty > 0, "dpo.ref_policy_kl_penalty", d.ref_policy_kl_penalty,
                "beta must be > 0 (typical 0.05-0.5)")
        p.check(d.preference_loss_weight >= 0, "dpo.preference_loss_weight", d.preference_loss_weight, "must be >= 0")
        p.check(d.sft_loss_weight >= 0, "dpo.sft_loss_weight", d.sft_loss_weight, "must be >= 0")
        p.check(d.sft_loss_reduction is None or d.sft_loss_reduction in SFT_REDUCTIONS, "dpo.sft_loss_reduction",
                d.sft_loss_reduction, f"one of {list(SFT_REDUCTIONS)} (token_mean is TRL's pooling)")
        p.check(d.sft_loss_reduction is None or d.sft_average_log_probs is None, "dpo.sft_average_log_probs",
                d.sft_average_log_probs, "set only dpo.sft_loss_reduction (sft_average_log_probs is its older form)")
        p.check(d.preference_loss_weight > 0 or d.sft_loss_weight > 0, "dpo.preference_loss_weight",
                d.preference_loss_weight, "preference_loss_weight and sft_loss_weight are both 0: nothing to train")
        par = self.parallel
        p.check(par.context_parallel_size == 1, "parallel.context_parallel_size", par.context_parallel_size,
                "DPO sums response log-probs over whole sequences; context parallelism is not supported, use 1 "
                "(preference pairs rarely need it: use TP/SP for long sequences)")
        for key in ("train_file", "validation_file"):
            path = getattr(self.data, key)
            if key == "train_file" or path:
                p.check(bool(path) and os.path.isfile(path), f"data.{key}", path,
                        "give an existing preference JSONL (e.g. the genrm stage's pairs.jsonl)")
        p.check(0.0 <= self.data.validation_fraction < 1.0, "data.validation_fraction", self.data.validation_fraction,
                "must be in [0, 1)")
        p.check(self.data.pad_to_multiple_of >= 1, "data.pad_to_multiple_of", self.data.pad_to_multiple_of,
                "must be >= 1")
        p.check(bool(self.model.tokenizer) and os.path.isdir(str(self.model.tokenizer)), "model.tokenizer",
                self.model.tokenizer, "give the policy's HF tokenizer folder (its chat template formats the prompts)")
        p.check(bool(c.pretrained), "checkpoint.pretrained", c.pretrained,
                "DPO needs the initial policy (a training or converted megatron checkpoint): it is also the frozen "
                "reference")
        if c.pretrained:
            from findap_nemo.checkpoint_layout import TRACKER, latest_checkpoint

            p.check(latest_checkpoint(c.pretrained) is not None, "checkpoint.pretrained", c.pretrained,
                    f"no megatron checkpoint there (expected iter_XXXXXXX/ or {TRACKER})")
        p.raise_if_any()
