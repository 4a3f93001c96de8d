"""`findap-nemo train`: joint CPT+IT training of a Llama-architecture GPT on megatron-core.

    findap-nemo train --config configs/train/tiny_cpu.yaml --nproc-per-node 2 parallel.tensor_model_parallel_size=2
    torchrun --nproc-per-node 8 -m findap_nemo.cli train --config configs/train/llama3-8b-cpt-it-1node.yaml

Resumes automatically from the newest checkpoint in ``checkpoint.save``; on SIGUSR1/SIGTERM it checkpoints and exits
with code 75 so a SLURM job can requeue itself.
"""

from __future__ import annotations

import argparse
import sys

from findap_nemo.launch import add_launch_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training YAML (see configs/train/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. schedule.train_iters=100 optim.lr=1e-5")
    p.add_argument("--print-config", action="store_true",
                   help="print the fully resolved config (defaults + preset + file + overrides) and exit")
    add_launch_arguments(p)


def build_datasets(cfg, *, seed: int):
    """Train/valid datasets from the data stage's manifest, or synthetic ones (data.mock)."""
    from findap_nemo.train.gpt_step import MockGPTDataset

    t = cfg.schedule
    n_train = t.train_iters * t.global_batch_size
    n_valid = max(t.eval_iters, 1) * t.global_batch_size
    if cfg.data.mock:
        return {"train": MockGPTDataset(n_train, t.seq_length, cfg.model.vocab_size, seed),
                "valid": MockGPTDataset(n_valid, t.seq_length, cfg.model.vocab_size, seed + 1)}
    from findap_nemo.data.loader import build_datasets as from_manifest

    return from_manifest(cfg.data.manifest, seq_length=t.seq_length,
                         num_samples={"train": n_train, "valid": n_valid}, seed=seed,
                         reset_position_ids=cfg.data.reset_position_ids)


def check_vocab(cfg) -> None:
    """The model's vocabulary must cover the dataset's token ids."""
    import json

    from findap_nemo.config import ConfigError

    if cfg.data.mock or not cfg.data.manifest:
        return
    with open(cfg.data.manifest, encoding="utf-8") as f:
        vocab = json.load(f).get("vocab_size")
    if vocab and vocab > cfg.model.vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size}: the dataset {cfg.data.manifest} was tokenized "
                          f"with a vocabulary of {vocab}; set model.vocab_size={vocab}")


def run(args) -> int:
    from findap_nemo.config.schema import TrainJobConfig
    from findap_nemo.train.job import load_job, run_job

    cfg = load_job(TrainJobConfig, args, check=check_vocab)
    if cfg is None:
        return 0

    def build():
        from findap_nemo.train.gpt_step import make_gpt_forward_step
        from findap_nemo.train.trainer import Trainer

        return Trainer(cfg, make_gpt_forward_step(cfg.data.reset_attention_mask),
                       build_datasets(cfg, seed=cfg.schedule.seed))

    return run_job(cfg, args, build)


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(**vars(argparse.ArgumentParser().parse_args()))))
