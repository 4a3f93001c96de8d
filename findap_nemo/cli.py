"""The single `findap-nemo` command: one subcommand per pipeline stage.

Stages are imported lazily so `findap-nemo --help` (and stages that need no megatron-core, such as `eval`)
start fast. Each stage module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NamedTuple, Optional

class Stage(NamedTuple):
    module: str  # exposes add_arguments(parser) and run(args) -> int; its docstring is the stage's epilog
    help: str  # one line
    schema: Optional[str] = None  # "module:Class" of the root config (--help-config); none: flags only
    megatron: bool = False  # its processes import megatron-core: torch.compile is deferred first (deferred_compile.py)
    checkpoints_on_signal: bool = False  # answers SIGTERM/SIGUSR1 with a checkpoint and exit 75 (noted from the start)


STAGES: dict[str, Stage] = {
    "data": Stage("findap_nemo.data.cli", "build the blended CPT+IT dataset (Megatron .bin/.idx + manifest) from a data recipe",
                  "findap_nemo.data.config:DataRecipe", megatron=True),
    "train": Stage("findap_nemo.train.cli", "joint CPT+IT training of a Llama-architecture GPT on megatron-core (TP/PP/SP/DP)",
                   "findap_nemo.train.config:TrainJobConfig", megatron=True, checkpoints_on_signal=True),
    "convert": Stage("findap_nemo.convert.cli", "convert checkpoints: gguf-to-hf, hf-to-mcore, mcore-to-hf",
                     "findap_nemo.convert.config:ConvertConfig", megatron=True),
    "genrm": Stage("findap_nemo.genrm.cli", "sample solutions, judge them with a generative reward model (FAP/SCP), write preference pairs",
                   "findap_nemo.genrm.config:GenRMConfig"),
    "dpo": Stage("findap_nemo.dpo.cli", "preference training (DPO/IPO/RPO) on megatron-core with a frozen reference policy",
                 "findap_nemo.dpo.config:DPOJobConfig", megatron=True, checkpoints_on_signal=True),
    "eval": Stage("findap_nemo.eval.cli", "FinEval: evaluate HF checkpoints on similar, novel, general and instruction-following tasks",
                  "findap_nemo.eval.config:EvalConfig"),
    "slurm": Stage("findap_nemo.slurm.cli", "render/submit sbatch jobs and stage pipelines, with auto-resume; job status",
                   "findap_nemo.slurm.config:SlurmConfig"),
    "plan": Stage("findap_nemo.plan.cli", "rank TP/PP/VPP/CP/DP layouts by estimated memory and step time for a cluster",
                  "findap_nemo.plan.config:PlanJobConfig", megatron=True),
    "run": Stage("findap_nemo.pipeline.cli", "run the whole FinDAP pipeline (data -> train -> convert -> genrm -> dpo -> eval -> report)",
                 "findap_nemo.pipeline.config:PipelineConfig"),
    "ablate": Stage("findap_nemo.ablate.cli", "the paper's recipe comparisons: variants of a pipeline (shared stages once), compared on FinEval",
                    "findap_nemo.ablate.config:AblationConfig"),
    "doctor": Stage("findap_nemo.doctor", "print the versions of torch, megatron-core, TE, apex, transformers and whether CUDA/TE/FP8 are usable"),
}


class _LazyHelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default only when it has one worth showing (no "(default: None)", "(default: False)" or
    "(default: [])")."""

    def _get_help_string(self, action):
        if action.default in (None, False, []) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def build_parser(stage: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="findap-nemo",
        description="Domain-adaptive post-training for financial LLMs (FinDAP recipe) on megatron-core.",
        epilog="Run `findap-nemo <stage> --help` for a stage's options. Configs are YAML; any key can be "
        "overridden on the command line as a dotted assignment, e.g. `optim.lr=1e-5 parallel.tensor_model_parallel_size=2`.",
        formatter_class=_LazyHelpFormatter,
    )
    from findap_nemo import __version__

    parser.add_argument("--version", action="version", version=f"findap-nemo {__version__}")
    sub = parser.add_subparsers(dest="stage", metavar="<stage>")
    for name, spec in STAGES.items():
        p = sub.add_parser(name, help=spec.help, description=spec.help, formatter_class=_LazyHelpFormatter)
        if name == stage:  # only import the stage that is actually used
            mod = importlib.import_module(spec.module)
            mod.add_arguments(p)
            if spec.schema:
                p.add_argument("--help-config", action="store_true",
                               help="list every config key with its type, default and meaning, and exit")
            p.epilog = mod.__doc__
            for action in p._actions:  # a stage's own subcommands (convert hf-to-mcore, slurm submit) format alike
                if isinstance(action, argparse._SubParsersAction):
                    for nested in action.choices.values():
                        nested.formatter_class = _LazyHelpFormatter
    return parser


# Known, harmless notices from megatron-core on machines without apex/TE, and deprecations inside torch that
# megatron-core's checkpointing and distributed optimizer trigger (nothing a user can act on; each rank printed them
# on every save and step); hidden so real warnings stand out.
_QUIET = r".*(Apex is not installed|Transformer Engine and Apex are not installed|full scope is deprecated|" \
         r"Transformer Engine is not installed|`load_state_dict` is deprecated|deprecating ShardedTensor|" \
         r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor)` is deprecated|" \
         r"\.grad attribute of a Tensor that is not a leaf Tensor is being accessed).*"


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.filterwarnings("ignore", message=_QUIET)
    argv = list(sys.argv[1:] if argv is None else argv)
    stage = next((a for a in argv if not a.startswith("-")), None)
    if "--help-config" in argv and stage in STAGES:
        from findap_nemo.config.describe import help_config_text

        if not STAGES[stage].schema:
            print(f"findap-nemo {stage} has no config file: its options are the flags of `findap-nemo {stage} --help`",
                  file=sys.stderr)
            return 2
        sys.stdout.write(help_config_text(stage, STAGES[stage].schema))
        return 0
    parser = build_parser(stage if stage in STAGES else None)
    args, extra = parser.parse_known_args(argv)
    # argparse fills a positional list once: dotted overrides after a flag (`--config x.yaml a=1 --print-config b=2`)
    # come back unparsed; they are still overrides, and so is everything after `--` (`slurm submit ... -- <stage
    # command>`). Anything else unknown is an error, as argparse would say.
    cut = extra.index("--") if "--" in extra else len(extra)
    late = [a for a in extra[:cut] if "=" in a and not a.startswith("-")]
    unknown = [a for a in extra[:cut] if a not in late]
    late += extra[cut:]
    if unknown or (late and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or late)}")
    if late:
        args.overrides = [*args.overrides, *late]
    args.argv = argv  # stages that re-launch themselves (torchrun) need the original command line
    if args.stage is None:
        parser.print_help()
        return 2
    from findap_nemo.config import ConfigError
    from findap_nemo.storage import StorageError

    stage = STAGES[args.stage]
    working = not getattr(args, "print_config", False)
    if stage.checkpoints_on_signal and working:
        from findap_nemo.supervise import install_preemption_flag

        install_preemption_flag()
    if stage.megatron and working:
        from findap_nemo.deferred_compile import defer_torch_compile

        defer_torch_compile()
    module = importlib.import_module(stage.module)
    try:
        return int(module.run(args) or 0)
    except ConfigError as err:
        print(f"findap-nemo {args.stage}: invalid configuration\n{err}", file=sys.stderr)
        return 2
    except StorageError as err:
        print(f"findap-nemo {args.stage}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"findap-nemo {args.stage}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: not an error of ours
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
