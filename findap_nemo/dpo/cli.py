"""`findap-nemo dpo`: preference training (DPO / IPO / RPO, optional SFT term) against a frozen reference policy.

    findap-nemo dpo --config configs/dpo/tiny_cpu.yaml --nproc-per-node 2 parallel.tensor_model_parallel_size=2
    torchrun --nproc-per-node 8 -m findap_nemo.cli dpo --config configs/dpo/findap_llama3_8b.yaml \\
        checkpoint.pretrained=<megatron checkpoint> data.train_file=<genrm pairs.jsonl>

The policy starts from ``checkpoint.pretrained`` (a training or converted checkpoint, any TP/PP); the reference is
the same weights, frozen. With ``dpo.precompute_reference_logps=true`` (default) its log-probs are computed once and
stored under ``<checkpoint.save>/reference_logps``. Per-step metrics: loss, rewards_chosen/rejected, reward_margin,
reward_accuracy (and valid/... on the held-out split every ``schedule.eval_interval`` steps). Resumes from the newest
checkpoint in ``checkpoint.save``; SIGUSR1/SIGTERM checkpoint and exit 75 for a SLURM requeue.
"""

from __future__ import annotations

import argparse

from findap_nemo.launch import add_launch_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="DPO YAML (see configs/dpo/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. dpo.ref_policy_kl_penalty=0.1 optim.lr=5e-7")
    p.add_argument("--print-config", action="store_true", help="print the fully resolved config and exit")
    add_launch_arguments(p)


def run(args) -> int:
    from findap_nemo.dpo import run as stage
    from findap_nemo.dpo.config import DPOJobConfig
    from findap_nemo.train.job import load_job, run_job

    cfg = load_job(DPOJobConfig, args)
    if cfg is None:
        return 0
    return run_job(cfg, args, lambda: stage.build_trainer(cfg))
