"""A real multi-node SLURM cluster (Debian slurm-wlm 22.05 + munge) on one machine, started in a temp dir for the tests.

No systemd: munged, slurmctld and one slurmd per compute node run as plain daemons with a generated slurm.conf,
their own munge socket, free ports and state/spool/log directories under one session-unique folder, so two test
sessions on the same machine do not see each other's jobs. Clients find the cluster through ``SLURM_CONF`` (set by
:meth:`env`).

Each compute node ``node<i>`` is its own ``slurmd -N node<i>`` with its own loopback address (``NodeAddr=127.0.0.<i+1>``,
which slurmctld and srun use to reach it), its own port (``Port=`` on the NodeName line), spool directory, PID and log
file (``%n`` in the paths). ``NodeHostname`` is this machine's name: that is what each slurmd checks its ``-N`` name
against. Every byte of SLURM and job traffic stays on 127.0.0.0/8.

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")


class LocalSlurm:
    """munged + slurmctld + ``nodes`` slurmds on this host; partition ``debug`` (default), and ``batch`` and ``cpu`` as
    in the shipped H100 configs, each over all nodes.

    ``cpus``, ``gpus`` and ``memory_mb`` (per node) are declared, not real (config_overrides; the GPUs are stand-ins
    that no job of the tests asks for): they let ``sbatch --test-only`` judge the shipped configs' requests (8 GPUs,
    8 x 16 CPUs, 256G per node) while the CPU jobs of the tests oversubscribe this machine's cores."""

    def __init__(self, root: str | os.PathLike, *, nodes: int = 4, cpus: int = 224, gpus: int = 8,
                 memory_mb: int = 1_000_000, partition: str = "debug"):
        if not 1 <= nodes <= 200:
            raise ValueError(f"nodes={nodes}: use 1..200 (one loopback address 127.0.0.2.. per node)")
        self.root = Path(root)
        self.cpus, self.gpus, self.memory_mb, self.partition = cpus, gpus, memory_mb, partition
        self.host = socket.gethostname().split(".")[0]
        self.nodes = [f"node{i + 1}" for i in range(nodes)]
        self.addrs = {n: f"127.0.0.{i + 2}" for i, n in enumerate(self.nodes)}
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
        ctld_port, *node_ports = _free_ports(1 + len(self.nodes))
        r = self.root
        for sub in ("state", "log", "munge", "run", *(f"{d}/{n}" for d in ("spool", "tmp") for n in self.nodes)):
            (r / sub).mkdir(parents=True, exist_ok=True)
        lines = [
            f"ClusterName=findap{os.getpid()}",
            f"SlurmctldHost={self.host}",
            f"SlurmctldPort={ctld_port}",
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
            f"SlurmdSpoolDir={r / 'spool' / '%n'}",  # %n: the node name, one directory per slurmd
            # Per node, under the cluster's folder: srun --mpi=pmix creates spmix_appdir_<uid>_<job>.<step> here, which
            # would collide between two slurmds (and with another cluster's same job ids) in a shared /tmp.
            f"TmpFS={r / 'tmp' / '%n'}",
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'run' / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd-%n.log'}",
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
            *(["GresTypes=gpu"] if self.gpus else []),
            *(f"NodeName={n} NodeAddr={self.addrs[n]} NodeHostname={self.host} Port={port} CPUs={self.cpus} "
              f"RealMemory={self.memory_mb}{f' Gres=gpu:{self.gpus}' if self.gpus else ''} State=UNKNOWN"
              for n, port in zip(self.nodes, node_ports)),
            f"PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO",
            "PartitionName=batch Nodes=ALL Default=NO MaxTime=2-00:00:00 State=UP OverSubscribe=NO",
            "PartitionName=cpu Nodes=ALL Default=NO MaxTime=1-00:00:00 State=UP OverSubscribe=NO",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        # Stand-in GPUs: gres/gpu needs one character device per GPU, so each is a link to /dev/null. Schedulable
        # (for --test-only); no test job asks for them.
        gres = "AutoDetect=off\n"
        if self.gpus:
            (r / "dev").mkdir(exist_ok=True)
            for i in range(self.gpus):
                link = r / "dev" / f"gpu{i}"
                if not link.is_symlink():
                    link.symlink_to("/dev/null")
            gres += f"Name=gpu File={r / 'dev' / 'gpu'}[0-{self.gpus - 1}]\n"
        (r / "gres.conf").write_text(gres)

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
        for node in self.nodes:
            self._run([_which("slurmd"), "-f", str(self.conf), "-N", node])
            self._pids[f"slurmd-{node}"] = r / "run" / f"slurmd-{node}.pid"
        deadline = time.time() + timeout
        state = ""
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env(), capture_output=True, text=True)
            state = (out.stdout + out.stderr).strip()
            states = dict(line.split() for line in out.stdout.splitlines() if len(line.split()) == 2)
            if out.returncode == 0 and sorted(states) == self.nodes and \
                    all(v in ("idle", "mix", "alloc") for v in states.values()):
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
        """Cancel this cluster's jobs, then stop the slurmds and slurmctld together (each takes ~2 s to exit) and
        munged last, by the PIDs in their PID files."""
        if self._pids.get("slurmctld"):
            out = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env(), capture_output=True, text=True)
            ids = out.stdout.split()
            if ids:
                subprocess.run(["scancel", *ids], env=self.env(), capture_output=True)
                time.sleep(2)
        self._terminate([f"slurmd-{n}" for n in self.nodes] + ["slurmctld"])
        self._terminate(["munged"])

    def _terminate(self, names: list[str], wait: float = 10.0) -> None:
        """SIGTERM the named daemons at once; SIGKILL those still running after ``wait`` seconds."""
        pids = []
        for name in names:
            pid_file = self._pids.pop(name, None)
            if pid_file is None or not pid_file.is_file():
                continue
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
            except (ValueError, ProcessLookupError, IndexError):
                continue
            pids.append(pid)
        deadline = time.time() + wait
        while pids and time.time() < deadline:
            pids = [pid for pid in pids if _alive(pid)]
            time.sleep(0.1)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # ------------------------------------------------------------------ node failure
    def _node_tasks(self, node: str) -> list[int]:
        """PIDs of job processes this cluster started on ``node`` (their environment names the node and our conf)."""
        pids = []
        for env_file in Path("/proc").glob("[0-9]*/environ"):
            try:
                env = env_file.read_bytes().split(b"\0")
            except OSError:
                continue
            if f"SLURMD_NODENAME={node}".encode() in env and f"SLURM_CONF={self.conf}".encode() in env:
                pids.append(int(env_file.parent.name))
        return pids

    def fail_node(self, node: str, reason: str) -> list[int]:
        """What a crashed node looks like to SLURM: its slurmd, its step daemons and its tasks die at once (SIGKILL),
        then the node is marked DOWN, as slurmctld does once the node stops answering (after SlurmdTimeout; set here
        at once instead of waiting minutes). Returns the killed task PIDs."""
        tasks = self._node_tasks(node)
        stepds = set()
        for pid in tasks:
            try:
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                if Path(f"/proc/{ppid}/comm").read_text().strip() == "slurmstepd":
                    stepds.add(ppid)
            except (OSError, ValueError, IndexError):
                continue
        pid_file = self._pids.get(f"slurmd-{node}")
        slurmd = [int(pid_file.read_text().split()[0])] if pid_file and pid_file.is_file() else []
        for pid in [*slurmd, *stepds, *tasks]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["scontrol", "update", f"NodeName={node}", "State=DOWN", f"Reason={reason}"], env=self.env(),
                       check=True, capture_output=True)
        return tasks

    def restore_node(self, node: str, timeout: float = 60.0) -> None:
        """Restart the node's slurmd and return it to service (after :meth:`fail_node`)."""
        self._run([_which("slurmd"), "-f", str(self.conf), "-N", node])
        subprocess.run(["scontrol", "update", f"NodeName={node}", "State=RESUME"], env=self.env(), capture_output=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-n", node, "-o", "%t"], env=self.env(), capture_output=True, text=True)
            if out.stdout.strip() in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"{node} did not come back after restore (sinfo: {out.stdout.strip()!r})")

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
