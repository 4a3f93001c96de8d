"""The report's headline: every model per FinEval category against the base, with 95% intervals, and plain
sentences that claim no more than the intervals show (a change is "improved" or "declined" only when its paired
bootstrap interval excludes 0; otherwise it is "no detectable change", with the interval's reach)."""

from __future__ import annotations

from typing import Any

CATEGORY_NAMES = {
    "unseen_similar": "finance, similar tasks",
    "novel_finance": "finance, novel tasks",
    "novel_concepts": "general knowledge (novel concepts)",
    "reasoning": "reasoning",
    "instruction_following": "instruction following",
    "general": "general",
}
"""How the headline names FinEval's categories: the finance ones show the gain, the others what was kept."""


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _ci(ci: Any) -> str:
    return f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""


def _signed_ci(ci: Any) -> str:
    return f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else ""


def format_delta(delta: float | None, ci95: Any = None, excludes_zero: bool = False) -> str:
    """A change in points with its paired 95% interval, starred when the interval excludes zero: "+5.2 [+1.8,
    +8.8]*" (the report's headline and the ablation tables alike)."""
    if delta is None:
        return "-"
    return f"{100 * delta:+.1f}{_signed_ci(ci95)}{'*' if excludes_zero else ''}"


def verdict(delta: float | None, info: dict | None) -> str:
    """'improved', 'declined' or 'no detectable change' from a change and its paired interval."""
    if delta is None or not info or not info.get("ci95"):
        return "not measured"
    lo, hi = info["ci95"]
    if info.get("excludes_zero") and lo > 0:
        return "improved"
    if info.get("excludes_zero") and hi < 0:
        return "declined"
    return "no detectable change"


def headline_markdown(table: dict) -> str:
    """Markdown for a comparison table (``eval/comparison.json``): categories x models, then the verdicts."""
    models, base = table["models"], table["baseline"]
    rows = [r for r in table["rows"] if r["kind"] in ("category", "overall")]
    header = ["category", "items"] + models + [f"{m} − {base}" for m in models[1:]]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        name = CATEGORY_NAMES.get(r["name"], r["name"]) if r["kind"] == "category" else "**overall**"
        cis = r.get("ci95") or {}
        deltas = r.get(f"delta_vs_{base}") or {}
        dcis = r.get(f"delta_ci95_vs_{base}") or {}
        cells = [name, str(r.get("n") or "-")] + [_pct(r["scores"].get(m)) + _ci(cis.get(m)) for m in models]
        cells += [format_delta(deltas.get(m), (dcis.get(m) or {}).get("ci95"), (dcis.get(m) or {}).get("excludes_zero"))
                  for m in models[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    out = ["Scores in %, with 95% bootstrap intervals over the evaluation items; changes in points against "
           f"`{base}` with paired-bootstrap 95% intervals (* = the interval excludes 0).", "", *lines, ""]
    for m in models[1:]:
        groups: dict[str, list[str]] = {"improved": [], "declined": [], "no detectable change": []}
        for r in rows:
            if r["kind"] != "category":
                continue
            d = (r.get(f"delta_vs_{base}") or {}).get(m)
            info = (r.get(f"delta_ci95_vs_{base}") or {}).get(m)
            v = verdict(d, info)
            if v in groups:
                reach = f" ({100 * d:+.1f} points, interval {_signed_ci(info['ci95']).strip()})"
                groups[v].append(CATEGORY_NAMES.get(r["name"], r["name"]) + reach)
        parts = [f"**{m} vs {base}.**"]
        parts.append("Improved beyond noise: " + ("; ".join(groups["improved"]) if groups["improved"] else "nothing")
                     + ".")
        parts.append("Declined beyond noise: " + ("; ".join(groups["declined"]) if groups["declined"] else "nothing")
                     + ".")
        if groups["no detectable change"]:
            parts.append("No change the intervals can detect (held, or too small to tell): "
                         + "; ".join(groups["no detectable change"]) + ".")
        out.append(" ".join(parts))
        out.append("")
    return "\n".join(out)
