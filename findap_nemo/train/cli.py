"""`findap-nemo train`: joint CPT+IT training of a Llama-architecture GPT on megatron-core.

    findap-nemo train --config configs/train/tiny_cpu.yaml --nproc-per-node 2 parallel.tensor_model_parallel_size=2
    torchrun --nproc-per-node 8 -m findap_nemo.cli train --config configs/train/llama3-8b-cpt-it-1node.yaml

Resumes automatically from the newest checkpoint in ``checkpoint.save``; on SIGUSR1/SIGTERM it checkpoints and exits
with code 75 so a SLURM job can requeue itself.
"""

from __future__ import annotations

import argparse

from findap_nemo.launch import add_launch_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training YAML (see configs/train/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. schedule.train_iters=100 optim.lr=1e-5")
    p.add_argument("--print-config", action="store_true",
                   help="print the fully resolved config (defaults + preset + file + overrides) and exit")
    add_launch_arguments(p)


def run(args) -> int:
    from findap_nemo.train import run as stage
    from findap_nemo.train.config import TrainJobConfig
    from findap_nemo.train.job import load_job, run_job

    cfg = load_job(TrainJobConfig, args, check=stage.check_vocab)
    if cfg is None:
        return 0
    return run_job(cfg, args, lambda: stage.build_trainer(cfg))
