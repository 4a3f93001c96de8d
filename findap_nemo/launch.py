"""Starting a megatron stage with N local processes: ``--nproc-per-node N`` re-executes the command as N ranks.

The ranks are started directly (torch's ``env://`` variables, no torchrun in between) under a
:class:`~findap_nemo.supervise.Supervisor`: SIGTERM/SIGINT/SIGUSR1 sent to this launcher reach every rank, the ranks
die with the launcher, and the launcher's exit status is the ranks' (75 after a signal checkpoint, so a requeue
wrapper sees it). torchrun's elastic agent would put a process between us and the ranks that turns a rank's exit 75
into a traceback and exit 1, and starts the ranks in sessions of their own that outlive a killed launcher.
"""

from __future__ import annotations

import os
import socket
import sys

LAUNCHER_ENV = "FINDAP_NEMO_LAUNCHER_PID"
"""Set in every rank started by the launcher (the launcher's pid)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_launch_arguments(parser) -> None:
    parser.add_argument("--nproc-per-node", type=int, default=None,
                        help="start this many local processes (CPU: gloo ranks; GPU: one per GPU). "
                             "Not needed under torchrun or srun, which set the ranks themselves.")


def threads_per_rank(nproc: int) -> int:
    """OpenMP threads for one of ``nproc`` local ranks: the cores this process may use, shared out."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // max(nproc, 1))


def rank_env(rank: int, nproc: int, port: int) -> dict[str, str]:
    env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc),
               LOCAL_WORLD_SIZE=str(nproc), GROUP_RANK="0", ROLE_RANK=str(rank), ROLE_WORLD_SIZE=str(nproc),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), PYTHONUNBUFFERED="1")
    env[LAUNCHER_ENV] = str(os.getpid())
    if "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(threads_per_rank(nproc))
    return env


def launch_ranks(nproc: int, argv: list[str]) -> int:
    """Run ``findap-nemo <argv>`` as ``nproc`` local ranks and return their combined exit status."""
    from findap_nemo.runtime import EXIT_REQUEUE
    from findap_nemo.supervise import Supervisor, exit_status

    port = free_port()
    cmd = [sys.executable, "-m", "findap_nemo.cli", *strip_launch_args(argv)]
    with Supervisor("findap-nemo") as sup:
        for rank in range(nproc):
            sup.start(cmd, env=rank_env(rank, nproc, port))
        status = sup.wait_all()
        if status == EXIT_REQUEUE:
            print(f"findap-nemo: the ranks checkpointed after a signal; exit {EXIT_REQUEUE} (rerun to resume)",
                  file=sys.stderr, flush=True)
        elif status != 0:
            got = f" after {', '.join(_signame(s) for s in dict.fromkeys(sup.signals))}" if sup.signals else ""
            print(sup.failure_line(status) + got, file=sys.stderr, flush=True)
    return exit_status(status)


def _signame(sig: int) -> str:
    import signal

    return signal.Signals(sig).name


def will_launch(args) -> int | None:
    """The number of ranks ``maybe_relaunch`` will start (the world size to validate a config for), else None."""
    n = getattr(args, "nproc_per_node", None)
    if not n or "RANK" in os.environ or "SLURM_PROCID" in os.environ:
        return None
    return n


def maybe_relaunch(args, argv: list[str]) -> int | None:
    """Re-run ``findap-nemo <argv>`` as ranks when --nproc-per-node asks for it and we are not already a rank.

    Returns the ranks' exit code, or None when the current process should do the work itself.
    """
    n = will_launch(args)
    return launch_ranks(n, argv) if n else None


def strip_launch_args(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc-per-node":
            skip = True
            continue
        if a.startswith("--nproc-per-node="):
            continue
        out.append(a)
    return out
