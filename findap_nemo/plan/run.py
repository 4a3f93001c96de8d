"""The plan stage's work (`findap-nemo plan`): the configured layout and every candidate layout evaluated for
memory and step time, the exit code scripts gate on, and --measure's comparison with a real training step."""

from __future__ import annotations


def configured_layout(cfg):
    """The layout the given config asks for (evaluated and reported first)."""
    from findap_nemo.plan.layout import Layout

    par, n = cfg.parallel, cfg.cluster.world_size
    denom = par.tensor_model_parallel_size * par.pipeline_model_parallel_size * par.context_parallel_size
    if n % denom:
        dp = 0
    else:
        dp = n // denom
    sps = cfg.sequences_per_sample
    return Layout(tp=par.tensor_model_parallel_size, pp=par.pipeline_model_parallel_size,
                  vpp=par.virtual_pipeline_model_parallel_size, cp=par.context_parallel_size, dp=max(dp, 1),
                  sp=par.sequence_parallel, micro_batch_size=cfg.schedule.micro_batch_size * sps,
                  recompute=cfg.model.recompute_granularity, recompute_num_layers=cfg.model.recompute_num_layers or 1,
                  distributed_optimizer=par.use_distributed_optimizer, sequences_per_sample=sps), dp >= 1


def shape_kwargs(cfg) -> dict:
    """Sequence-level arguments of the estimators (a DPO global batch of N pairs is 2N sequences)."""
    return dict(seq_length=cfg.schedule.seq_length, global_batch_size=cfg.schedule.global_batch_size * cfg.sequences_per_sample,
                dtype=cfg.param_dtype, fp8=bool(cfg.precision.fp8), cal=cfg.calibration)


def plan_layouts(cfg, *, with_configured: bool):
    """(the configured layout's candidate or None, every candidate fastest-fitting first)."""
    from findap_nemo.plan.search import evaluate, plan

    common = shape_kwargs(cfg)
    own_layout, _ = configured_layout(cfg)
    # a layout whose TP x PP x CP does not divide the cluster is reported as "uses N GPUs, the cluster has M"
    own = evaluate(cfg.model, own_layout, cfg.cluster, impl=cfg.search.impl, **common) if with_configured else None
    cands = plan(cfg.model, cfg.cluster, cfg.search, sequences_per_sample=cfg.sequences_per_sample, **common)
    return own, cands


def exit_code(fitting, own) -> int:
    """0: some layout fits (and so does the configured one); 1: nothing fits; 3: the configured layout does not fit
    but others do (scripts can gate a submission on it)."""
    if not fitting:
        return 1
    return 3 if own is not None and not own.fits else 0


def measure_and_compare(cfg) -> int:
    """Measure the configured layout on this machine's ranks and print it next to the planner's estimate."""
    import os

    import torch

    from findap_nemo.config import ConfigError
    from findap_nemo.config.schema import use_te
    from findap_nemo.model.builder import params_dtype
    from findap_nemo.parallel import destroy_distributed, init_distributed, is_rank0
    from findap_nemo.plan.layout import Layout
    from findap_nemo.plan.measure import measure_training_memory
    from findap_nemo.plan.memory import estimate_memory

    par = cfg.parallel
    if cfg.sequences_per_sample != 1:
        raise ConfigError("--measure runs a language-model training step; give a train config (DPO memory is that of "
                          "a micro-batch twice as large)")
    if par.pipeline_model_parallel_size != 1:
        raise ConfigError("parallel.pipeline_model_parallel_size: --measure supports 1 (a middle pipeline stage needs "
                          "its neighbours' activations); measure the TP/CP/DP part of the layout")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    denom = par.tensor_model_parallel_size * par.context_parallel_size
    if world % denom:
        raise ConfigError(f"parallel: TP x CP = {denom} does not divide the {world} processes; start "
                          f"--nproc-per-node with a multiple of it")
    dtype = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[params_dtype(cfg.precision)]
    impl = "te" if use_te(cfg.model) else "local"
    init_distributed(par, cfg.schedule.seed)
    try:
        m = measure_training_memory(cfg.model, par, cfg.precision, seq_length=cfg.schedule.seq_length,
                                    micro_batch_size=cfg.schedule.micro_batch_size)
        rank0 = is_rank0()
    finally:
        destroy_distributed()
    layout = Layout(tp=par.tensor_model_parallel_size, cp=par.context_parallel_size, dp=world // denom,
                    sp=par.sequence_parallel, micro_batch_size=cfg.schedule.micro_batch_size,
                    recompute=cfg.model.recompute_granularity,
                    recompute_num_layers=cfg.model.recompute_num_layers or 1,
                    distributed_optimizer=par.use_distributed_optimizer)
    est = estimate_memory(cfg.model, layout, seq_length=cfg.schedule.seq_length, num_microbatches=1, dtype=dtype,
                          impl=impl, fp8=bool(cfg.precision.fp8))
    if rank0:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"Measured vs estimated memory per rank: {layout.describe()}, {dtype}, {impl} layers, "
                        f"seq {cfg.schedule.seq_length}")
        for col in ("part", "estimate MiB", "measured MiB", "difference"):
            t.add_column(col, justify="left" if col == "part" else "right")
        rows = [(k, getattr(est, k), getattr(m, k)) for k in ("weights", "grads", "optimizer", "activations")]
        rows.append(("total (without transient)", est.total - est.transient, m.total))
        if m.peak_allocated is not None:
            rows.append(("CUDA peak allocated vs total", est.total, m.peak_allocated))
        for name, e, x in rows:
            t.add_row(name, f"{e / 2**20:.3f}", f"{x / 2**20:.3f}", f"{(e - x) / max(x, 1):+.1%}")
        Console(width=160).print(t)
    return 0
