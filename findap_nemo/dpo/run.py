"""The DPO stage's work (`findap-nemo dpo`): preference pairs loaded and checked against the tokenizer, the
frozen reference, and the DPO trainer over them; :mod:`findap_nemo.train.job` runs it like a training job."""

from __future__ import annotations


def build_datasets(cfg, tokenizer):
    """Train/valid PairDatasets and, per split, the file its records came from."""
    from findap_nemo.config import ConfigError
    from findap_nemo.dpo.data import PairDataset, load_pairs, split_holdout
    from findap_nemo.parallel import is_rank0, print_rank0

    d = cfg.data
    kw = dict(seq_length=cfg.schedule.seq_length, default_chosen_reward=d.default_chosen_reward,
              default_rejected_reward=d.default_rejected_reward, progress=is_rank0() and cfg.logging.progress_bar)
    train, report = load_pairs(d.train_file, tokenizer, **kw)
    print_rank0(f"[dpo] {report.summary()}")
    sources = {"train": d.train_file}
    if d.validation_file:
        valid, vreport = load_pairs(d.validation_file, tokenizer, **kw)
        print_rank0(f"[dpo] {vreport.summary()}")
        sources["valid"] = d.validation_file
    else:
        train, valid = split_holdout(train, d.validation_fraction, cfg.schedule.seed)
        sources["valid"] = d.train_file
    if not train:
        raise ConfigError(f"data.train_file={d.train_file!r}: no usable pairs ({report.summary()}); raise "
                          f"schedule.seq_length or shorten the prompts")
    print_rank0(f"[dpo] {len(train)} training pairs, {len(valid)} held-out pairs")
    return {"train": PairDataset(train, "train"), "valid": PairDataset(valid, "valid") if valid else None}, sources


def check_tokenizer(cfg, tokenizer) -> None:
    from findap_nemo.config import ConfigError

    if len(tokenizer) > cfg.model.vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size}: the tokenizer {cfg.model.tokenizer} has "
                          f"{len(tokenizer)} tokens; set model.vocab_size>={len(tokenizer)}")


def build_trainer(cfg):
    """The DPO trainer: pairs tokenised and collated, and the frozen reference (precomputed log-probs or a model)."""
    from findap_nemo.dpo.data import PairCollator
    from findap_nemo.dpo.reference import build_reference, precompute
    from findap_nemo.dpo.step import make_dpo_forward_step
    from findap_nemo.dpo.trainer import DPOTrainer
    from findap_nemo.parallel import print_rank0
    from findap_nemo.tokenizer import load_tokenizer, pad_token_id

    tokenizer = load_tokenizer(cfg.model.tokenizer)
    check_tokenizer(cfg, tokenizer)
    datasets, sources = build_datasets(cfg, tokenizer)
    collate = PairCollator(pad_token_id(tokenizer), cfg.schedule.seq_length,
                           fixed_length=cfg.parallel.pipeline_model_parallel_size > 1,
                           pad_to_multiple_of=cfg.data.pad_to_multiple_of,
                           tensor_parallel=cfg.parallel.tensor_model_parallel_size)
    reference = None
    if cfg.dpo.precompute_reference_logps:
        precompute(cfg, datasets, sources, collate)
    else:
        reference = build_reference(cfg)
        print_rank0("[dpo] reference log-probs computed on the fly (one forward-only pass per step)")
    return DPOTrainer(cfg, make_dpo_forward_step(cfg.dpo, cfg.model.vocab_size), datasets, collate_fn=collate,
                      reference=reference)
