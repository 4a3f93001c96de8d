"""Tables (markdown, JSON) and the side-by-side bar chart of evaluation results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from findap_nemo.eval.bootstrap import add_intervals
from findap_nemo.eval.metrics import summarize
from findap_nemo.eval.registry import CATEGORIES


def _fmt(x: Any) -> str:
    return "-" if x is None else (f"{100 * x:.1f}" if isinstance(x, float) else str(x))


def _ci(ci) -> str:
    """A 95% interval in percent, or "-" when there is none."""
    return "-" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _delta(entry) -> str:
    """A change in points with its paired 95% interval; "*" marks an interval that excludes 0."""
    if not entry or entry.get("delta") is None:
        return "-"
    text = f"{100 * entry['delta']:+.1f}"
    if entry.get("ci95"):
        lo, hi = entry["ci95"]
        text += f" [{100 * lo:+.1f}, {100 * hi:+.1f}]" + (" *" if entry.get("excludes_zero") else "")
    return text


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _category_order(cats) -> list[str]:
    return sorted(cats, key=lambda c: (CATEGORIES.index(c) if c in CATEGORIES else len(CATEGORIES), c))


def results_markdown(results: dict) -> str:
    """Per model: a task table (all metrics, status counts, throughput) and a category table. Scores in %."""
    parts = ["# FinEval results\n", "Scores are percentages. Invalid-input and unparsed examples are counted as "
             "wrong and stay in every denominator. " + _INTERVALS_NOTE + "\n"]
    for name, m in results["models"].items():
        parts.append(f"\n## {name}\n\n`{m['path']}`\n")
        rows = []
        for task, r in m["tasks"].items():
            metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in r["metrics"].items())
            c = r["counts"]
            rows.append([task, r["category"], f"{r['type']} ({r['method']})", r["n"], _fmt(r.get("chance")),
                         _fmt(r["score"]), _ci(r.get("ci95")), metrics,
                         str(c["invalid_input"]), str(c["unparsed"]),
                         f"{r['examples_per_s']}" if r.get("examples_per_s") else "-"])
        parts.append(_table(["task", "category", "type", "n", "chance", "score", "95% CI", "metrics", "invalid input",
                             "unparsed", "ex/s"], rows))
        notes = [f"- {task}: unparsed {r['counts']['unparsed']} of {r['n']}; answers read by "
                 + ", ".join(f"{k} {v}" for k, v in r["extraction"].items())
                 + (f"; rule: {r['rule']}" if r.get("rule") else "")
                 for task, r in m["tasks"].items() if r.get("extraction")]
        if notes:
            parts.append("\nHow answers were read (unparsed answers count as wrong):\n\n" + "\n".join(notes) + "\n")
        cats, cis = m["categories"], m.get("categories_ci95", {})
        parts.append("\n" + _table(["category", "score", "95% CI"],
                                   [[c, _fmt(cats[c]), _ci(cis.get(c))] for c in _category_order(cats)]
                                   + [["**overall**", _fmt(m["overall"]), _ci(m.get("overall_ci95"))]]))
    return "\n".join(parts)


_INTERVALS_NOTE = ("Brackets: 95% percentile-bootstrap intervals (1000 resamples of the items, fixed seed; F1 metrics "
                   "recomputed on each resample); a category is the mean of its task scores, its interval resamples "
                   "items within each task. Chance: the score of uniform random answers (classification and "
                   "multiple choice; - for generative tasks).")


def comparison_table(results: dict) -> dict:
    """Primary scores of every model per task and category, with the change from the first model, item counts,
    chance levels, 95% intervals and paired-bootstrap intervals of the changes (when predictions were read)."""
    models = list(results["models"])
    order = _category_order({t["category"] for t in results["tasks"].values()})
    tasks = sorted(results["tasks"], key=lambda t: order.index(results["tasks"][t]["category"]))
    first = models[0]
    rows = []
    for t in tasks:
        rows.append({"name": t, "kind": "task", "category": results["tasks"][t]["category"],
                     "metric": results["tasks"][t]["primary_metric"],
                     "scores": {m: results["models"][m]["tasks"].get(t, {}).get("score") for m in models}})
    cats = _category_order({c for m in models for c in results["models"][m]["categories"]})
    for c in cats:
        rows.append({"name": c, "kind": "category", "category": c, "metric": "mean",
                     "scores": {m: results["models"][m]["categories"].get(c) for m in models}})
    rows.append({"name": "overall", "kind": "overall", "category": "", "metric": "mean of categories",
                 "scores": {m: results["models"][m]["overall"] for m in models}})
    for r in rows:
        base = r["scores"][first]
        r["delta_vs_" + first] = {m: (None if base is None or r["scores"][m] is None else r["scores"][m] - base)
                                  for m in models[1:]}
    _add_intervals_to_rows(results, rows, models, first)
    return {"models": models, "baseline": first, "rows": rows}


def _add_intervals_to_rows(results: dict, rows: list[dict], models: list[str], first: str) -> None:
    paired = (results.get("paired") or {}).get("models", {})
    for r in rows:
        ms = [results["models"][m] for m in models]
        if r["kind"] == "task":
            info = results["tasks"][r["name"]]
            r["n"] = info.get("n")
            chances = {m["tasks"][r["name"]].get("chance") for m in ms if r["name"] in m["tasks"]} - {None}
            r["chance"] = chances.pop() if len(chances) == 1 else None
            r["ci95"] = {m: results["models"][m]["tasks"].get(r["name"], {}).get("ci95") for m in models}
            key, sub = "tasks", r["name"]
        elif r["kind"] == "category":
            r["n"] = sum(t.get("n") or 0 for t in results["tasks"].values() if t["category"] == r["name"])
            r["chance"] = None
            r["ci95"] = {m: results["models"][m].get("categories_ci95", {}).get(r["name"]) for m in models}
            key, sub = "categories", r["name"]
        else:
            r["n"] = sum(t.get("n") or 0 for t in results["tasks"].values())
            r["chance"] = None
            r["ci95"] = {m: results["models"][m].get("overall_ci95") for m in models}
            key, sub = "overall", None
        deltas = {}
        for m in models[1:]:
            p = paired.get(m, {})
            entry = p.get(key) if sub is None else p.get(key, {}).get(sub)
            deltas[m] = {"ci95": entry.get("ci95"), "excludes_zero": entry.get("excludes_zero")} if entry else None
        r["delta_ci95_vs_" + first] = deltas


def comparison_markdown(table: dict) -> str:
    models, first = table["models"], table["baseline"]
    header = ["", "metric", "n", "chance"] + models + [f"{m} - {first}" for m in models[1:]]
    body = []
    for r in table["rows"]:
        label = r["name"] if r["kind"] == "task" else f"**{r['name']}**"
        cis = r.get("ci95") or {}
        scores = [_fmt(r["scores"][m]) + (f" {_ci(cis[m])}" if cis.get(m) else "") for m in models]
        intervals = r.get("delta_ci95_vs_" + first) or {}
        deltas = [_delta(dict(intervals.get(m) or {}, delta=d)) for m, d in r["delta_vs_" + first].items()]
        body.append([label, r["metric"], _fmt(r.get("n")), _fmt(r.get("chance"))] + scores + deltas)
    return ("# FinEval comparison\n\nPrimary score per task (%), category means and the overall mean; changes in "
            f"points against {first}. {_INTERVALS_NOTE} Changes carry a paired-bootstrap 95% interval (the same "
            "resampled items for both models); * marks an interval that excludes 0.\n\n" + _table(header, body))


def comparison_chart(table: dict, path: Path) -> None:
    """Grouped bars: one group per task and per category, one bar per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = table["models"]
    rows = table["rows"]
    labels = [r["name"] for r in rows]
    x = np.arange(len(rows))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.7 * len(rows) * max(1, len(models) / 2)), 4.8), dpi=120)
    for i, m in enumerate(models):
        vals = [100 * (r["scores"][m] or 0.0) for r in rows]
        # asymmetric 95% bootstrap error bars; a bar without an interval gets none
        cis = [(r.get("ci95") or {}).get(m) for r in rows]
        yerr = np.array([[max(v - 100 * c[0], 0.0), max(100 * c[1] - v, 0.0)] if c else [0.0, 0.0]
                         for v, c in zip(vals, cis)]).T
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=m, yerr=yerr if any(cis) else None,
               error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "0.2"})
    chance = [(j, r.get("chance")) for j, r in enumerate(rows) if r.get("chance") is not None]
    for k, (j, c) in enumerate(chance):  # a dashed line across the task's group of bars
        ax.hlines(100 * c, j - 0.45, j + 0.45, colors="0.3", linestyles="dashed", linewidth=1.0,
                  label="chance" if k == 0 else None)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    for tick, r in zip(ax.get_xticklabels(), rows):
        if r["kind"] != "task":
            tick.set_fontweight("bold")
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.set_title("FinEval: primary score per task, category means and overall (95% bootstrap intervals)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write_comparison(results: dict, out: Path, chart: bool = True) -> dict:
    from findap_nemo.files import write_text_atomic as write_atomic

    table = comparison_table(results)
    write_atomic(out / "comparison.json", json.dumps(table, indent=2))
    write_atomic(out / "comparison.md", comparison_markdown(table))
    if chart:
        comparison_chart(table, out / "comparison.png")
    return table


def merge_results(paths: list[str]) -> dict:
    """Merge several results.json files: a model named in several files gets the union of its tasks (later files
    win), so tasks split over separate jobs combine into one table; different models sit side by side."""
    merged: dict[str, Any] = {"tasks": {}, "models": {}, "merged_from": [str(p) for p in paths]}
    for p in paths:
        data = json.loads(Path(p).read_text(encoding="utf-8"))
        merged["tasks"].update(data["tasks"])
        for name, r in data["models"].items():
            m = merged["models"].setdefault(name, {"path": r.get("path"), "tasks": {}})
            for task, res in r["tasks"].items():
                res = dict(res)
                if res.get("predictions"):  # relative to the results file it came from
                    res["predictions"] = str((Path(p).resolve().parent / res["predictions"]))
                m["tasks"][task] = res
    for m in merged["models"].values():
        m["categories"], m["overall"] = summarize(m["tasks"])
    add_intervals(merged, Path.cwd())
    return merged


def compare_results_files(paths: list[str], out: Path, chart: bool = True) -> dict:
    """Write results.{json,md} of the merged files and, for two or more models, the comparison."""
    from findap_nemo.files import write_text_atomic as write_atomic

    merged = merge_results(paths)
    write_atomic(out / "results.json", json.dumps(merged, indent=2, default=str))
    write_atomic(out / "results.md", results_markdown(merged))
    if len(merged["models"]) >= 2:
        write_comparison(merged, out, chart=chart)
    return merged
