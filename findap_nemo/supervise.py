"""Child processes that never outlive their parent and receive the signals their parent receives.

Both launchers of the package (``--nproc-per-node`` starting ranks, ``findap-nemo run`` starting stages) start their
children through :class:`Supervisor`:

* each child gets a parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, set between fork and exec), so a
  ``kill -9`` of the launcher, or of its whole process group, takes the children with it within milliseconds; a
  chain (run -> train launcher -> ranks) unwinds link by link;
* children run in their own session, so a terminal's Ctrl-C or a signal to the launcher's process group reaches
  them exactly once: forwarded by the launcher (SIGTERM, SIGINT, SIGUSR1), not twice;
* the launcher waits for all children and returns one exit status: the first failure, else :data:`EXIT_REQUEUE`
  when a child checkpointed after a signal, else 0. A failed rank stops the others (they would hang in a collective).

Training processes install :func:`install_preemption_flag` first thing, so a signal that arrives while they are still
importing or loading data is remembered and answered with a checkpoint at the first step boundary instead of killing
them before they can save.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

from findap_nemo.runtime import EXIT_REQUEUE

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """In a child (before exec): the kernel sends ``sig`` when the parent exits. Linux only; a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)


_preempted: list[int] = []


def install_preemption_flag() -> None:
    """Remember SIGTERM/SIGUSR1 (instead of dying) until the training loop takes over; see module docstring."""

    def note(signum, _frame):
        if not _preempted:
            print(f"[rank {os.environ.get('RANK', 0)}] received signal {signum} while starting: will checkpoint "
                  f"and exit at the first step", flush=True)
        _preempted.append(signum)

    for sig in PREEMPTION_SIGNALS:
        try:
            signal.signal(sig, note)
        except ValueError:  # not the main thread
            pass


def preemption_requested() -> bool:
    return bool(_preempted)


def exit_status(returncode: int) -> int:
    """A shell-style status: a child killed by signal N counts as 128+N."""
    return 128 - returncode if returncode < 0 else returncode


class Supervisor:
    """Start children, forward signals to them, and reap them; use as a context manager around start/wait."""

    def __init__(self, name: str = "findap-nemo"):
        self.name = name
        self.procs: list[subprocess.Popen] = []
        self.signals: list[int] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "Supervisor":
        for sig in FORWARDED:
            self._previous[sig] = signal.signal(sig, self._forward)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self.kill_all()

    def start(self, cmd: list[str], **popen_kwargs) -> subprocess.Popen:
        parent = os.getpid()
        proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=lambda: die_with_parent(parent),
                                **popen_kwargs)
        self.procs.append(proc)
        if self.signals:  # a signal arrived while we were starting children
            self._send(self.signals[-1], [proc])
        return proc

    def _forward(self, signum, _frame) -> None:
        again = signum in self.signals
        self.signals.append(signum)
        if signum == signal.SIGINT and again:  # a second Ctrl-C: stop now
            self.kill_all()
            return
        self._send(signum, self.procs)

    @staticmethod
    def _send(signum: int, procs) -> None:
        for p in procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signum)  # the child itself, not its group: its helpers do not handle signals
                except ProcessLookupError:
                    pass

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)  # its own session: helpers (data workers, writers) too
                except (ProcessLookupError, PermissionError):
                    p.kill()
        for p in self.procs:
            p.wait()

    def wait_all(self, *, grace_s: float = 10.0) -> int:
        """Wait for every child; one combined exit status (see module docstring). A failure stops the others:
        SIGTERM first (they may checkpoint), SIGKILL after ``grace_s``."""
        failed: tuple[int, int] | None = None  # (index, status)
        stop_deadline = None
        while True:
            running = [p for p in self.procs if p.poll() is None]
            if failed is None:
                for i, p in enumerate(self.procs):
                    code = p.returncode
                    if code is not None and code not in (0, EXIT_REQUEUE):
                        failed = (i, exit_status(code))
                        if running:
                            self._send(signal.SIGTERM, running)
                            stop_deadline = time.monotonic() + grace_s
                        break
            if not running:
                break
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                self.kill_all()
                break
            time.sleep(0.1)
        codes = [p.returncode for p in self.procs]
        if failed is not None:
            return failed[1]
        if any(c == EXIT_REQUEUE for c in codes):
            return EXIT_REQUEUE
        return 0

    def failure_line(self, status: int, what: str = "rank") -> str:
        """One line naming which child failed and how (no traceback: the child printed its own error)."""
        for i, p in enumerate(self.procs):
            if exit_status(p.returncode) == status and status not in (0, EXIT_REQUEUE):
                how = f"was killed by {signal.Signals(-p.returncode).name}" if p.returncode < 0 else \
                    f"exited with {p.returncode}"
                return f"{self.name}: {what} {i} {how}; the other {what}s were stopped"
        return f"{self.name}: exit {status}"
