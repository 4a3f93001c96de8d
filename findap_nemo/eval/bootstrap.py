"""95% percentile-bootstrap intervals for FinEval scores: per task, per category, overall, and paired deltas.

A score's interval comes from resampling the task's ITEMS with replacement and RECOMPUTING the task's metric on
each resample with the same ``aggregate`` that produced the score (macro-F1, entity-F1 and rule accuracy are not
means of per-item scores, so averaging per-item values would be wrong). The resampled indices depend only on the
task name, its item count and the seed, never on the model: every model is scored on the same resamples, so the
interval of a difference between two models is a PAIRED bootstrap (item difficulty cancels out).

Categories and the overall score are means of task scores (as in the results tables); their intervals resample
the items of every task independently (stratified by task) and take that mean on each resample.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from findap_nemo.eval.metrics import summarize
from findap_nemo.files import read_jsonl

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95


def resample_indices(n: int, key: str, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) item indices drawn with replacement; a function of (n, key, seed) only, so shared by models."""
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8")), n])
    return rng.integers(0, n, size=(resamples, n)) if n else np.zeros((resamples, 0), dtype=np.int64)


def percentile_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of a bootstrap distribution (percentile method, linear interpolation)."""
    arr = np.asarray(values, dtype=float)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(arr, [tail, 100 - tail])
    return float(lo), float(hi)


def metric_distribution(metric: Callable[[list], float], items: Sequence[Any], idx: np.ndarray) -> np.ndarray:
    """``metric`` recomputed on every resample ``items[idx[b]]``."""
    return np.array([metric([items[i] for i in row]) for row in idx], dtype=float)


def mean_distribution(scores: Sequence[float], idx: np.ndarray) -> np.ndarray:
    """Fast path for a metric that IS the mean of per-item scores (accuracy, exact match, ROUGE)."""
    return np.asarray(scores, dtype=float)[idx].mean(axis=1)


def paired_delta(base: np.ndarray, other: np.ndarray, level: float = LEVEL) -> dict:
    """Interval of ``other - base`` over the same resamples; ``excludes_zero`` marks a difference beyond noise."""
    lo, hi = percentile_interval(other - base, level)
    return {"ci95": [lo, hi], "excludes_zero": bool(lo > 0 or hi < 0)}


# --- FinEval results ------------------------------------------------------------------------------------------------

@dataclass
class _Spec:
    """What ``scoring.aggregate`` reads of a task: enough to recompute its primary metric from predictions."""

    type: str
    primary: str
    metric_names: list[str] = field(default_factory=list)
    # numeric tasks: aggregate() also states the tolerance rule; a resample only reads the score (correctness was
    # decided per record with the task's real tolerances), so neutral values do here
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    percent_equivalent: bool = False


def task_metric(task_type: str, primary: str) -> Callable[[list[dict]], float]:
    from findap_nemo.eval.scoring import aggregate

    spec = _Spec(task_type, primary, [primary])
    return lambda records: float(aggregate(spec, records)["score"])


def task_distribution(name: str, result: dict, records: list[dict], resamples: int = RESAMPLES,
                      seed: int = SEED) -> np.ndarray:
    """The task's primary metric on every resample. Known metrics use per-item sufficient statistics (vectorised,
    milliseconds); each fast path is used only when it reproduces ``aggregate`` on the full set exactly, so a
    change in the metrics can never silently change the intervals — it just falls back to recomputing."""
    idx = resample_indices(len(records), name, resamples, seed)
    metric = task_metric(result["type"], result["primary_metric"])
    stats = _sufficient_stats(result["type"], result["primary_metric"], records) if records else None
    if stats is not None:
        values, finish = stats
        full = finish(values.sum(axis=0, keepdims=True))[0]
        if abs(full - metric(records)) < 1e-9:
            return finish(values[idx].sum(axis=1))
    return metric_distribution(metric, records, idx)


def _f1(tp, fp, fn):
    den = 2 * tp + fp + fn
    return np.divide(2 * tp, den, out=np.zeros_like(den, dtype=float), where=den > 0)


def _sufficient_stats(task_type: str, primary: str, records: list[dict]):
    """(per-item statistics array, function of their sums -> metric), or None for a metric without one."""
    if primary in ("accuracy", "exact_match", "prompt_accuracy"):
        v = np.array([[float(bool(r.get("correct")))] for r in records])
        return v, lambda s: s[..., 0] / len(records)
    if primary in ("rouge1", "rouge2", "rougeL"):
        v = np.array([[float((r.get("rouge") or {}).get(primary, 0.0))] for r in records])
        return v, lambda s: s[..., 0] / len(records)
    if primary == "rule_accuracy":
        rows = [r.get("rules") or [{"passed": False}] for r in records]
        v = np.array([[sum(1 for c in rs if c.get("passed")), len(rs)] for rs in rows], dtype=float)
        return v, lambda s: np.divide(s[..., 0], s[..., 1], out=np.zeros(s.shape[:-1]), where=s[..., 1] > 0)
    if task_type == "classification" and primary == "macro_f1":
        gold = [r.get("gold") if r.get("status") != "invalid_input" else None for r in records]
        pred = [r.get("pred") for r in records]
        classes = sorted({g for g in gold if g is not None} | {p for p in pred if p is not None})
        if not classes:
            return None
        v = np.zeros((len(records), 3 * len(classes)))
        for i, (g, p) in enumerate(zip(gold, pred)):
            for j, c in enumerate(classes):
                v[i, 3 * j:3 * j + 3] = (g == c and p == c, p == c and g != c, g == c and p != c)

        def macro(s):
            tp, fp, fn = s[..., 0::3], s[..., 1::3], s[..., 2::3]
            present = (tp + fp + fn) > 0  # classes present in this resample's gold or predictions
            f1 = np.where(tp > 0, _f1(tp, fp, fn), 0.0)
            return np.divide((f1 * present).sum(-1), present.sum(-1), out=np.zeros(s.shape[:-1]),
                             where=present.sum(-1) > 0)

        return v, macro
    if task_type == "ner" and primary in ("entity_f1", "entity_precision", "entity_recall"):
        from collections import Counter

        v = np.zeros((len(records), 3))
        for i, r in enumerate(records):
            if r.get("status") == "invalid_input":
                v[i] = (0, 0, 1)  # one gold entity counted as missed
                continue
            g = Counter(tuple(e) for e in r.get("gold_entities") or [])
            p = Counter(tuple(e) for e in r.get("pred") or [])
            hit = sum((g & p).values())
            v[i] = (hit, sum(p.values()) - hit, sum(g.values()) - hit)

        def ent(s):
            tp, fp, fn = s[..., 0], s[..., 1], s[..., 2]
            prec = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
            rec = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=(tp + fn) > 0)
            f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
            out = {"entity_precision": prec, "entity_recall": rec, "entity_f1": f1}[primary]
            return np.where(tp + fp + fn == 0, 1.0, out)  # nothing to find and nothing found

        return v, ent
    return None


def add_intervals(results: dict, root: Path, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Add 95% intervals to a results dict (in place): ``ci95`` per task, ``categories_ci95``/``overall_ci95`` per
    model, and ``paired`` deltas of every model against the first. Predictions are read from each task result's
    ``predictions`` path (relative to ``root``); a task without readable predictions gets no interval."""
    dists: dict[str, dict[str, np.ndarray]] = {}
    ids: dict[str, dict[str, list]] = {}
    for model, m in results["models"].items():
        dists[model], ids[model] = {}, {}
        for task, r in m["tasks"].items():
            rel = r.get("predictions")
            path = (root / rel) if rel else None
            if path is None or not path.is_file():
                continue
            records = read_jsonl(path)
            if len(records) != r["n"]:
                continue  # predictions from another run: no interval rather than a wrong one
            r.setdefault("primary_metric", results["tasks"].get(task, {}).get("primary_metric"))
            d = task_distribution(task, r, records, resamples, seed)
            lo, hi = percentile_interval(d)
            r["ci95"] = [lo, hi]
            dists[model][task] = d
            ids[model][task] = [x.get("id") for x in records]
        cats = _category_distributions(m["tasks"], dists[model])
        m["categories_ci95"] = {c: list(percentile_interval(d)) for c, d in cats.items()}
        overall = _overall_distribution(cats, m["tasks"])
        if overall is not None:
            m["overall_ci95"] = list(percentile_interval(overall))
    models = list(results["models"])
    paired: dict[str, Any] = {"baseline": models[0] if models else None, "resamples": resamples, "seed": seed,
                              "level": LEVEL, "models": {}}
    if models:
        base = models[0]
        for other in models[1:]:
            paired["models"][other] = _paired(results, base, other, dists, ids, summarize)
    results["paired"] = paired
    results["bootstrap"] = {"method": "percentile", "resamples": resamples, "seed": seed, "level": LEVEL,
                            "category": "mean of task scores; items resampled within each task"}
    return results


def _category_distributions(tasks: dict, dists: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per category: mean of its tasks' resampled scores, when every task of the category has a distribution."""
    by_cat: dict[str, list[str]] = {}
    for t, r in tasks.items():
        by_cat.setdefault(r["category"], []).append(t)
    return {c: np.mean([dists[t] for t in ts], axis=0) for c, ts in by_cat.items() if all(t in dists for t in ts)}


def _overall_distribution(cats: dict[str, np.ndarray], tasks: dict) -> Optional[np.ndarray]:
    all_cats = {r["category"] for r in tasks.values()}
    if not cats or set(cats) != all_cats:
        return None
    return np.mean(list(cats.values()), axis=0)


def _paired(results: dict, base: str, other: str, dists, ids, summarize) -> dict:
    """Deltas other - base on the tasks both models have, with the same items in the same order."""
    a, b = results["models"][base], results["models"][other]
    common = [t for t in a["tasks"] if t in b["tasks"]]
    out: dict[str, Any] = {"tasks": {}, "categories": {}, "overall": None}
    da, db = {}, {}
    for t in common:
        entry = {"delta": b["tasks"][t]["score"] - a["tasks"][t]["score"]}
        if t in dists[base] and t in dists[other] and ids[base][t] == ids[other][t]:
            entry.update(paired_delta(dists[base][t], dists[other][t]))
            da[t], db[t] = dists[base][t], dists[other][t]
        out["tasks"][t] = entry
    ta = {t: a["tasks"][t] for t in common}
    tb = {t: b["tasks"][t] for t in common}
    cats_a, overall_a = summarize(ta)
    cats_b, overall_b = summarize(tb)
    ca, cb = _category_distributions(ta, da), _category_distributions(tb, db)
    for c in cats_a:
        entry = {"delta": cats_b[c] - cats_a[c]}
        if c in ca and c in cb:
            entry.update(paired_delta(ca[c], cb[c]))
        out["categories"][c] = entry
    if overall_a is not None and overall_b is not None:
        entry = {"delta": overall_b - overall_a}
        oa, ob = _overall_distribution(ca, ta), _overall_distribution(cb, tb)
        if oa is not None and ob is not None:
            entry.update(paired_delta(oa, ob))
        out["overall"] = entry
    return out


def chance_level(task, option_counts: Sequence[int] = ()) -> Optional[float]:
    """Expected accuracy of a uniform random answer: 1/len(labels) for classification, the mean of 1/len(options)
    over the examples for multiple choice; None for generative tasks (no chance level)."""
    if task.type == "classification" and task.labels:
        return 1.0 / len(task.labels)
    if task.type == "multiple_choice":
        counts = [k for k in option_counts if k > 0]
        return sum(1.0 / k for k in counts) / len(counts) if counts else None
    return None
