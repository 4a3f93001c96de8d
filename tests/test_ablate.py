"""`findap-nemo ablate`: variants of a pipeline share stages by content, run to a comparison, survive failures and
signals; the shipped configs validate and render for SLURM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import REPO, cli, env
from slurm_cluster import slurm_cluster  # noqa: F401  (session fixture)

TINY_TRAIN = ("train.overrides=[parallel.tensor_model_parallel_size=2,schedule.train_iters=6,schedule.seq_length=256,"
              "schedule.eval_interval=6,checkpoint.save_interval=6,logging.progress_bar=false]")


def _write(tmp_path: Path, body: dict, name: str = "ablation.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def _base(tmp_path: Path, **over) -> dict:
    body = {"pipeline": "configs/demo_tiny.yaml", "run_dir": str(tmp_path / "abl"),
            "overrides": ["genrm.enabled=false", "dpo.enabled=false", TINY_TRAIN],
            "eval": {"overrides": ["limit=6", "tasks=[fpb_sentiment,arc_easy]"]}}
    body.update(over)
    return body


def _variants(path: Path, overrides=()):
    from findap_nemo.ablate.config import load
    from findap_nemo.ablate.run import variants

    return variants(load(str(path), list(overrides)))


def test_stages_are_shared_by_content_not_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    train_copy = tmp_path / "tiny_cpu_copy.yaml"
    train_copy.write_text((REPO / "configs/train/tiny_cpu.yaml").read_text())
    train_edit = tmp_path / "tiny_cpu_edit.yaml"
    train_edit.write_text((REPO / "configs/train/tiny_cpu.yaml").read_text() + "\n# an edit that changes nothing\n")
    path = _write(tmp_path, _base(tmp_path, variants=[
        {"name": "a"},
        {"name": "b"},  # a under another name
        {"name": "lr", "stages": {"train": ["optim.lr=1e-3"]}},
        {"name": "edited", "overrides": [f"train.config={train_edit}"]},
        {"name": "seq", "overrides": ["recipe=sequential"]},
        {"name": "cpt", "overrides": ["recipe=cpt_only"]},
        {"name": "it", "overrides": ["recipe=it_only"]},
    ]))
    vs = {v.name: v for v in _variants(path)}

    def placed(name, kind):
        return [st.name for st in vs[name].stages if vs[name].kinds[st.name] == kind]

    assert [st.name for st in vs["a"].stages] == [st.name for st in vs["b"].stages]  # identical work, shared
    assert placed("lr", "data") == placed("a", "data") and placed("lr", "train") != placed("a", "train")
    # a config file's content counts, not its name: an edited copy is another stage (comments included)
    assert placed("edited", "train") != placed("a", "train") and placed("edited", "data") == placed("a", "data")
    # the sequential recipe's CPT data is the cpt_only variant's data, its IT data the it_only one's
    assert placed("seq", "data_cpt") == placed("cpt", "data") and placed("seq", "data") == placed("it", "data")
    assert len({*placed("a", "data"), *placed("cpt", "data"), *placed("it", "data")}) == 3
    assert [vs["seq"].kinds[st.name] for st in vs["seq"].stages] == [
        "base_hf", "base_mcore", "data_cpt", "train_cpt", "data", "train", "export_cptit"]
    # the interpreter is not part of a key: a job running another python (a container's) finds the same folders
    monkeypatch.setattr(sys, "executable", "/opt/container/bin/python")
    assert [st.name for st in _variants(path)[0].stages] == [st.name for st in vs["a"].stages]
    # the IT run of the sequential recipe starts from its CPT run
    seq_train = next(st for st in vs["seq"].stages if vs["seq"].kinds[st.name] == "train").command()
    assert f"checkpoint.pretrained={vs['seq'].paths.train_cpt}" in seq_train


def test_grid_names_and_config_errors(tmp_path, monkeypatch):
    from findap_nemo.ablate.config import expand, load
    from findap_nemo.config import ConfigError

    monkeypatch.chdir(REPO)
    grid = {"recipe": [{"name": "joint", "overrides": ["recipe=joint"]},
                       {"name": "seq", "overrides": ["recipe=sequential"]}],
            "lr": [{"name": "lo", "stages": {"train": ["optim.lr=1e-4"]}},
                   {"name": "hi", "stages": {"train": ["optim.lr=1e-3"]}}]}
    cfg = load(str(_write(tmp_path, _base(tmp_path, grid=grid))))
    vs = expand(cfg)
    assert [v.name for v in vs] == ["joint-lo", "joint-hi", "seq-lo", "seq-hi"]
    assert vs[3].overrides == ["recipe=sequential"] and vs[3].stages == {"train": ["optim.lr=1e-3"]}

    bad = [
        ({"variants": [{"name": "base"}]}, "variants[0].name='base'"),
        ({"variants": [{"name": "a.b"}]}, "use letters, digits, '_' or '-'"),
        ({"variants": [{"name": "a", "stages": {"trian": ["x=1"]}}]}, "variants[0].stages.trian"),
        ({"variants": []}, "list variants or give a grid"),
        ({"variants": [{"name": "joint-lo"}], "grid": grid}, "occur twice"),
        ({"variants": [{"name": "a"}], "evaluate": "some"}, "evaluate='some'"),
        ({"variants": [{"name": "a"}], "pipeline": "nope.yaml"}, "pipeline='nope.yaml'"),
        ({"variants": [{"name": "a"}], "reference": "b"}, "reference='b': not a variant"),
        ({"variants": [{"name": "a"}], "slurm_resources": {"trian": {"nodes": 2}}}, "slurm_resources.trian"),
    ]
    for over, message in bad:
        path = _write(tmp_path, _base(tmp_path, **over), "bad.yaml")
        with pytest.raises(ConfigError, match=None) as err:
            _variants(path)
        assert message in str(err.value), (over, str(err.value))
    # a variant's own mistakes name the variant
    path = _write(tmp_path, _base(tmp_path, variants=[{"name": "x", "overrides": ["recipe=interleaved"]}]), "bad.yaml")
    with pytest.raises(ConfigError, match="variant x: .*recipe='interleaved'.*joint"):
        _variants(path)
    path = _write(tmp_path, _base(tmp_path, variants=[{"name": "x"},
                                                      {"name": "y", "overrides": ["base_model.seed=1"]}]),
                  "bad.yaml")
    with pytest.raises(ConfigError, match="2 different base models"):
        _variants(path)


@pytest.mark.parametrize("which, nodes", [("8b", 1), ("70b", 8)])
def test_shipped_cluster_ablations_render_for_slurm(tmp_path, which, nodes):
    """The 8B/70B configs validate (stage configs, SLURM layout vs TP x PP) and render one job per distinct stage,
    afterok along each variant, and a comparison that waits for every variant with afterany."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    config = f"configs/ablations/recipes_llama3_{which}.yaml"
    over = [f"overrides=[base_model.hf_path={model}]", f"run_dir={tmp_path / 'abl'}"]
    listing = cli("ablate", config, *over, "--list").stdout
    head = listing.splitlines()[0]
    n_variants, n_stages = int(head.split()[0]), int(head.split(",")[1].split()[0])
    out = cli("ablate", config, *over, "--slurm", "configs/slurm/h100.yaml", "--dry-run").stdout
    jobs = [line.split()[2].rstrip(":") for line in out.splitlines() if line.startswith("# ===== ")]
    assert len(jobs) == len(set(jobs)) == n_stages + 1 and jobs[-1] == "compare"
    heads = {line.split()[2].rstrip(":"): line for line in out.splitlines() if line.startswith("# ===== ")}
    assert "--dependency=afterany:" in heads["compare"]
    assert heads["compare"].count("<") == n_variants  # each variant's last stage
    scripts = out.split("# ===== ")[1:]
    trains = [s for s in scripts if s.startswith("train-")]
    assert trains and all(f"#SBATCH --nodes={nodes}" in s and "#SBATCH --ntasks-per-node=8" in s and
                          "--requeue" in s and "--nproc-per-node" not in s for s in trains)
    data = [s for s in scripts if s.startswith("data-")]
    assert data and all("#SBATCH --partition=cpu" in s and "#SBATCH --ntasks-per-node=1" in s for s in data)
    assert "--compare-only" in scripts[-1]


def test_shipped_cpu_ablation_is_valid():
    out = cli("ablate", "configs/ablations/recipes_cpu.yaml", "--list").stdout
    assert out.startswith("4 variants") and "[shared with sequential]" in out
    bad = cli("ablate", "configs/ablations/recipes_cpu.yaml", "--only", "jiont", check=False)
    assert bad.returncode == 2 and "--only ['jiont']: no such variant; variants: ['joint'" in bad.stderr
    bad = cli("ablate", "configs/ablations/recipes_cpu.yaml", "--dry-run", check=False)
    assert bad.returncode == 2 and "--dry-run renders SLURM jobs: give --slurm" in bad.stderr


@pytest.mark.slow
def test_tiny_ablation_shares_stages_survives_a_failure_and_resumes_a_killed_variant(tmp_path):
    path = _write(tmp_path, _base(tmp_path, variants=[
        {"name": "lo", "stages": {"train": ["optim.lr=1e-3"]}},
        {"name": "seq", "overrides": ["recipe=sequential"], "stages": {"train_cpt": ["schedule.train_iters=3"],
                                                                        "train": ["schedule.train_iters=3"]}},
        {"name": "broken", "stages": {"train": ["schedule.train_iters=-3"]}},  # fails inside its train stage
        {"name": "long", "stages": {"train": ["schedule.train_iters=18", "checkpoint.save_interval=4"]}},
    ]))
    run = tmp_path / "abl"
    first = cli("ablate", str(path), "--only", "lo", "--only", "seq", "--only", "broken", timeout=1800, check=False)
    out = first.stdout
    assert first.returncode == 1, out + first.stderr  # a variant failed; the others ran and were compared
    # one base model and conversion for all, one joint data build for lo and broken: run once, then found done
    assert out.count("FinTrain data: CPT+IT blend -> Megatron indexed datasets: running") == 1, out
    assert out.count("FinTrain data: CPT+IT blend -> Megatron indexed datasets: done earlier") == 1, out
    assert out.count("convert base model HF -> megatron: running") == 1, out
    assert len(list((run / "store").glob("data-*"))) == 3  # the joint blend; the CPT and IT parts (sequential)
    # lo; the sequential CPT run and the IT run that started from it; broken failed before a checkpoint
    assert len(list((run / "store").glob("train-*"))) == 3
    # the IT stage of the sequential recipe starts from the CPT stage's checkpoint
    from_cpt = [p.read_text() for p in (run / "logs").glob("train-*.log")
                if f"checkpoint.pretrained={run / 'store' / 'train-'}" in p.read_text().splitlines()[0]]
    assert len(from_cpt) == 1 and "initial weights from " + str(run / "store" / "train-") in from_cpt[0]
    assert "variant broken FAILED" in out and "the other variants go on" in out
    base_preds = sorted((run / "compare" / "eval" / "predictions" / "base").glob("*.jsonl"))
    assert len(base_preds) == 2
    base_written = [p.stat().st_mtime_ns for p in base_preds]

    # a variant killed mid-training stops the ablation with 75 and resumes from its checkpoint
    proc = subprocess.Popen([sys.executable, "-m", "findap_nemo.cli", "ablate", str(path), "--only", "long"],
                            cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 900
    try:
        while time.time() < deadline:
            logs = [p for p in (run / "logs").glob("train-*.log") if "train_iters=18" in p.read_text()]
            if logs and "iter_0000004" in logs[0].read_text():
                break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
        else:
            raise AssertionError("the long variant never saved its first checkpoint")
        proc.send_signal(signal.SIGTERM)
        killed_out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 75, killed_out
    second = cli("ablate", str(path), "--only", "long", timeout=1800)
    train_log = logs[0].read_text()
    assert "resumed from" in train_log
    assert "FinTrain data: CPT+IT blend -> Megatron indexed datasets: done earlier" in second.stdout

    # one comparison with a row per variant; the failed one says why; the base was evaluated once
    results = json.loads((run / "compare" / "results.json").read_text())
    rows = {r["model"]: r for r in results["variants"]}
    assert set(rows) == {"lo", "seq", "broken", "long"}
    assert rows["broken"]["status"] == "failed" and "exit code" in rows["broken"]["reason"]
    assert rows["broken"]["categories"] is None
    for name in ("lo", "seq", "long"):
        assert rows[name]["status"] == "done" and rows[name]["categories"], name
        assert rows[name]["cost"]["train_tokens"] > 0
    assert rows["long"]["cost"]["train_tokens"] == 3 * rows["lo"]["cost"]["train_tokens"]  # 18 vs 6 iterations
    assert rows["seq"]["cost"]["train_tokens"] == rows["lo"]["cost"]["train_tokens"]  # 3 + 3 vs 6 iterations
    assert rows["seq"]["recipe"] == "sequential"
    # the recipes against each other, pairwise (the first compared variant is the reference unless one is named)
    assert results["reference"] == "lo" and rows["lo"]["vs_reference"] is None
    vs = rows["seq"]["vs_reference"]["unseen_similar"]
    assert len(vs["delta_ci95"]) == 2 and vs["delta"] == pytest.approx(
        rows["seq"]["categories"]["unseen_similar"]["score"] - rows["lo"]["categories"]["unseen_similar"]["score"])
    cat = rows["lo"]["categories"]["unseen_similar"]
    assert cat["delta"] == pytest.approx(cat["score"] - cat["base_score"]) and len(cat["delta_ci95"]) == 2
    assert [p.stat().st_mtime_ns for p in base_preds] == base_written  # the base is evaluated once
    assert (run / "compare" / "report.html").is_file() and (run / "compare" / "ablation.png").is_file()
    report = (run / "compare" / "report.md").read_text()
    assert "## Gain: finance" in report and "## Kept:" in report and "broken" in report


@pytest.mark.slurm
def test_ablation_on_slurm_shares_stages_and_compares_after_a_failed_variant(slurm_cluster, tmp_path):  # noqa: F811
    """`--slurm`: one job per distinct stage, chained along each variant; the comparison job runs (afterany) although
    one variant failed, and its row says which stage did not finish."""
    path = _write(tmp_path, _base(tmp_path, variants=[
        {"name": "ok"}, {"name": "bad", "stages": {"train": ["schedule.train_iters=-3"]}}]))
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump({
        "environment": {"preset": "cpu", "step_exit_wait": 30},
        "resources": {"gpus_per_node": 0, "tasks_per_node": 2, "time": "00:30:00"},  # training: TP2, two ranks
        "resume": {"signal_seconds": 60}}))
    e = slurm_cluster.env()
    e.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "findap_nemo.cli", "ablate", str(path), "--slurm", str(cluster)],
                          cwd=REPO, env=e, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "abl"
    record = json.loads((run / "slurm" / "jobs.json").read_text())[-1]
    ids = {j["name"]: j["job_id"] for j in record["jobs"]}
    kinds = sorted(n.split("-")[0] for n in ids)
    # base model, conversion and data once for both variants; train and export once each; the comparison
    assert kinds == ["base_hf", "base_mcore", "compare", "data", "export_cptit", "export_cptit", "train", "train"]
    states = slurm_cluster.wait(list(ids.values()), timeout=900)
    final = {n: states[i][0]["JobState"] for n, i in ids.items()}
    assert final["compare"] == "COMPLETED", (final, (run / "logs").iterdir())
    assert sorted(final.values()).count("COMPLETED") == 6 and "FAILED" in final.values()  # bad's train; its export
    results = json.loads((run / "compare" / "results.json").read_text())
    rows = {r["model"]: r for r in results["variants"]}
    assert rows["ok"]["status"] == "done" and rows["ok"]["categories"]
    assert rows["bad"]["status"] == "not finished" and "stage train-" in rows["bad"]["reason"]
    # cost as SLURM allocated it: the jobs' run time x CPUs (no GPUs on this cluster), and the tokens trained
    cost = rows["ok"]["cost"]
    assert cost["gpu_hours"] == 0 and cost["cpu_core_hours"] > 0 and cost["train_tokens"] > 0, cost
    assert "CPU-core-hours" in (run / "compare" / "report.md").read_text()
