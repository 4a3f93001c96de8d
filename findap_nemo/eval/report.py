"""Tables (markdown, JSON) and the side-by-side bar chart of evaluation results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from findap_nemo.eval.registry import CATEGORIES


def _fmt(x: Any) -> str:
    return "-" if x is None else (f"{100 * x:.1f}" if isinstance(x, float) else str(x))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _category_order(cats) -> list[str]:
    return sorted(cats, key=lambda c: (CATEGORIES.index(c) if c in CATEGORIES else len(CATEGORIES), c))


def results_markdown(results: dict) -> str:
    """Per model: a task table (all metrics, status counts, throughput) and a category table. Scores in %."""
    parts = ["# FinEval results\n", "Scores are percentages. Invalid-input and unparsed examples are counted as "
             "wrong and stay in every denominator.\n"]
    for name, m in results["models"].items():
        parts.append(f"\n## {name}\n\n`{m['path']}`\n")
        rows = []
        for task, r in m["tasks"].items():
            metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in r["metrics"].items())
            c = r["counts"]
            rows.append([task, r["category"], f"{r['type']} ({r['method']})", r["n"], _fmt(r["score"]), metrics,
                         str(c["invalid_input"]), str(c["unparsed"]),
                         f"{r['examples_per_s']}" if r.get("examples_per_s") else "-"])
        parts.append(_table(["task", "category", "type", "n", "score", "metrics", "invalid input", "unparsed",
                             "ex/s"], rows))
        cats = m["categories"]
        parts.append("\n" + _table(["category", "score"],
                                   [[c, _fmt(cats[c])] for c in _category_order(cats)] + [["**overall**", _fmt(m["overall"])]]))
    return "\n".join(parts)


def comparison_table(results: dict) -> dict:
    """Primary scores of every model per task and category, with the change from the first model."""
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
    return {"models": models, "baseline": first, "rows": rows}


def comparison_markdown(table: dict) -> str:
    models, first = table["models"], table["baseline"]
    header = ["", "metric"] + models + [f"{m} - {first}" for m in models[1:]]
    body = []
    for r in table["rows"]:
        label = r["name"] if r["kind"] == "task" else f"**{r['name']}**"
        deltas = [("-" if d is None else f"{100 * d:+.1f}") for d in r["delta_vs_" + first].values()]
        body.append([label, r["metric"]] + [_fmt(r["scores"][m]) for m in models] + deltas)
    return "# FinEval comparison\n\nPrimary score per task (%), category means and the overall mean.\n\n" + \
        _table(header, body)


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
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=m)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    for tick, r in zip(ax.get_xticklabels(), rows):
        if r["kind"] != "task":
            tick.set_fontweight("bold")
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.set_title("FinEval: primary score per task, category means and overall")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write_comparison(results: dict, out: Path, chart: bool = True) -> dict:
    from findap_nemo.eval.runner import write_atomic

    table = comparison_table(results)
    write_atomic(out / "comparison.json", json.dumps(table, indent=2))
    write_atomic(out / "comparison.md", comparison_markdown(table))
    if chart:
        comparison_chart(table, out / "comparison.png")
    return table


def merge_results(paths: list[str]) -> dict:
    """Merge several results.json files: a model named in several files gets the union of its tasks (later files
    win), so tasks split over separate jobs combine into one table; different models sit side by side."""
    from findap_nemo.eval.runner import summarize

    merged: dict[str, Any] = {"tasks": {}, "models": {}, "merged_from": [str(p) for p in paths]}
    for p in paths:
        data = json.loads(Path(p).read_text(encoding="utf-8"))
        merged["tasks"].update(data["tasks"])
        for name, r in data["models"].items():
            m = merged["models"].setdefault(name, {"path": r.get("path"), "tasks": {}})
            m["tasks"].update(r["tasks"])
    for m in merged["models"].values():
        m["categories"], m["overall"] = summarize(m["tasks"])
    return merged


def compare_results_files(paths: list[str], out: Path, chart: bool = True) -> dict:
    """Write results.{json,md} of the merged files and, for two or more models, the comparison."""
    from findap_nemo.eval.runner import write_atomic

    merged = merge_results(paths)
    write_atomic(out / "results.json", json.dumps(merged, indent=2, default=str))
    write_atomic(out / "results.md", results_markdown(merged))
    if len(merged["models"]) >= 2:
        write_comparison(merged, out, chart=chart)
    return merged
