"""How many FinEval answers a change of answer reading/scoring re-scores, on the shipped tasks.

The model is evaluated on the shipped demo tasks (configs/eval/demo.yaml) by an older commit (``--old-ref``,
default: where this branch left main). The generations it wrote are then scored again by the working tree's code
(same examples, same outputs: only answer reading and scoring differ); log-likelihood tasks, whose per-option
scores depend on the normalisation, are evaluated again by the working tree when they normalise (summed
log-probs are scored by the same code in both versions and are copied). Every example whose status (correct /
wrong / unparsed) differs was re-scored by the change. Per task: examples, correct and unparsed before/after,
re-scored, and the re-scored examples' outputs. An existing ``<work>/old`` run is reused.

    python benchmarks/eval_rescore.py --model /work/models/smollm2-hf
        -> benchmarks/results/eval_rescore.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def _export(ref: str, dest: Path) -> Path:
    """The tree of ``ref`` unpacked into ``dest`` (no checkout, no worktree: the repository is not touched)."""
    dest.mkdir(parents=True)
    archive = dest.with_suffix(".tar")
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), ref], check=True)
    with tarfile.open(archive) as t:
        t.extractall(dest, filter="data")
    archive.unlink()
    return dest


def _run_eval(tree: Path, model: str, out: Path, overrides: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "findap_nemo.cli", "eval", "--config", "configs/eval/demo.yaml",
           f"models.m={model}", f"output_dir={out}", *overrides]
    log = out.with_name(out.name + ".log")  # a file, not a pipe: the run outlives an interrupted caller
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        code = subprocess.run(cmd, cwd=tree, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"eval in {tree} failed ({code}); see {log}:\n{log.read_text()[-4000:]}")
    return time.perf_counter() - t0


def _records(out: Path, task: str) -> list[dict]:
    path = out / "predictions" / "m" / f"{task}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []


def merge_runs(parts: list[Path], into: Path) -> Path:
    """One run folder from the finished tasks (those with a .meta.json) of several runs of the same code, e.g. a
    slow run split over task subsets; later parts win."""
    results: dict = {"tasks": {}, "models": {"m": {"tasks": {}}}}
    for part in parts:
        for meta_path in sorted((part / "predictions" / "m").glob("*.meta.json")):
            meta = json.loads(meta_path.read_text())
            task = meta["task"]
            dst = into / "predictions" / "m"
            dst.mkdir(parents=True, exist_ok=True)
            (dst / f"{task}.jsonl").write_text((meta_path.parent / f"{task}.jsonl").read_text())
            results["tasks"][task] = {"type": meta["result"]["type"]}
            results["models"]["m"]["tasks"][task] = meta["result"]
    (into / "results.json").write_text(json.dumps(results, indent=1))
    return into


def rescore_generations(old_out: Path, new_out: Path) -> list[str]:
    """The old run's generated outputs scored by this tree's code into ``new_out`` (as run_eval lays it out);
    returns the log-likelihood tasks, which need a model run."""
    sys.path.insert(0, str(REPO))
    from findap_nemo.eval.registry import load_registry, load_examples
    from findap_nemo.files import write_jsonl_atomic
    from findap_nemo.eval.scoring import aggregate, invalid_record, prepare, score_generation

    old_res = json.loads((old_out / "results.json").read_text())
    registry = load_registry([REPO / "configs" / "eval" / "tasks"])
    results = {"tasks": {}, "models": {"m": {"tasks": {}}}}
    loglik = []
    for name in old_res["tasks"]:
        task = registry[name]
        results["tasks"][name] = {"type": task.type}
        if task.type == "multiple_choice" and task.mc_method == "loglik":
            if task.loglik_normalize != "none":  # normalised option scores: the new code needs the raw sums
                loglik.append(name)
                continue
            # summed log-probs: score_loglik's result is the same code path in both versions; records copied
            src = old_out / "predictions" / "m" / f"{name}.jsonl"
            dst = new_out / "predictions" / "m" / f"{name}.jsonl"
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(src.read_text())
            results["models"]["m"]["tasks"][name] = old_res["models"]["m"]["tasks"][name]
            continue
        rows, shots = load_examples(task)
        old = {r["index"]: r for r in _records(old_out, name)}
        records = []
        for i, ex in enumerate(rows):
            prep = prepare(task, ex, i, shots)
            o = old[i]
            rec = invalid_record(prep) if prep.error else score_generation(task, prep, o.get("output") or "")
            records.append(rec)
        write_jsonl_atomic(new_out / "predictions" / "m" / f"{name}.jsonl", records)
        results["models"]["m"]["tasks"][name] = aggregate(task, records)
    new_out.mkdir(parents=True, exist_ok=True)
    (new_out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return loglik


def compare(old_out: Path, new_out: Path) -> dict:
    old_res = json.loads((old_out / "results.json").read_text())
    new_res = json.loads((new_out / "results.json").read_text())
    rows = {}
    for task in new_res["tasks"]:
        old, new = _records(old_out, task), _records(new_out, task)
        by_id = {r["id"]: r for r in old}
        changed = []
        for r in new:
            o = by_id.get(r["id"])
            if o is None or o["status"] != r["status"]:
                changed.append({"id": r["id"], "old": None if o is None else o["status"], "new": r["status"],
                                "old_pred": None if o is None else o.get("pred"), "new_pred": r.get("pred"),
                                "gold": r.get("gold"), "how": r.get("extraction"),
                                "output": (r.get("output") or "")[:160]})
        count = lambda recs, s: sum(1 for x in recs if x["status"] == s)  # noqa: E731
        rows[task] = {
            "type": new_res["tasks"][task]["type"], "n": len(new),
            "correct_old": count(old, "correct"), "correct_new": count(new, "correct"),
            "unparsed_old": count(old, "unparsed"), "unparsed_new": count(new, "unparsed"),
            "rescored": len(changed),
            "score_old": old_res["models"]["m"]["tasks"].get(task, {}).get("score"),
            "score_new": new_res["models"]["m"]["tasks"][task]["score"],
            "extraction_new": new_res["models"]["m"]["tasks"][task].get("extraction"),
            "rule_new": new_res["models"]["m"]["tasks"][task].get("rule"),
            "same_outputs": all(by_id.get(r["id"], {}).get("output") == r.get("output") for r in new),
            "changes": changed,
        }
    return rows


def markdown(meta: dict, rows: dict) -> str:
    lines = ["# FinEval: answers re-scored by the answer-reading changes", "",
             f"Model `{meta['model']}`, tasks of `configs/eval/demo.yaml` ({meta['overrides'] or 'as shipped'}); "
             f"old code `{meta['old_ref'][:12]}`, new code: working tree of `{meta['new_ref'][:12]}`. "
             "The old run's generations are scored again by the new code (`same outputs` column); "
             "normalised log-likelihood tasks are run again by the new code.", "",
             "| task | type | n | correct old | correct new | unparsed old | unparsed new | re-scored | same outputs |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t, r in rows.items():
        lines.append(f"| {t} | {r['type']} | {r['n']} | {r['correct_old']} | {r['correct_new']} | {r['unparsed_old']} "
                     f"| {r['unparsed_new']} | {r['rescored']} | {'yes' if r['same_outputs'] else 'no'} |")
    total = sum(r["rescored"] for r in rows.values())
    lines += ["", f"Re-scored in all: {total} of {sum(r['n'] for r in rows.values())} answers.", "",
              "## Re-scored examples", ""]
    for t, r in rows.items():
        for c in r["changes"]:
            out = c["output"].replace("\n", " ").replace("|", "\\|")
            lines.append(f"- {t} {c['id']}: {c['old']} -> {c['new']} (pred {c['old_pred']!r} -> {c['new_pred']!r}, "
                         f"gold {c['gold']!r}, read by {c['how']}): `{out}`")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="HF checkpoint folder")
    ap.add_argument("--old-ref", default=None, help="git ref of the old code (default: merge-base with main)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--name", default="eval_rescore", help="results file stem under benchmarks/results/")
    ap.add_argument("--from-partial", action="store_true",
                    help="merge the finished tasks of <work>/old* runs (a slow old run split over task subsets)")
    ap.add_argument("overrides", nargs="*", help="eval config overrides, e.g. generation.max_new_tokens=null")
    args = ap.parse_args()
    old_ref = args.old_ref or _git("merge-base", "HEAD", "main")
    old_ref = _git("rev-parse", old_ref)
    work = Path(args.work or tempfile.mkdtemp(prefix="eval_rescore-"))
    seconds = {}
    old_out = work / "old"
    if args.from_partial:
        parts = sorted(p for p in work.glob("old*") if p.is_dir() and p.name not in ("old_tree", "old_merged"))
        old_out = merge_runs(parts, work / "old_merged")
    elif not (old_out / "results.json").is_file():
        old_tree = work / "old_tree" if (work / "old_tree").is_dir() else _export(old_ref, work / "old_tree")
        seconds["old"] = _run_eval(old_tree, args.model, old_out, args.overrides)
    loglik = rescore_generations(old_out, work / "new")
    if loglik:  # option scores change with the normalisation: a model run of just these tasks
        if not all((work / "new_loglik" / "predictions" / "m" / f"{t}.meta.json").is_file() for t in loglik):
            seconds["new_loglik"] = _run_eval(REPO, args.model, work / "new_loglik",
                                              args.overrides + [f"tasks=[{','.join(loglik)}]"])
        res = json.loads((work / "new" / "results.json").read_text())
        for t in loglik:
            src = work / "new_loglik" / "predictions" / "m"
            res["models"]["m"]["tasks"][t] = json.loads((src / f"{t}.meta.json").read_text())["result"]
            (work / "new" / "predictions" / "m" / f"{t}.jsonl").write_text((src / f"{t}.jsonl").read_text())
        (work / "new" / "results.json").write_text(json.dumps(res, indent=1, default=str))
    rows = compare(old_out, work / "new")
    meta = {"model": args.model, "old_ref": old_ref, "new_ref": _git("rev-parse", "HEAD"),
            "overrides": " ".join(args.overrides), "seconds": seconds,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"meta": meta, "tasks": rows}, indent=1) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(meta, rows))
    print(markdown(meta, rows))


if __name__ == "__main__":
    main()
