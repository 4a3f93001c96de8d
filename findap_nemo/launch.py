"""Starting a megatron stage with N local processes: ``--nproc-per-node N`` re-executes the command under torchrun."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_launch_arguments(parser) -> None:
    parser.add_argument("--nproc-per-node", type=int, default=None,
                        help="start this many local processes with torchrun (CPU: gloo ranks; GPU: one per GPU). "
                             "Not needed under torchrun or srun, which set the ranks themselves.")


def maybe_relaunch(args, argv: list[str]) -> int | None:
    """Re-run ``findap-nemo <argv>`` under torchrun when --nproc-per-node asks for it and we are not already a rank.

    Returns the child's exit code, or None when the current process should do the work itself.
    """
    n = getattr(args, "nproc_per_node", None)
    if not n or "RANK" in os.environ or "SLURM_PROCID" in os.environ:
        return None
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={n}", "--nnodes=1",
           f"--master-port={free_port()}", "-m", "findap_nemo.cli", *argv]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.call(cmd, env=env)


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
