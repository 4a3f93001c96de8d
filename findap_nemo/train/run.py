"""The train stage's work (`findap-nemo train`): the datasets a job trains on, from the data stage's manifest or
synthetic, and the Trainer over them; :mod:`findap_nemo.train.job` runs it (launch, signals, exit codes)."""

from __future__ import annotations


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
    from findap_nemo.config import ConfigError
    from findap_nemo.files import read_json

    if cfg.data.mock or not cfg.data.manifest:
        return
    vocab = read_json(cfg.data.manifest).get("vocab_size")
    if vocab and vocab > cfg.model.vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size}: the dataset {cfg.data.manifest} was tokenized "
                          f"with a vocabulary of {vocab}; set model.vocab_size={vocab}")


def build_trainer(cfg):
    from findap_nemo.train.gpt_step import make_gpt_forward_step
    from findap_nemo.train.trainer import Trainer

    return Trainer(cfg, make_gpt_forward_step(cfg.data.reset_attention_mask),
                   build_datasets(cfg, seed=cfg.schedule.seed))
