"""`findap-nemo train`: joint CPT+IT training of a Llama-architecture GPT on megatron-core.

    findap-nemo train --config configs/train/tiny_cpu.yaml --nproc-per-node 2 parallel.tensor_model_parallel_size=2
    torchrun --nproc-per-node 8 -m findap_nemo.cli train --config configs/train/llama3-8b-cpt-it-1node.yaml

Resumes automatically from the newest checkpoint in ``checkpoint.save``; on SIGUSR1/SIGTERM it checkpoints and exits
with code 75 so a SLURM job can requeue itself.
"""

from __future__ import annotations

import argparse
import sys

from findap_nemo.launch import add_launch_arguments, maybe_relaunch, will_launch


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training YAML (see configs/train/)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.train_iters=100 optim.lr=1e-5")
    p.add_argument("--print-config", action="store_true",
                   help="print the fully resolved config (defaults + preset + file + overrides) and exit")
    add_launch_arguments(p)


def build_datasets(cfg, *, seed: int):
    """Train/valid datasets from the data stage's manifest, or synthetic ones (data.mock)."""
    from findap_nemo.train.gpt_step import MockGPTDataset

    t = cfg.train
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
    if args.print_config:
        import yaml

        from findap_nemo.config import config_to_dict, load_config
        from findap_nemo.config.schema import TrainJobConfig

        print(yaml.safe_dump(config_to_dict(load_config(TrainJobConfig, args.config, args.overrides)),
                             sort_keys=False))
        return 0
    from findap_nemo.config import load_config, save_config
    from findap_nemo.config.schema import TrainJobConfig

    # Validated here, before any rank starts: every problem once, not once per rank.
    cfg = load_config(TrainJobConfig, args.config, args.overrides, world_size=will_launch(args))
    check_vocab(cfg)
    code = maybe_relaunch(args, args.argv)
    if code is not None:
        return code
    from findap_nemo.parallel import destroy_distributed, init_distributed, is_rank0
    from findap_nemo.train.gpt_step import make_gpt_forward_step
    from findap_nemo.train.trainer import Interrupted, Trainer

    init_distributed(cfg.parallel, cfg.train.seed)
    try:
        if cfg.checkpoint.save and is_rank0():
            save_config(cfg, f"{cfg.checkpoint.save}/config.yaml")
        datasets = build_datasets(cfg, seed=cfg.train.seed)
        trainer = Trainer(cfg, make_gpt_forward_step(cfg.data.reset_attention_mask), datasets)
        trainer.fit()
    except Interrupted as stop:
        return int(stop.code)
    finally:
        destroy_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(**vars(argparse.ArgumentParser().parse_args()))))
