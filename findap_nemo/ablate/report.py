"""The ablation's comparison: every variant against the base on every FinEval category, with 95% intervals, the
gain view (finance) beside the forgetting view (general knowledge, reasoning, instruction following), and what each
variant cost. Markdown, self-contained HTML and ``results.json`` in ``<run_dir>/compare/``."""

from __future__ import annotations

from pathlib import Path

from findap_nemo.files import read_json, write_json_atomic
from findap_nemo.pipeline.headline import CATEGORY_NAMES, format_delta, headline_markdown, verdict
from findap_nemo.pipeline.report import Report, md_table, round1

GAIN = ("unseen_similar", "novel_finance")  # the domain: what adaptation is for
KEPT = ("novel_concepts", "general", "reasoning", "instruction_following")  # what it must not forget


def _cell(entry: dict | None) -> str:
    entry = entry or {}
    return format_delta(entry.get("delta"), entry.get("delta_ci95"), entry.get("excludes_zero"))


def category_deltas(comparison: dict, model: str) -> dict[str, dict]:
    """category (and 'overall') -> score, interval, change vs the base with its paired interval, verdict."""
    base = comparison["baseline"]
    out = {}
    for r in comparison["rows"]:
        if r["kind"] not in ("category", "overall"):
            continue
        d = (r.get(f"delta_vs_{base}") or {}).get(model)
        info = (r.get(f"delta_ci95_vs_{base}") or {}).get(model)
        out[r["name"]] = {"n": r.get("n"), "score": r["scores"].get(model), "ci95": (r.get("ci95") or {}).get(model),
                          "base_score": r["scores"].get(base), "delta": d,
                          "delta_ci95": (info or {}).get("ci95"),
                          "excludes_zero": bool((info or {}).get("excludes_zero")),
                          "verdict": verdict(d, info)}
    return out


def against_reference(eval_dir: Path, reference: str, models: list[str]) -> dict[str, dict[str, dict]]:
    """Paired-bootstrap changes of each model against ``reference`` (another variant, not the base) per category:
    the recipe comparison itself (e.g. does sequential forget more than joint?), on the same items."""
    import copy
    import json

    from findap_nemo.eval.bootstrap import add_intervals

    path = eval_dir / "results.json"
    if not path.is_file():
        return {}
    results = json.loads(path.read_text(encoding="utf-8"))
    if reference not in results["models"]:
        return {}
    order = [reference] + [m for m in models if m != reference and m in results["models"]]
    sub = copy.deepcopy(results)
    sub["models"] = {m: results["models"][m] for m in order}
    paired = add_intervals(sub, eval_dir)["paired"]["models"]
    out = {}
    for m in order[1:]:
        out[m] = {c: {"delta": e.get("delta"), "delta_ci95": e.get("ci95"), "excludes_zero": e.get("excludes_zero")}
                  for c, e in paired[m]["categories"].items()}
    return out


def _chart(rows: list[dict], cats: list[str], path: Path) -> Path | None:
    """Grouped bars of each variant's change per category with its 95% interval: gain (left), kept (right)."""
    groups = [(t, [c for c in g if c in cats]) for t, g in (("gain: finance", GAIN),
                                                            ("kept: general, reasoning, IF", KEPT))]
    groups = [(t, g) for t, g in groups if g]
    models = [r["model"] for r in rows if r.get("categories")]
    if not groups or not models:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 3.8), dpi=110, squeeze=False)
    width = 0.8 / len(models)
    for ax, (title, group) in zip(axes[0], groups):
        x = np.arange(len(group))
        for j, r in enumerate(rows):
            cats_ = r.get("categories") or {}
            ys, lo, hi = [], [], []
            for c in group:
                e = cats_.get(c) or {}
                d = e.get("delta")
                ci = e.get("delta_ci95") or [d, d]
                ys.append(100 * d if d is not None else np.nan)
                lo.append(100 * (d - ci[0]) if d is not None and ci[0] is not None else 0)
                hi.append(100 * (ci[1] - d) if d is not None and ci[1] is not None else 0)
            ax.bar(x + (j - (len(models) - 1) / 2) * width, ys, width, yerr=[lo, hi], capsize=2, label=r["model"])
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, [CATEGORY_NAMES.get(c, c).replace(", ", ",\n").replace(" (", "\n(") for c in group],
                      fontsize=8)
        ax.set_ylabel("change vs base (points)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_comparison(title: str, out: Path, variant_results: dict[str, dict], comparison: dict | None,
                     models: dict[str, str], reference: str | None = None) -> tuple[Path, Path]:
    """``models``: FinEval model name -> variant name (a variant may contribute its final and its SFT model);
    ``reference``: the model the others are also compared with, pairwise (default: the first compared)."""
    rows = []
    for model, variant in models.items():
        res = variant_results.get(variant, {})
        rows.append({"model": model, "variant": variant, "status": res.get("status"), "reason": res.get("reason"),
                     "recipe": res.get("recipe"), "preference": res.get("preference"), "cost": res.get("cost"),
                     "categories": category_deltas(comparison, model)
                     if comparison and model in comparison["models"] else None})
    listed = set(models.values())
    for name, res in variant_results.items():  # failed / not run: a row that says why
        if name not in listed:
            rows.append({"model": name, "variant": name, "status": res.get("status"), "reason": res.get("reason"),
                         "recipe": res.get("recipe"), "preference": res.get("preference"), "cost": res.get("cost"),
                         "categories": None})
    cats = [r["name"] for r in (comparison or {}).get("rows", []) if r["kind"] == "category"]
    compared = [r["model"] for r in rows if r.get("categories")]
    reference = reference if reference in compared else (compared[0] if compared else None)
    vs_ref = against_reference(out / "eval", reference, compared) if reference and len(compared) > 1 else {}
    for r in rows:
        r["vs_reference"] = vs_ref.get(r["model"])
    write_json_atomic(out / "results.json", {"title": title, "baseline": (comparison or {}).get("baseline"),
                                             "reference": reference if vs_ref else None,
                                             "base_scores": _base_scores(comparison), "variants": rows})

    rep = Report(title, out)
    rep.text("Every variant against the base model on every FinEval category: change in points with its "
             "paired-bootstrap 95% interval (* = the interval excludes 0). Finance categories show what the "
             "adaptation gained; general knowledge, reasoning and instruction following show what it kept "
             "(a negative change there is forgetting).")
    for view, group in (("Gain: finance", GAIN), ("Kept: general knowledge, reasoning, instruction following", KEPT)):
        present = [c for c in group if c in cats]
        if not present:
            continue
        rep.heading(view)
        table = []
        for r in rows:
            line = {"variant": r["model"], "recipe": r.get("recipe") or "-"}
            for c in present:
                line[CATEGORY_NAMES.get(c, c)] = _cell((r.get("categories") or {}).get(c)) if r["categories"] \
                    else r.get("status") or "-"
            table.append(line)
        rep.text(md_table(table))
    rep.image(_chart([r for r in rows if r.get("categories")], cats, out / "ablation.png"))
    if vs_ref:
        rep.heading(f"Against {reference}: the recipes compared with each other")
        rep.text(f"Each variant minus `{reference}` on the same items (paired bootstrap, 95% intervals; * = the "
                 f"interval excludes 0): a negative change in a kept category means more forgetting than "
                 f"`{reference}`, a positive one in finance more gain.")
        table = []
        for r in rows:
            if r["model"] in vs_ref:
                line = {"variant": r["model"]}
                for c in [c for c in (*GAIN, *KEPT) if c in cats]:
                    line[CATEGORY_NAMES.get(c, c)] = _cell(vs_ref[r["model"]].get(c))
                table.append(line)
        rep.text(md_table(table))
    rep.heading("Cost")
    rep.text("CPU seconds are the user + system time of each stage's processes (on SLURM: GPU- and CPU-core-hours "
             "of each stage's job as allocated), counted in full for every variant that uses a stage (shared stages "
             "ran once); training = train, GenRM and DPO stages.")
    slurm = any("gpu_hours" in (r.get("cost") or {}) for r in rows)
    table = []
    for r in rows:
        c = r.get("cost") or {}
        line = {"variant": r["model"], "status": r.get("status") or "-", "train tokens": c.get("train_tokens")}
        if slurm:  # stage jobs on SLURM: what SLURM allocated, not what the processes used
            line.update({"GPU-hours": c.get("gpu_hours"), "CPU-core-hours": c.get("cpu_core_hours")})
        else:
            line.update({"training CPU s": round1(c.get("training_cpu_seconds")),
                         "all stages CPU s": round1(c.get("cpu_seconds"))})
        line["why not compared"] = r.get("reason") or ("" if r.get("categories") else r.get("status"))
        table.append(line)
    rep.text(md_table(table))
    if comparison:
        rep.heading("Every model on every category (scores in %)")
        rep.text(headline_markdown(comparison))
        rep.image(out / "eval" / "comparison.png")
    else:
        rep.text("_No variant finished: nothing to compare yet._")
    return rep.write()


def _base_scores(comparison: dict | None) -> dict:
    if not comparison:
        return {}
    base = comparison["baseline"]
    return {r["name"]: {"score": r["scores"].get(base), "ci95": (r.get("ci95") or {}).get(base), "n": r.get("n")}
            for r in comparison["rows"] if r["kind"] in ("category", "overall")}


def read_comparison(out: Path) -> dict | None:
    return read_json(out / "eval" / "comparison.json", missing_ok=True)


def print_variants(vs) -> None:
    """`--list`: each variant's stages and which other variants share them."""
    users: dict[str, list[str]] = {}
    for v in vs:
        for st in v.stages:
            users.setdefault(st.name, []).append(v.name)
    print(f"{len(vs)} variants, {len(users)} distinct stages "
          f"({sum(len(v.stages) for v in vs) - len(users)} stage runs saved by sharing)")
    for v in vs:
        print(f"\n{v.name} (recipe {v.pipeline.recipe}; DPO {'on' if v.pipeline.dpo.enabled else 'off'})")
        for st in v.stages:
            others = [n for n in users[st.name] if n != v.name]
            print(f"  {st.name:28s} {st.title}" + (f"  [shared with {', '.join(others)}]" if others else ""))
