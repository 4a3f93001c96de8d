"""Multi-node jobs on the local SLURM cluster (one slurmd per loopback address, see tests/slurm_cluster.py).

Every training job is rendered by `findap-nemo slurm submit` from the same template users get: `-N 2`, one task per
node (gloo ranks on CPU), the rendezvous at the first node's NodeAddr. TP across nodes and DP across nodes give the
single-node TP1 losses; a pre-timeout signal reaches the ranks on both nodes, which checkpoint the same iteration and
requeue; a node that dies mid-job is reported and the requeued job resumes from the last complete checkpoint.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, env, metrics
from slurm_cluster import slurm_cluster  # noqa: F401  (session fixture)
from test_slurm_jobs import log_text, slurm_cli, submitted, write_config
from test_slurm_render import render_shipped

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ITERS = 16
# megatron prints these once per rank and per checkpoint; they drown the lines that explain a failure
_NOISE = ("common state dict", "Warning", "warnings.warn", "return func", "if hasattr")


def _ctx(run_dir: Path) -> str:
    text = log_text(run_dir, "*.out")
    return "\n".join(line for line in text.splitlines() if not any(n in line for n in _NOISE))[-6000:]


def _train_job(name: str, run_dir: Path, init: Path, *overrides: str, nodes: int, save_interval: int | None = None,
               **resources) -> dict:
    return {"name": name, "stage": "train", "config": "configs/train/tiny_cpu.yaml",
            "resources": {"nodes": nodes, "tasks_per_node": 1, **resources},
            "overrides": [f"schedule.train_iters={ITERS}", "schedule.eval_interval=null", "logging.progress_bar=false",
                          "logging.tensorboard_dir=null", f"checkpoint.save={run_dir}/ckpt",
                          f"checkpoint.pretrained={init}",
                          f"checkpoint.save_interval={save_interval if save_interval else 'null'}", *overrides]}


def _iterations(run_dir: Path) -> int:
    mfile = run_dir / "ckpt" / "metrics.jsonl"
    return len(mfile.read_text().splitlines()) if mfile.is_file() else 0


def _latest_checkpoint(run_dir: Path) -> int:
    path = run_dir / "ckpt" / "latest_checkpointed_iteration.txt"
    return int(path.read_text()) if path.is_file() else 0


def _hostnames(cluster, nodelist: str) -> list[str]:
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], env=cluster.env(), capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


def _by_iteration(run_dir: Path) -> dict[int, float]:
    """iteration -> loss; an iteration logged twice (run again after resuming from an older checkpoint) keeps the
    value of its last run."""
    return {r["iteration"]: r["lm_loss"] for r in metrics(run_dir / "ckpt" / "metrics.jsonl")}


@pytest.fixture(scope="module")
def multinode(slurm_cluster, tmp_path_factory):  # noqa: F811
    """Five training jobs submitted together: single-node TP1 (the reference), TP2 across two nodes, DP2 across two
    nodes, a TP2 two-node job that gets the pre-timeout signal, and a DP2 two-node job that loses a node."""
    root = tmp_path_factory.mktemp("multinode")
    init = root / "init"
    subprocess.run([sys.executable, "tests/dist/init_checkpoint.py", str(init)], cwd=REPO, env=env(), check=True,
                   capture_output=True, timeout=600)
    plan = {  # name: (srun --mpi, job fields)
        # first, with whole nodes to itself: failing one of its nodes must not touch the other jobs
        "nodefail": ("none", dict(nodes=2, save_interval=4, exclusive=True)),
        "ref": ("none", dict(nodes=1)),
        "tp": ("pmix", dict(nodes=2, overrides=("parallel.tensor_model_parallel_size=2",))),
        "dp": ("pmi2", dict(nodes=2)),
        "preempt": ("auto", dict(nodes=2, save_interval=4, overrides=("parallel.tensor_model_parallel_size=2",
                                                                      "checkpoint.keep_last=10"))),
    }
    runs = {}
    for name, (mpi, fields) in plan.items():
        run_dir = root / name
        fields = dict(fields)
        job = _train_job(name, run_dir, init, *fields.pop("overrides", ()), **fields)
        cfg = write_config(root / f"{name}.yaml", run_dir, job=job, environment={"mpi": mpi})
        out = slurm_cli(slurm_cluster, "submit", "--config", str(cfg))
        runs[name] = {"dir": run_dir, "id": submitted(run_dir)[name], "out": out.stdout}

    # Both events once a periodic checkpoint (iteration 4) exists, in whichever job gets there first:
    # preemption (SLURM's pre-timeout signal, what --signal=B:USR1@N sends) and the death of a node.
    pre, nf = runs["preempt"], runs["nodefail"]
    deadline = time.time() + 900
    while not ("status_running" in pre and "killed" in nf):
        if time.time() > deadline:
            pytest.fail(f"training did not get to iteration 6:\n{_ctx(pre['dir'])}\n{_ctx(nf['dir'])}")
        if "status_running" not in pre and _iterations(pre["dir"]) >= 6:
            running = slurm_cli(slurm_cluster, "status", str(pre["dir"]), "--json")
            pre["status_running"] = json.loads(running.stdout)
            subprocess.run(["scancel", "--signal=USR1", "--batch", pre["id"]], env=slurm_cluster.env(), check=True)
        if "killed" not in nf and _iterations(nf["dir"]) >= 6:
            # the second node of the job dies (not the one running the batch script)
            (info,) = slurm_cluster.jobs(nf["id"])
            nodes = _hostnames(slurm_cluster, info["NodeList"])
            nf["nodes_before"], nf["victim"] = nodes, nodes[1]
            nf["killed"] = slurm_cluster.fail_node(nodes[1], "simulated power loss")
            nf["ckpt_at_failure"] = _latest_checkpoint(nf["dir"])  # after the kill: no save can complete now
        time.sleep(0.2)
    victim = nf["victim"]
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # SLURM requeues the job (its node failed, --requeue): back to PENDING
            (info,) = slurm_cluster.jobs(nf["id"])
            if info.get("Restarts") == "1":
                break
            time.sleep(0.5)
        nf["after_failure"] = info
        nf["node_state"] = subprocess.run(["scontrol", "-o", "show", "node", victim], env=slurm_cluster.env(),
                                          capture_output=True, text=True).stdout
    finally:
        slurm_cluster.restore_node(victim)  # the requeued attempt may run there again, as on a repaired cluster
    states = slurm_cluster.wait([r["id"] for r in runs.values()], timeout=1200)
    for name, r in runs.items():
        (r["final"],) = states[r["id"]]
    return runs


def _assert_two_node_run(cluster, run: dict, mpi: str) -> None:
    run_dir, info = run["dir"], run["final"]
    log = _ctx(run_dir)
    assert info["JobState"] == "COMPLETED" and info["NumNodes"] == "2", (info, log)
    first, second = _hostnames(cluster, info["NodeList"])
    # the rendezvous is the first node's NodeAddr (127.0.0.x here; its name does not resolve)
    addr = re.search(r"NodeAddr=(\S+)", subprocess.run(["scontrol", "-o", "show", "node", first], env=cluster.env(),
                                                         capture_output=True, text=True).stdout).group(1)
    assert addr.startswith("127.0.0.") and addr != "127.0.0.1"
    assert re.search(rf"2 node\(s\) x 1 task\(s\), rendezvous {re.escape(addr)}:\d+ \({first}\)", log), log
    # one rank on each node: every task records its PID under the name of the node it runs on
    pid_dir = run_dir / "slurm" / "state" / "pids" / run["id"]
    assert sorted(p.name for p in pid_dir.iterdir()) == sorted([f"{first}.0", f"{second}.0"])
    script = (run_dir / "slurm" / f"{run_dir.name}.sbatch").read_text()
    assert "#SBATCH --nodes=2" in script and "#SBATCH --ntasks-per-node=1" in script
    srun = script.split("\n  srun ", 1)[1].split("\n", 1)[0]
    if mpi == "auto":
        assert 'srun --mpi=list' in script and '--mpi="$MPI"' in srun
        assert "srun --mpi=pmix:" in log  # this cluster offers pmix
    else:
        assert f"--mpi={mpi}" in srun
    assert "--container-image" not in script  # no pyxis unless container.image is set


@pytest.mark.parametrize("name,mpi", [("tp", "pmix"), ("dp", "pmi2")])
def test_two_node_layout_matches_single_node_tp1(multinode, slurm_cluster, name, mpi):  # noqa: F811
    """TP=2 with its two ranks on different nodes, and DP=2 across nodes: the losses of single-node TP1."""
    _assert_two_node_run(slurm_cluster, multinode[name], mpi)
    ref = multinode["ref"]
    assert ref["final"]["JobState"] == "COMPLETED" and ref["final"]["NumNodes"] == "1", _ctx(ref["dir"])
    reference = [r["lm_loss"] for r in metrics(ref["dir"] / "ckpt" / "metrics.jsonl")]
    losses = [r["lm_loss"] for r in metrics(multinode[name]["dir"] / "ckpt" / "metrics.jsonl")]
    assert len(reference) == len(losses) == ITERS
    assert losses == pytest.approx(reference, rel=2e-5, abs=2e-5), (name, losses, reference)


def test_preempted_two_node_job_checkpoints_on_every_node_and_resumes_exactly(multinode, slurm_cluster):  # noqa: F811
    run = multinode["preempt"]
    run_dir, info = run["dir"], run["final"]
    log, full = _ctx(run_dir), log_text(run_dir, "*.out")
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", log
    _assert_two_node_run(slurm_cluster, run, "auto")
    assert "batch shell got SIGUSR1" in full, log
    # the signal reached the rank on each node
    assert "[rank 0] received signal 10" in full and "[rank 1] received signal 10" in full, log
    m = re.search(r"checkpointed at iteration (\d+) after a signal; exiting with 75", full)
    assert m, log
    stopped = int(m.group(1))
    assert "job step exited with 75" in full and "requeueing job" in full, log
    assert f"resumed from {run_dir}/ckpt/iter_{stopped:07d} at iteration {stopped}" in full, log
    assert 4 <= stopped < ITERS
    # both ranks (one per node) wrote their shards (__<rank>_<n>.distcp) of that same iteration
    shards = sorted(p.name for p in (run_dir / "ckpt" / f"iter_{stopped:07d}").glob("*.distcp"))
    assert {s.split("_")[2] for s in shards} == {"0", "1"}, shards
    rows = metrics(run_dir / "ckpt" / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == list(range(1, ITERS + 1)), log
    uninterrupted = [r["lm_loss"] for r in metrics(multinode["tp"]["dir"] / "ckpt" / "metrics.jsonl")]
    assert [r["lm_loss"] for r in rows] == pytest.approx(uninterrupted, rel=1e-5, abs=1e-6), stopped


def test_node_failure_requeues_and_resumes_from_last_complete_checkpoint(multinode, slurm_cluster):  # noqa: F811
    run = multinode["nodefail"]
    run_dir, info = run["dir"], run["final"]
    log, full = _ctx(run_dir), log_text(run_dir, "*.out")
    victim = run["victim"]
    assert run["killed"], "no task of the job was found on the failed node"
    # SLURM ended the attempt because of the node, said so, and requeued the job
    assert "Reason=simulated" in run["node_state"] and "State=DOWN" in run["node_state"], run["node_state"]
    assert run["after_failure"]["Restarts"] == "1", run["after_failure"]
    assert f"srun: error: Node failure on {victim}" in full, log
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", log
    # the second attempt resumed from the newest checkpoint that was complete when the node died
    k = run["ckpt_at_failure"]
    assert k >= 4, run
    m = re.search(r"resumed from \S+iter_(\d+) at iteration (\d+)", full)
    assert m and int(m.group(2)) == k, (k, log)
    attempts = re.findall(r"job \d+ 'nodefail' attempt (\d) on (\S+)", full)
    assert [a for a, _ in attempts] == ["1", "2"], attempts
    losses = _by_iteration(run_dir)
    assert sorted(losses) == list(range(1, ITERS + 1))
    uninterrupted = [r["lm_loss"] for r in metrics(multinode["dp"]["dir"] / "ckpt" / "metrics.jsonl")]
    assert [losses[i] for i in range(1, ITERS + 1)] == pytest.approx(uninterrupted, rel=1e-5, abs=1e-6)
    # the node is back in service for the rest of the session
    state = subprocess.run(["sinfo", "-h", "-n", victim, "-o", "%t"], env=slurm_cluster.env(), capture_output=True,
                           text=True).stdout.split()
    assert set(state) <= {"idle", "mix", "alloc"}, state


def test_status_shows_nodes_requeues_checkpoint_iteration_and_throughput(multinode, slurm_cluster):  # noqa: F811
    run = multinode["preempt"]
    (live,) = run["status_running"]
    assert live["state"] == "RUNNING" and live["restarts"] == "0", live
    assert re.fullmatch(r"2: node\S+", live["nodes"]), live
    it, total = (int(x) for x in live["iteration"].split("/"))
    assert 6 <= it <= ITERS and total == ITERS, live
    assert re.fullmatch(r"[\d,]+ tokens/s", live["throughput"]) and live["throughput"] != "0 tokens/s", live
    assert re.fullmatch(rf"iter (4|8|12) in {re.escape(str(run['dir']))}/ckpt", live["checkpoint"]), live
    for name in ("preempt", "nodefail"):
        out = slurm_cli(slurm_cluster, "status", str(multinode[name]["dir"]), "--json")
        (row,) = json.loads(out.stdout)
        assert row["state"] == "COMPLETED" and row["restarts"] == "1", row
        assert row["nodes"].startswith("2: node"), row
        assert row["iteration"] == f"{ITERS}/{ITERS}" and row["throughput"].endswith("tokens/s"), row
        assert row["checkpoint"] == f"iter {ITERS} in {multinode[name]['dir']}/ckpt", row
    table = slurm_cli(slurm_cluster, "status", str(multinode["nodefail"]["dir"])).stdout
    header = table.splitlines()[0].split()
    assert header[:6] == ["JOB", "ID", "STATE", "NODES", "RESTARTS", "EXIT"] and "THROUGHPUT" in header, table


def test_mpi_flavours_on_two_nodes(slurm_cluster, tmp_path):  # noqa: F811
    """srun --mpi=pmix / pmi2 / none as configured, auto picks from `srun --mpi=list`; each task sees its PMI."""
    command = 'echo "task $SLURM_PROCID on $SLURMD_NODENAME pmix=$PMIX_RANK pmi2=$PMI_FD"'  # no ${}: OmegaConf
    ids = {}
    for mpi in ("pmix", "pmi2", "none", "auto"):
        run_dir = tmp_path / mpi
        cfg = write_config(tmp_path / f"{mpi}.yaml", run_dir, job={"name": f"mpi_{mpi}", "command": command},
                           resources={"nodes": 2}, environment={"mpi": mpi})
        slurm_cli(slurm_cluster, "submit", "--config", str(cfg))
        ids[mpi] = (run_dir, submitted(run_dir)[f"mpi_{mpi}"])
    states = slurm_cluster.wait([j for _, j in ids.values()], timeout=300)
    for mpi, (run_dir, job_id) in ids.items():
        (info,) = states[job_id]
        log = log_text(run_dir, "*.out")
        assert info["JobState"] == "COMPLETED", log
        tasks = sorted(re.findall(r"task (\d) on (node\d) pmix=(\d*) pmi2=(\d*)", log))
        assert [t[0] for t in tasks] == ["0", "1"] and tasks[0][1] != tasks[1][1], log
        effective = "pmix" if mpi == "auto" else mpi
        for rank, _, pmix_rank, pmi2 in tasks:
            assert pmix_rank == (rank if effective == "pmix" else ""), (mpi, log)
            assert (pmi2 != "") == (effective == "pmi2"), (mpi, log)  # PMI-2's file descriptor
    # a plugin the cluster does not offer is refused before submission, naming what it offers
    cfg = write_config(tmp_path / "bad.yaml", tmp_path / "bad", job={"name": "bad", "command": "true"},
                       environment={"mpi": "pmi3"})
    proc = slurm_cli(slurm_cluster, "submit", "--config", str(cfg), check=False)
    assert proc.returncode == 2 and "environment.mpi" in proc.stderr and "'pmix'" in proc.stderr, proc.stderr


SHIPPED = sorted(p for p in (REPO / "configs" / "slurm").glob("*.yaml") if p.name != "tiny_cpu.yaml")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_scripts_pass_sbatch_test_only(slurm_cluster, tmp_path, path, monkeypatch):  # noqa: F811
    """The rendered scripts of the shipped H100 configs are accepted by sbatch --test-only on the test cluster (4 nodes
    of 8 stand-in GPUs, 224 CPUs and 1 TB); jobs asking for more nodes than it has are checked at its node count."""
    monkeypatch.chdir(REPO)
    jobs = render_shipped(path, f"run_dir={tmp_path}/run")
    assert jobs
    nodes = len(slurm_cluster.nodes)
    for job in jobs:
        script = tmp_path / f"{job.name}.sbatch"
        script.write_text(job.script)
        extra = []
        if job.resources.nodes > nodes:
            too_big = subprocess.run(["sbatch", "--test-only", str(script)], env=slurm_cluster.env(), cwd=tmp_path,
                                     capture_output=True, text=True)
            assert too_big.returncode != 0 and "node configuration is not available" in too_big.stderr, too_big.stderr
            extra = [f"--nodes={nodes}"]
        proc = subprocess.run(["sbatch", "--test-only", *extra, str(script)], env=slurm_cluster.env(), cwd=tmp_path,
                              capture_output=True, text=True)
        assert proc.returncode == 0 and "to start at" in proc.stderr, (job.name, proc.stderr, job.script[:1500])
        res = job.resources
        used = int(re.search(r"using (\d+) processors", proc.stderr).group(1))
        assert used >= min(res.nodes, nodes) * res.ntasks_per_node * (res.cpus_per_task or 1), (job.name, proc.stderr)


def test_findap_chain_runs_end_to_end_with_two_node_training(slurm_cluster, tmp_path):  # noqa: F811
    """`findap-nemo slurm pipeline` with the shipped CPU chain (configs/slurm/findap_tiny_cpu.yaml): base model ->
    megatron -> data -> training across two nodes (TP2) -> HF -> GenRM -> DPO across two nodes -> HF -> FinEval,
    each stage a job started by its dependencies."""
    run_dir = tmp_path / "chain"
    slurm_cli(slurm_cluster, "pipeline", "--config", "configs/slurm/findap_tiny_cpu.yaml", f"run_dir={run_dir}",
              f"vars.python={sys.executable}")
    ids = submitted(run_dir)
    assert list(ids) == ["base_hf", "base_mcore", "data", "train", "export_cptit", "genrm", "dpo", "export_dpo", "eval"]
    states = slurm_cluster.wait(list(ids.values()), timeout=1500)
    final = {n: states[i][0] for n, i in ids.items()}
    assert all(info["JobState"] == "COMPLETED" for info in final.values()), \
        ({n: info["JobState"] for n, info in final.items()}, _ctx(run_dir))
    assert final["train"]["NumNodes"] == "2" and final["dpo"]["NumNodes"] == "2"
    assert len(set(_hostnames(slurm_cluster, final["train"]["NodeList"]))) == 2
    assert (run_dir / "train" / "latest_checkpointed_iteration.txt").read_text().strip() == "12"
    pairs = (run_dir / "genrm" / "pairs.jsonl").read_text().splitlines()
    assert pairs and (run_dir / "dpo" / "latest_checkpointed_iteration.txt").read_text().strip() == "6"
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    assert set(results["models"]) == {"base", "cpt_it", "dpo"}
    status = slurm_cli(slurm_cluster, "status", str(run_dir)).stdout
    assert status.count("COMPLETED") == 9
