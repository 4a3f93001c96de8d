"""A real single-node SLURM cluster (Debian slurm-wlm 22.05 + munge) started in a temp dir for the tests.

No systemd: munged, slurmctld and slurmd run as plain daemons with a generated slurm.conf, their own munge socket,
free ports and state/spool/log directories under one session-unique folder, so two test sessions on the same
machine do not see each other's jobs. Clients find the cluster through ``SLURM_CONF`` (set by :meth:`env`).

Also runnable by hand for experiments::

    python tests/slurm_cluster.py /tmp/mycluster      # prints `export SLURM_CONF=...`; Ctrl-C stops it
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REQUIRED = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel")
SETUP_HINT = ("the SLURM tests need Debian's slurm-wlm and munge: run `sudo scripts/setup.sh` (or `apt-get install "
              "slurmctld slurmd slurm-client munge`)")


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


class LocalSlurm:
    """munged + slurmctld + slurmd on this host. ``cpus`` may exceed the real core count (config_overrides)."""

    def __init__(self, root: str | os.PathLike, *, cpus: int = 6, memory_mb: int = 8000, partition: str = "debug"):
        self.root = Path(root)
        self.cpus, self.memory_mb, self.partition = cpus, memory_mb, partition
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self._pids: dict[str, Path] = {}
        self._held: dict[str, float] = {}  # requeued job id -> when it was first seen held

    # ------------------------------------------------------------------ setup
    @staticmethod
    def missing_binaries() -> list[str]:
        return [b for b in REQUIRED if _which(b) is None]

    def env(self) -> dict[str, str]:
        """Environment for clients (sbatch, squeue, ...) and for the jobs they start."""
        e = dict(os.environ)
        e["SLURM_CONF"] = str(self.conf)
        e["PATH"] = e.get("PATH", "") + ":/usr/sbin:/sbin"
        return e

    def _write_conf(self) -> None:
        ctld_port, slurmd_port = _free_ports(2)
        r = self.root
        for sub in ("state", "spool", "log", "munge", "run"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        lines = [
            f"ClusterName=findap{os.getpid()}",
            f"SlurmctldHost={self.host}",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=500",  # without it a job takes the node's whole memory and jobs cannot run side by side
            # Declared CPUs may exceed the real cores, so small jobs can run side by side.
            "SlurmdParameters=config_overrides",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "ReturnToService=2",
            "JobCompType=jobcomp/none",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SchedulerParameters=sched_interval=1,bf_interval=1",
            "KillWait=10",
            "MinJobAge=600",
            "InactiveLimit=0",
            f"NodeName={self.host} CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 30.0) -> "LocalSlurm":
        missing = self.missing_binaries()
        if missing:
            raise RuntimeError(f"SLURM binaries not found: {missing}; {SETUP_HINT}")
        self._write_conf()
        r = self.root
        key = Path("/etc/munge/munge.key")
        if not key.is_file():
            raise RuntimeError(f"{key} is missing (the munge package creates it); {SETUP_HINT}")
        munge_pid = r / "run" / "munged.pid"
        self._run([_which("munged"), "--force", f"--socket={self.munge_socket}", f"--pid-file={munge_pid}",
                   f"--log-file={r / 'log' / 'munged.log'}", f"--seed-file={r / 'munge' / 'seed'}",
                   f"--key-file={key}"])
        self._pids["munged"] = munge_pid
        self._run([_which("slurmctld"), "-f", str(self.conf)])
        self._pids["slurmctld"] = r / "run" / "slurmctld.pid"
        self._run([_which("slurmd"), "-f", str(self.conf)])
        self._pids["slurmd"] = r / "run" / "slurmd.pid"
        deadline = time.time() + timeout
        state = ""
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env(), capture_output=True, text=True)
            state = (out.stdout + out.stderr).strip()
            if out.returncode == 0 and state in ("idle", "mix", "alloc"):
                return self
            time.sleep(0.5)
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted((r / "log").glob("*.log")))
        self.stop()
        raise RuntimeError(f"local SLURM did not become ready in {timeout}s (sinfo: {state!r})\n{logs}")

    def _run(self, cmd: list[str]) -> None:
        proc = subprocess.run(cmd, env=self.env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop slurmd, slurmctld and munged by the PIDs in their PID files."""
        if self._pids.get("slurmctld"):
            out = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env(), capture_output=True, text=True)
            ids = out.stdout.split()
            if ids:
                subprocess.run(["scancel", *ids], env=self.env(), capture_output=True)
                time.sleep(2)
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self._pids.pop(name, None)
            if pid_file is None or not pid_file.is_file():
                continue
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
            except (ValueError, ProcessLookupError, IndexError):
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # ------------------------------------------------------------------ job helpers
    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """`scontrol show job -o` parsed: one dict per job or array task (JobState, ExitCode, Restarts, ...)."""
        out = subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], env=self.env(), capture_output=True,
                             text=True)
        rows = []
        for line in out.stdout.splitlines():
            info: dict[str, str] = {}
            for tok in line.split():
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    info.setdefault(k, v)
            if info:
                rows.append(info)
        return rows

    def release_requeued(self, job_id: str, settle: float = 4.0) -> None:
        """SLURM holds a requeued job for 120 s (BeginTime); a test cluster waits only ``settle`` seconds.

        Not zero: slurmd must finish tearing down the previous attempt, or the new one fails to launch
        ("Job credential revoked")."""
        now = time.time()
        for info in self.jobs(job_id):
            jid = info.get("JobId", "")
            if info.get("JobState") == "PENDING" and info.get("Reason") == "BeginTime":
                since = self._held.setdefault(jid, now)
                if now - since >= settle:
                    subprocess.run(["scontrol", "update", f"JobId={jid}", "StartTime=now"], env=self.env(),
                                   capture_output=True)
                    self._held.pop(jid, None)
            else:
                self._held.pop(jid, None)

    def wait(self, job_ids, timeout: float = 240.0, poll: float = 0.5) -> dict[str, list[dict[str, str]]]:
        """Wait until every job (each array task) is in a final state; returns the scontrol rows per job id."""
        final = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                 "DEADLINE", "PREEMPTED"}
        ids = [str(j) for j in ([job_ids] if isinstance(job_ids, (str, int)) else job_ids)]
        deadline = time.time() + timeout
        while True:
            states = {j: self.jobs(j) for j in ids}
            if all(rows and all(r.get("JobState") in final for r in rows) for rows in states.values()):
                return states
            if time.time() > deadline:
                shown = {j: [r.get("JobState") for r in rows] for j, rows in states.items()}
                raise TimeoutError(f"jobs not finished after {timeout}s: {shown}")
            for j in ids:
                self.release_requeued(j)
            time.sleep(poll)


def require_slurm() -> None:
    missing = LocalSlurm.missing_binaries()
    if missing:
        pytest.fail(f"SLURM binaries not found: {missing}; {SETUP_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> "LocalSlurm":
    """A real local SLURM for the test session; fails (never skips) when slurm-wlm/munge are not installed."""
    require_slurm()
    if os.geteuid() != 0:
        pytest.fail("the local SLURM test cluster runs its daemons as root (SlurmUser=root); run the SLURM tests as "
                    "root, e.g. in the CI container", pytrace=False)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    yield cluster
    cluster.stop()


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/findap-slurm")
    cluster = LocalSlurm(root).start()
    print(f"export SLURM_CONF={cluster.conf}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
