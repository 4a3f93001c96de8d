"""What `findap-nemo train` and `findap-nemo dpo` share around their trainers: the config resolved and checked once
before any rank starts (or only printed), the ranks launched, the process group, the resolved config saved beside the
checkpoints, and the exit code of a run stopped by a signal (75: checkpointed, requeue me)."""

from __future__ import annotations

from typing import Callable, Optional


def load_job(schema: type, args, check: Optional[Callable] = None):
    """The validated job config, or None after printing it (``--print-config``). ``check(cfg)`` adds the stage's
    own checks; they run here, before ranks start, so each problem is reported once and not once per rank."""
    from findap_nemo.config import config_yaml, load_config
    from findap_nemo.launch import will_launch

    if args.print_config:
        print(config_yaml(load_config(schema, args.config, args.overrides)), end="")
        return None
    cfg = load_config(schema, args.config, args.overrides, world_size=will_launch(args))
    if check is not None:
        check(cfg)
    return cfg


def run_job(cfg, args, build_trainer: Callable[[], object]) -> int:
    """Launch the ranks (``--nproc-per-node``) or, in a rank, build the trainer inside the process group and fit."""
    from findap_nemo.config import save_config
    from findap_nemo.launch import maybe_relaunch

    code = maybe_relaunch(args, args.argv)
    if code is not None:
        return code
    from findap_nemo.parallel import destroy_distributed, init_distributed, is_rank0
    from findap_nemo.train.trainer import Interrupted

    init_distributed(cfg.parallel, cfg.schedule.seed)
    try:
        if cfg.checkpoint.save and is_rank0():
            save_config(cfg, f"{cfg.checkpoint.save}/config.yaml")
        build_trainer().fit()
    except Interrupted as stop:
        return int(stop.code)
    finally:
        destroy_distributed()
    return 0
