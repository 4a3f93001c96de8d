"""`findap-nemo slurm` configs: the cluster, the resources of a job, how its software is provided, auto-resume.

One YAML describes either a single job (``job:``) or a pipeline of stage jobs (``stages:``), each job naming the
`findap-nemo` stage it runs with the stage's own YAML config and overrides (the same configs used interactively).
Strings may use OmegaConf interpolation (``${run_dir}``); ``{sweep}`` in a job's overrides is replaced by the name of
the sweep entry an array task runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from findap_nemo.config import ConfigError, Problems


@dataclass
class PartitionSpec:
    """What a partition offers; requests beyond it are rejected before submission."""

    name: str = "???"
    gpus_per_node: int = 8
    cpus_per_node: Optional[int] = None
    max_nodes: Optional[int] = None
    max_time: Optional[str] = None  # SLURM time format, e.g. 2-00:00:00


@dataclass
class ClusterConfig:
    name: str = "cluster"
    # Declared partitions (optional). When given, resources.partition must be one of them.
    partitions: List[PartitionSpec] = field(default_factory=list)
    # Before submitting, ask the live cluster (sinfo) whether the partition exists and the request fits.
    check_live: bool = True
    gres_name: str = "gpu"  # GRES type of the GPUs in sinfo (gpu:h100:8 -> gpu)


@dataclass
class ResourcesConfig:
    partition: Optional[str] = None  # null: the cluster's default partition
    account: Optional[str] = None
    qos: Optional[str] = None
    nodes: int = 1
    gpus_per_node: int = 8  # 0: a CPU job
    tasks_per_node: Optional[int] = None  # default: one task per GPU (1 for a CPU job)
    cpus_per_task: Optional[int] = None
    mem: Optional[str] = None  # e.g. 0 (all of the node's memory), 500G
    time: str = "04:00:00"  # [D-]HH:MM:SS
    exclusive: bool = False
    constraint: Optional[str] = None
    reservation: Optional[str] = None
    extra_sbatch: List[str] = field(default_factory=list)  # verbatim #SBATCH options, e.g. --comment=findap

    @property
    def ntasks_per_node(self) -> int:
        if self.tasks_per_node is not None:
            return self.tasks_per_node
        return self.gpus_per_node if self.gpus_per_node > 0 else 1


@dataclass
class ContainerConfig:
    """pyxis/enroot container for the job steps; ``image: null`` runs in the plain environment instead."""

    image: Optional[str] = None  # e.g. nvcr.io#nvidia/pytorch:25.01-py3 or /shared/sqsh/findap.sqsh
    mounts: List[str] = field(default_factory=list)  # SRC:DST[:FLAGS]
    workdir: Optional[str] = None  # working directory inside the container (default: environment.workdir)
    mount_home: bool = False
    writable: bool = False
    extra_args: List[str] = field(default_factory=list)  # more srun options, e.g. --container-env=VAR


@dataclass
class EnvironmentConfig:
    workdir: Optional[str] = None  # cd here before running (default: the directory `slurm` was called from)
    python: Optional[str] = None  # interpreter; default: this Python (plain env) or `python` (container)
    setup: List[str] = field(default_factory=list)  # shell lines in the batch script (module load, source venv)
    task_setup: List[str] = field(default_factory=list)  # shell lines run by every task (inside the container)
    preset: str = "h100"  # h100 | cpu | none: the default NCCL/CUDA/thread settings below
    env: Dict[str, Optional[str]] = field(default_factory=dict)  # added to (or, with null, removed from) the preset
    master_port: Optional[int] = None  # default: 20000 + job id % 20000 (no clash between jobs sharing a node)
    # srun --mpi: pmix | pmi2 | none | auto (the first of pmix, pmi2 that `srun --mpi=list` offers on the job's first
    # node, else none); null: the cluster's MpiDefault. Rendezvous never needs MPI (env:// from SLURM variables).
    mpi: Optional[str] = None
    label_output: bool = False  # srun --label: prefix every line with its task rank
    step_exit_wait: int = 300  # srun --wait: seconds the other tasks get after the first one exits


@dataclass
class ResumeConfig:
    """Requeue-on-signal: SLURM sends ``signal`` to the batch shell ``signal_seconds`` before the time limit; the
    script forwards it to the tasks, which checkpoint and exit 75; the script then requeues the job, which resumes
    from the latest checkpoint."""

    enabled: bool = True
    signal: str = "USR1"
    signal_seconds: int = 600  # time before the limit: enough for one step plus a checkpoint save
    max_restarts: int = 50  # total requeues of one job (time limits, preemptions, failures)
    max_retries: int = 2  # requeues after a failure (exit code other than 0/75) before giving up
    # SIGTERM (scancel, preemption) also checkpoints; with PreemptMode=REQUEUE SLURM requeues by itself. Set true on
    # clusters that preempt with CANCEL to requeue from the script instead (a user's scancel then requeues too).
    requeue_on_term: bool = False


@dataclass
class SweepEntry:
    name: str = "???"
    overrides: List[str] = field(default_factory=list)


@dataclass
class JobSpec:
    """One SLURM job: a `findap-nemo <stage>` run (or a shell ``command``), optionally a job array over ``sweep``."""

    name: str = "???"
    stage: Optional[str] = None  # data | train | convert | genrm | dpo | eval | run ...
    config: Optional[str] = None  # the stage's YAML
    args: List[str] = field(default_factory=list)  # stage arguments before the overrides (e.g. convert subcommand)
    overrides: List[str] = field(default_factory=list)
    command: Optional[str] = None  # a shell command instead of a stage (run by every task)
    resources: Dict[str, Any] = field(default_factory=dict)  # merged over the top-level resources
    depends_on: Optional[List[str]] = None  # names of earlier jobs (pipeline); default: the previous stage
    # afterok: start only if those jobs succeeded | afterany: once they ended in any state (a job that collects
    # results, e.g. an ablation's comparison, runs even when some of its inputs failed)
    dependency: str = "afterok"
    sweep: List[SweepEntry] = field(default_factory=list)  # one array task per entry
    max_parallel: Optional[int] = None  # array throttle (%N)
    resume: bool = True  # requeue on the pre-timeout signal (stages that checkpoint); false: run once


@dataclass
class SlurmConfig:
    vars: Dict[str, Any] = field(default_factory=dict)  # your own values for interpolation: ${vars.base_model}
    run_dir: str = "runs/slurm"  # scripts in <run_dir>/slurm/, logs in log_dir, job ids in <run_dir>/slurm/jobs.json
    log_dir: Optional[str] = None  # default <run_dir>/logs
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    container: ContainerConfig = field(default_factory=ContainerConfig)
    environment: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    resume: ResumeConfig = field(default_factory=ResumeConfig)
    job: Optional[JobSpec] = None  # `findap-nemo slurm submit`
    stages: List[JobSpec] = field(default_factory=list)  # `findap-nemo slurm pipeline`

    def validate(self) -> None:
        p = Problems()
        r = self.resume
        p.check(r.signal in _SIGNALS, "resume.signal", r.signal, f"use one of {sorted(_SIGNALS)}")
        p.check(0 < r.signal_seconds <= 65535, "resume.signal_seconds", r.signal_seconds,
                "SLURM accepts 1..65535 seconds before the time limit")
        p.check(r.max_restarts >= 0, "resume.max_restarts", r.max_restarts, "must be >= 0")
        p.check(r.max_retries >= 0, "resume.max_retries", r.max_retries, "must be >= 0")
        p.check(self.environment.step_exit_wait >= 1, "environment.step_exit_wait", self.environment.step_exit_wait,
                "must be >= 1 second (0 would let a crashed rank's peers hang until the time limit)")
        mpi = self.environment.mpi
        p.check(mpi is None or re.fullmatch(r"[a-z0-9_]+", mpi) is not None, "environment.mpi", mpi,
                "use pmix, pmi2, none, auto or another plugin name that `srun --mpi=list` shows; null: MpiDefault")
        p.check(self.environment.preset in ENV_PRESETS, "environment.preset", self.environment.preset,
                f"use one of {sorted(ENV_PRESETS)}")
        names = [c.name for c in self.cluster.partitions]
        p.check(len(names) == len(set(names)), "cluster.partitions", names, "partition names must be unique")
        for i, part in enumerate(self.cluster.partitions):
            if part.max_time is not None:
                _check_time(p, f"cluster.partitions[{i}].max_time", part.max_time)
        seen: list[str] = []
        jobs = ([("job", self.job)] if self.job is not None else []) + \
            [(f"stages[{i}]", s) for i, s in enumerate(self.stages)]
        for key, job in jobs:
            self._validate_job(p, key, job, seen)
            seen.append(job.name)
        p.raise_if_any()

    def _validate_job(self, p: Problems, key: str, job: JobSpec, earlier: list[str]) -> None:
        from findap_nemo.cli import STAGES

        p.check(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", job.name or "") is not None, f"{key}.name", job.name,
                "use letters, digits, '.', '_' or '-' (it names the job, its script and its log)")
        p.check(job.name not in earlier, f"{key}.name", job.name, "job names must be unique within a pipeline")
        if job.command is None:
            p.check(job.stage in STAGES and job.stage != "slurm", f"{key}.stage", job.stage,
                    f"use one of {[s for s in STAGES if s != 'slurm']} (or give a shell `command`)")
        else:
            p.check(job.stage is None, f"{key}.stage", job.stage, "give either a stage or a command, not both")
        if job.config is not None:
            p.check(os.path.isfile(job.config), f"{key}.config", job.config,
                    "file not found (paths are relative to environment.workdir, the submission directory by default)")
        p.check(job.dependency in ("afterok", "afterany"), f"{key}.dependency", job.dependency,
                "use afterok or afterany")
        for dep in job.depends_on or []:
            p.check(dep in earlier, f"{key}.depends_on", dep,
                    f"must name an earlier job of the pipeline; earlier jobs: {earlier}")
        if job.sweep:
            names = [e.name for e in job.sweep]
            p.check(len(names) == len(set(names)), f"{key}.sweep", names, "sweep entry names must be unique")
            uses_placeholder = any("{sweep}" in o for o in job.overrides + job.args) or \
                (job.command is not None and "{sweep}" in job.command) or \
                all(any("{sweep}" in o for o in e.overrides) for e in job.sweep)
            p.check(uses_placeholder, f"{key}.overrides", job.overrides,
                    "array tasks would share their outputs (and resume from each other's checkpoints): put "
                    "{sweep} in an output path, e.g. checkpoint.save=${run_dir}/train/{sweep}")
            if job.max_parallel is not None:
                p.check(job.max_parallel >= 1, f"{key}.max_parallel", job.max_parallel, "must be >= 1")
        try:
            res = resolve_resources(self, job)
        except ConfigError as err:
            for item in err.problems:
                p.items.append(f"{key}.resources: {item}")
            return
        validate_resources(p, self, res, prefix=f"{key}.resources" if job.resources else "resources")
        if job.config is not None and os.path.isfile(job.config) and job.command is None:
            check_layout(p, key, job, res)


_SIGNALS = {"USR1", "USR2", "TERM", "INT", "HUP"}

# Environment defaults for the job steps. h100: what megatron-core needs and what makes NCCL failures visible and
# fatal instead of silent hangs. Cluster-specific fabric settings (NCCL_SOCKET_IFNAME, NCCL_IB_HCA) belong in
# environment.env.
ENV_PRESETS: dict[str, dict[str, str]] = {
    "h100": {
        "CUDA_DEVICE_MAX_CONNECTIONS": "1",  # megatron: ordered TP/SP communication kernels
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",  # a failed collective aborts the job instead of hanging
        "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",
        "NCCL_DEBUG": "WARN",
        "NCCL_NVLS_ENABLE": "0",  # NVLink SHARP buffers cost GPU memory; megatron's overlap does not need them
        "NCCL_IB_TIMEOUT": "22",
        "NCCL_IB_RETRY_CNT": "10",
        "NVTE_FWD_LAYERNORM_SM_MARGIN": "16",
        "NVTE_BWD_LAYERNORM_SM_MARGIN": "16",
        "OMP_NUM_THREADS": "${SLURM_CPUS_PER_TASK:-8}",
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
    },
    "cpu": {
        "OMP_NUM_THREADS": "${SLURM_CPUS_PER_TASK:-1}",
        "PYTHONUNBUFFERED": "1",
        "TOKENIZERS_PARALLELISM": "false",
    },
    "none": {},
}


def job_env(cfg: SlurmConfig) -> dict[str, str]:
    env = dict(ENV_PRESETS[cfg.environment.preset])
    for k, v in cfg.environment.env.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def resolve_resources(cfg: SlurmConfig, job: JobSpec) -> ResourcesConfig:
    """The top-level resources with the job's own ``resources`` entries merged over them (typed, keys checked)."""
    if not job.resources:
        return cfg.resources
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(cfg.resources), dict(job.resources))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(f"{getattr(err, 'full_key', None) or '?'}: {str(err).splitlines()[0]}") from err


def parse_time(value: str) -> int:
    """SLURM time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) -> seconds; ValueError otherwise."""
    s = str(value).strip()
    if s.upper() in ("UNLIMITED", "INFINITE"):
        return 10 ** 9
    days = 0
    if "-" in s:
        d, s = s.split("-", 1)
        days = int(d)
        parts = [int(x) for x in s.split(":")]
        if not 1 <= len(parts) <= 3:
            raise ValueError(value)
        h, m, sec = (parts + [0, 0])[:3]
    else:
        parts = [int(x) for x in s.split(":")]
        if len(parts) == 1:
            h, m, sec = 0, parts[0], 0
        elif len(parts) == 2:
            h, m, sec = 0, parts[0], parts[1]
        elif len(parts) == 3:
            h, m, sec = parts
        else:
            raise ValueError(value)
    if min(days, h, m, sec) < 0:
        raise ValueError(value)
    return ((days * 24 + h) * 60 + m) * 60 + sec


def _check_time(p: Problems, key: str, value: str) -> int | None:
    try:
        return parse_time(value)
    except ValueError:
        p.add(key, value, "not a SLURM time; use [D-]HH:MM:SS, e.g. 04:00:00 or 2-00:00:00")
        return None


def validate_resources(p: Problems, cfg: SlurmConfig, res: ResourcesConfig, prefix: str = "resources") -> None:
    """Checks against the config's own limits and the declared partitions (the live cluster is checked separately)."""
    p.check(res.nodes >= 1, f"{prefix}.nodes", res.nodes, "must be >= 1")
    p.check(res.gpus_per_node >= 0, f"{prefix}.gpus_per_node", res.gpus_per_node, "must be >= 0 (0 for a CPU job)")
    tpn = res.ntasks_per_node
    p.check(tpn >= 1, f"{prefix}.tasks_per_node", tpn, "must be >= 1")
    if res.gpus_per_node > 0:
        p.check(tpn <= res.gpus_per_node, f"{prefix}.tasks_per_node", tpn,
                f"at most one task per GPU (gpus_per_node={res.gpus_per_node}); use 1 for single-process stages")
    if res.cpus_per_task is not None:
        p.check(res.cpus_per_task >= 1, f"{prefix}.cpus_per_task", res.cpus_per_task, "must be >= 1")
    limit = _check_time(p, f"{prefix}.time", res.time)
    if limit is not None and cfg.resume.enabled:
        p.check(cfg.resume.signal_seconds < limit, "resume.signal_seconds", cfg.resume.signal_seconds,
                f"must be shorter than the time limit {res.time} ({limit}s), or the checkpoint signal comes at once")
    parts = {c.name: c for c in cfg.cluster.partitions}
    if not parts:
        return
    if res.partition is None:
        p.add(f"{prefix}.partition", None, f"this cluster has partitions {sorted(parts)}; choose one")
        return
    part = parts.get(res.partition)
    if part is None:
        p.add(f"{prefix}.partition", res.partition, f"no such partition on cluster {cfg.cluster.name!r}; "
                                                      f"choose one of {sorted(parts)}")
        return
    p.check(res.gpus_per_node <= part.gpus_per_node, f"{prefix}.gpus_per_node", res.gpus_per_node,
            f"partition {part.name!r} has {part.gpus_per_node} GPUs per node")
    if part.max_nodes is not None:
        p.check(res.nodes <= part.max_nodes, f"{prefix}.nodes", res.nodes,
                f"partition {part.name!r} allows at most {part.max_nodes} nodes per job")
    if part.cpus_per_node is not None and res.cpus_per_task is not None:
        p.check(res.cpus_per_task * tpn <= part.cpus_per_node, f"{prefix}.cpus_per_task", res.cpus_per_task,
                f"{tpn} tasks x {res.cpus_per_task} CPUs exceed the {part.cpus_per_node} CPUs of a "
                f"{part.name!r} node")
    if part.max_time is not None and limit is not None:
        try:
            p.check(limit <= parse_time(part.max_time), f"{prefix}.time", res.time,
                    f"partition {part.name!r} allows at most {part.max_time}")
        except ValueError:
            pass


def check_layout(p: Problems, key: str, job: JobSpec, res: ResourcesConfig) -> None:
    """Megatron stages: nodes x tasks must be a multiple of TP x PP x CP (caught here, not after hours in the queue).

    Reads only the ``parallel``/``schedule`` keys of the stage's YAML and overrides (the full stage validation needs the
    GPU node: it checks CUDA and Transformer Engine)."""
    import yaml
    from omegaconf import OmegaConf

    try:
        with open(job.config, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        conf = OmegaConf.merge(OmegaConf.create(data), OmegaConf.from_dotlist(
            [o for o in job.overrides if "=" in o and o.split("=", 1)[0].startswith(("parallel.", "schedule."))]))
    except Exception:  # the stage reports its own config errors with more context
        return
    par = conf.get("parallel") or {}
    if not par:
        return
    try:
        tp, pp, cp = (int(par.get(k) or 1) for k in ("tensor_model_parallel_size", "pipeline_model_parallel_size",
                                                      "context_parallel_size"))
    except (TypeError, ValueError):
        return
    world = res.nodes * res.ntasks_per_node
    model_par = tp * pp * cp
    if world % model_par:
        p.add(f"{key}.resources", f"{res.nodes} node(s) x {res.ntasks_per_node} task(s) = {world} ranks",
              f"{job.config} needs a multiple of TP x PP x CP = {tp}x{pp}x{cp} = {model_par} ranks")
        return
    schedule = conf.get("schedule") or {}
    try:
        mbs, gbs = int(schedule.get("micro_batch_size") or 1), schedule.get("global_batch_size")
    except (TypeError, ValueError):
        return
    dp = world // model_par
    if gbs is not None and int(gbs) % (mbs * dp):
        p.add(f"{key}.resources", f"{world} ranks (data-parallel {dp})",
              f"schedule.global_batch_size={gbs} ({job.config} and the job's overrides) must be divisible by "
              f"micro_batch_size x DP = "
              f"{mbs} x {dp}; change nodes or the batch sizes (job overrides)")
