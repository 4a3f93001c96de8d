"""sbatch rendering and pre-submission validation of `findap-nemo slurm` (no cluster needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from findap_nemo.config import ConfigError, load_config
from findap_nemo.slurm.cli import split_stage_command
from findap_nemo.slurm.config import SlurmConfig, parse_time
from findap_nemo.slurm.render import render_job, render_pipeline

H100 = {"cluster": {"name": "h100", "partitions": [
    {"name": "batch", "gpus_per_node": 8, "cpus_per_node": 224, "max_nodes": 16, "max_time": "2-00:00:00"},
    {"name": "cpu", "gpus_per_node": 0}]},
    "resources": {"partition": "batch", "gpus_per_node": 8, "cpus_per_task": 16, "time": "04:00:00"}}


def load(tmp_path: Path, data: dict, *overrides: str) -> SlurmConfig:
    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(SlurmConfig, path, list(overrides))


def train_job(**extra) -> dict:
    return {"name": "train", "stage": "train", "config": "configs/train/llama3-8b-cpt-it-4node.yaml",
            "overrides": ["checkpoint.save=${run_dir}/ckpt"], **extra}


def bash_syntax_ok(script: str, tmp_path: Path) -> None:
    f = tmp_path / "job.sbatch"
    f.write_text(script)
    proc = subprocess.run(["bash", "-n", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_multi_node_gpu_job_script(tmp_path):
    cfg = load(tmp_path, {**H100, "run_dir": str(tmp_path / "run"), "job": train_job(resources={"nodes": 4})},
               "resources.account=fin", "environment.env={NCCL_SOCKET_IFNAME: ib0, NCCL_NVLS_ENABLE: null}")
    job = render_job(cfg, cfg.job, source="t.yaml")
    s = job.script
    bash_syntax_ok(s, tmp_path)
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --partition=batch", "#SBATCH --account=fin", "#SBATCH --time=04:00:00",
                 "#SBATCH --signal=B:USR1@600", "#SBATCH --requeue", "#SBATCH --open-mode=append",
                 f"#SBATCH --output={tmp_path}/run/logs/%x-%j.out"):
        assert line in s.splitlines(), line
    # rendezvous from SLURM variables, ranks mapped per task, no torchrun/MPI
    # the first node of the allocation, at the address SLURM reaches it by (NodeAddr), not its name
    assert 'MASTER_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in s
    assert "scontrol -o show node \"$MASTER_NODE\"" in s and "NodeAddr=" in s
    assert "RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS" in s
    srun_line = s.split("\n  srun ", 1)[1].split("\n", 1)[0]
    assert "torchrun" not in srun_line and "--mpi" not in srun_line
    assert "--cpus-per-task=16" in srun_line  # srun does not inherit it (22.05+)
    # H100 environment: preset + user additions; null removes a preset entry
    assert 'export CUDA_DEVICE_MAX_CONNECTIONS="1"' in s and 'export NCCL_SOCKET_IFNAME="ib0"' in s
    assert "NCCL_NVLS_ENABLE" not in s
    assert f"checkpoint.save={tmp_path}/run/ckpt" in s
    assert "--container-image" not in s
    assert job.script_path == tmp_path / "run" / "slurm" / "train.sbatch"


def test_container_and_no_resume(tmp_path):
    data = {**H100, "run_dir": str(tmp_path / "r"), "job": train_job(resume=False),
            "container": {"image": "nvcr.io#nvidia/pytorch:25.01-py3", "mounts": ["/lustre:/lustre"]},
            "environment": {"task_setup": ["source /opt/venv/bin/activate"]}}
    s = render_job(load(tmp_path, data), load(tmp_path, data).job, source="t").script
    bash_syntax_ok(s, tmp_path)
    srun = s.split("\n  srun ", 1)[1].split("\n", 1)[0]
    assert "--container-image=nvcr.io#nvidia/pytorch:25.01-py3" in srun
    assert "--container-mounts=/lustre:/lustre" in srun and "--no-container-mount-home" in srun
    assert "source /opt/venv/bin/activate; export RANK" in s
    assert "CMD=(python -m findap_nemo.cli train" in s  # the container's python
    assert "#SBATCH --no-requeue" in s and "#SBATCH --signal" not in s
    assert "trap '" not in s and "scontrol requeue" not in s and "GOT_SIGNAL" not in s


def test_sweep_renders_a_job_array(tmp_path):
    job = {"name": "abl", "stage": "train", "config": "configs/train/tiny_cpu.yaml",
           "overrides": ["checkpoint.save=${run_dir}/{sweep}"], "max_parallel": 2,
           "sweep": [{"name": "a", "overrides": ["optim.lr=1e-5"]}, {"name": "b", "overrides": ["optim.lr=2e-5"]},
                     {"name": "c", "overrides": ["optim.lr=3e-5", "schedule.seed=7"]}]}
    cfg = load(tmp_path, {"run_dir": "/r", "resources": {"gpus_per_node": 0, "tasks_per_node": 1}, "job": job})
    r = render_job(cfg, cfg.job, source="t")
    bash_syntax_ok(r.script, tmp_path)
    assert "#SBATCH --array=0-2%2" in r.script and r.array_size == 3
    assert "#SBATCH --output=/r/logs/%x-%A_%a.out" in r.script
    assert "checkpoint.save=/r/c optim.lr=3e-5 schedule.seed=7) ;;" in r.script
    assert "  1) SWEEP=b; CMD=(" in r.script


def test_sweep_sharing_outputs_is_rejected(tmp_path):
    job = {"name": "abl", "stage": "train", "config": "configs/train/tiny_cpu.yaml",
           "sweep": [{"name": "a", "overrides": ["optim.lr=1e-5"]}, {"name": "b", "overrides": ["optim.lr=2e-5"]}]}
    with pytest.raises(ConfigError, match=r"job.overrides.*\{sweep\} in an output path"):
        load(tmp_path, {"resources": {"gpus_per_node": 0}, "job": job})


@pytest.mark.parametrize("overrides, message", [
    (["resources.gpus_per_node=16"], "resources.gpus_per_node=16: partition 'batch' has 8 GPUs per node"),
    (["resources.partition=null"], "resources.partition=None: this cluster has partitions ['batch', 'cpu']; choose one"),
    (["resources.partition=gpu-big"], "resources.partition='gpu-big': no such partition on cluster 'h100'"),
    (["resources.nodes=32"], "resources.nodes=32: partition 'batch' allows at most 16 nodes per job"),
    (["resources.time=3-00:00:00"], "resources.time='3-00:00:00': partition 'batch' allows at most 2-00:00:00"),
    (["resources.time=4h"], "resources.time='4h': not a SLURM time"),
    (["resources.tasks_per_node=9"], "at most one task per GPU (gpus_per_node=8)"),
    (["resume.signal_seconds=14400"], "resume.signal_seconds=14400: must be shorter than the time limit"),
    (["resources.cpus_per_task=64"], "8 tasks x 64 CPUs exceed the 224 CPUs"),
])
def test_invalid_resources_rejected(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {**H100, "job": train_job()}, *overrides)
    assert message in str(err.value)


def test_layout_checked_against_ranks(tmp_path):
    # TP=2 (the 4-node config) cannot run on 3 ranks; global batch 32 is not divisible at DP=12 (3 nodes)
    with pytest.raises(ConfigError, match=r"needs a multiple of TP x PP x CP = 2x1x1 = 2 ranks"):
        load(tmp_path, {**H100, "job": train_job(resources={"tasks_per_node": 3})})
    with pytest.raises(ConfigError, match=r"global_batch_size=32 .* micro_batch_size x DP = 1 x 12"):
        load(tmp_path, {**H100, "job": train_job(resources={"nodes": 3})})
    # the job's own schedule/parallel overrides are what the ranks will run with
    with pytest.raises(ConfigError, match=r"global_batch_size=20 .* micro_batch_size x DP = 1 x 16"):
        load(tmp_path, {**H100, "job": train_job(resources={"nodes": 4}, overrides=["checkpoint.save=${run_dir}/ckpt", "schedule.global_batch_size=20"])})
    load(tmp_path, {**H100, "job": train_job(resources={"nodes": 3}, overrides=["checkpoint.save=${run_dir}/ckpt", "schedule.global_batch_size=48"])})
    with pytest.raises(ConfigError, match=r"needs a multiple of TP x PP x CP = 4x1x1 = 4 ranks"):
        load(tmp_path, {**H100, "job": train_job(resources={"nodes": 3, "tasks_per_node": 2},
                                                 overrides=["parallel.tensor_model_parallel_size=4"])})


def test_job_problems_name_their_keys(tmp_path):
    stages = [{"name": "a", "stage": "training", "config": "configs/nope.yaml"},
              {"name": "b", "command": "true", "depends_on": ["later"], "resources": {"gpu_per_node": 1},
               "dependency": "afterfail"}]
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {"resources": {"gpus_per_node": 0}, "stages": stages})
    text = str(err.value)
    assert "stages[0].stage='training': use one of" in text
    assert "stages[0].config='configs/nope.yaml': file not found" in text
    assert "stages[1].depends_on='later': must name an earlier job" in text
    assert "stages[1].resources: gpu_per_node" in text
    assert "stages[1].dependency='afterfail': use afterok or afterany" in text


def test_pipeline_dependencies_default_to_previous_stage(tmp_path):
    stages = [{"name": "a", "command": "true"}, {"name": "b", "command": "true"},
              {"name": "c", "command": "true", "depends_on": ["a"]}, {"name": "d", "command": "true", "depends_on": []}]
    cfg = load(tmp_path, {"resources": {"gpus_per_node": 0}, "stages": stages})
    jobs = render_pipeline(cfg, source="t")
    assert [j.depends_on for j in jobs] == [[], ["a"], ["a"], []]


def test_time_formats():
    assert parse_time("90") == 90 * 60
    assert parse_time("1:30") == 90
    assert parse_time("04:00:00") == 4 * 3600
    assert parse_time("2-00:00:00") == 48 * 3600
    assert parse_time("1-12") == 36 * 3600
    with pytest.raises(ValueError):
        parse_time("4h")


def test_stage_command_after_double_dash():
    head, job = split_stage_command(["slurm", "submit", "--config", "x.yaml", "resources.nodes=2", "--",
                                     "convert", "mcore-to-hf", "--mcore", "a", "--config=c.yaml", "model.x=1"])
    assert head == ["slurm", "submit", "--config", "x.yaml", "resources.nodes=2"]
    assert job == {"name": "convert", "stage": "convert", "config": "c.yaml",
                   "args": ["mcore-to-hf", "--mcore", "a"], "overrides": ["model.x=1"]}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "findap_nemo.cli", "slurm", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_dry_run_of_shipped_configs(tmp_path):
    """The shipped H100 configs render (nothing is submitted: no SLURM needed for --dry-run)."""
    data_recipe = next(iter(sorted((REPO / "configs" / "data").glob("*.yaml"))), None)
    data_recipe = str(data_recipe.relative_to(REPO)) if data_recipe else "configs/train/tiny_cpu.yaml"
    proc = _cli("pipeline", "--config", "configs/slurm/findap_llama3_8b_h100.yaml", "--dry-run",
                f"vars.data_recipe={data_recipe}", f"run_dir={tmp_path}/run")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[2].rstrip(":") for line in proc.stdout.splitlines() if line.startswith("# =====")]
    assert names == ["base_mcore", "data", "train", "export_cptit", "genrm", "dpo", "export_dpo", "eval"]
    assert "--dependency=afterok:<base_mcore>:<data> --kill-on-invalid-dep=yes" in proc.stdout
    assert "#SBATCH --nodes=4" in proc.stdout
    assert not (tmp_path / "run").exists()  # a dry run writes nothing

    proc = _cli("submit", "--config", "configs/slurm/h100.yaml", "--dry-run", "resources.nodes=2", "--",
                "train", "--config", "configs/train/llama3-8b-cpt-it-2node.yaml", "checkpoint.save=/ck")
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --nodes=2" in proc.stdout and "train --config configs/train/llama3-8b-cpt-it-2node.yaml " \
        "checkpoint.save=/ck)" in proc.stdout

    proc = _cli("submit", "--config", "configs/slurm/ablation_lr_h100.yaml", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --array=0-2%2" in proc.stdout

    proc = _cli("submit", "--config", "configs/slurm/h100.yaml", "--dry-run", "resources.gpus_per_node=9", "--",
                "eval", "--config", "configs/eval/fineval.yaml")
    assert proc.returncode == 2
    assert "resources.gpus_per_node=9: partition 'batch' has 8 GPUs per node" in proc.stderr


def test_example_scripts_are_current(tmp_path):
    """slurm/examples/*.sbatch are what the renderer produces today (regenerate with slurm/regenerate_examples.sh)."""
    env = {**__import__("os").environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "slurm" / "regenerate_examples.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    shipped = sorted((REPO / "slurm" / "examples").glob("*.sbatch"))
    assert [p.name for p in shipped] == sorted(p.name for p in tmp_path.glob("*.sbatch"))
    for p in shipped:
        fresh = (tmp_path / p.name).read_text()
        assert fresh.startswith("#!/bin/bash") and "#SBATCH --nodes=4" in fresh
        assert p.read_text() == fresh, f"{p} is stale: run slurm/regenerate_examples.sh"
        bash_syntax_ok(fresh, tmp_path)


def test_cluster_fixture_fails_without_slurm(monkeypatch):
    """Missing slurm-wlm makes the SLURM tests fail with the setup hint, never skip."""
    import slurm_cluster

    monkeypatch.setattr(slurm_cluster, "_which", lambda name: None if name == "slurmctld" else "/bin/true")
    with pytest.raises(pytest.fail.Exception, match=r"\['slurmctld'\].*run `sudo scripts/setup.sh`"):
        slurm_cluster.require_slurm()


def render_shipped(path: Path, *overrides: str) -> list:
    """The jobs of a shipped configs/slurm/*.yaml as rendered (a profile gets a train job); run from REPO."""
    raw = yaml.safe_load(path.read_text())
    overrides = list(overrides)
    recipe = (raw.get("vars") or {}).get("data_recipe")
    if recipe and not (REPO / recipe).is_file():  # the recipe a site points at; any existing file will do here
        overrides.append("vars.data_recipe=configs/train/tiny_cpu.yaml")
    base = None
    if not raw.get("job") and not raw.get("stages"):
        base = {**raw, "job": {"name": "train", "stage": "train", "config": "configs/train/llama3-8b-cpt-it-1node.yaml"}}
    cfg = load_config(SlurmConfig, None if base else path, overrides, base=base)
    return render_pipeline(cfg, source=str(path)) if cfg.stages else [render_job(cfg, cfg.job, source=str(path))]


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "slurm").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_slurm_config_renders(path, monkeypatch):
    """Each configs/slurm/*.yaml validates and renders syntactically valid bash (a profile gets a train job)."""
    monkeypatch.chdir(REPO)
    jobs = render_shipped(path)
    for job in jobs:
        assert job.script.startswith("#!/bin/bash")
        proc = subprocess.run(["bash", "-n"], input=job.script, capture_output=True, text=True)
        assert proc.returncode == 0, (job.name, proc.stderr)
