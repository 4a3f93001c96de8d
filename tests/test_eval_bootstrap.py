"""Bootstrap intervals of FinEval scores: the percentile method against hand computations and the normal
approximation, metrics recomputed per resample, paired deltas, and the intervals in the tables and chart."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np

from findap_nemo.eval.bootstrap import (add_intervals, chance_level, mean_distribution, metric_distribution,
                                        paired_delta, percentile_interval, resample_indices, task_metric)
from findap_nemo.eval.report import comparison_chart, comparison_markdown, comparison_table, results_markdown
from findap_nemo.eval.scoring import aggregate


def _cls(gold: str, pred, i: int) -> dict:
    status = "unparsed" if pred is None else ("correct" if pred == gold else "wrong")
    return {"id": f"x-{i}", "status": status, "correct": status == "correct", "gold": gold, "pred": pred}


def test_percentile_interval_matches_a_hand_computation():
    # 1000 values 0..999: numpy's linear percentile puts 2.5% at position 0.025 * 999 = 24.975
    lo, hi = percentile_interval(np.arange(1000))
    assert math.isclose(lo, 24.975) and math.isclose(hi, 974.025)
    # n=2 items scored [0, 1]: a resample's mean is 0, 0.5 or 1 (p = 1/4, 1/2, 1/4), so the 95% interval is [0, 1]
    d = mean_distribution([0.0, 1.0], resample_indices(2, "two"))
    assert set(np.unique(d)) == {0.0, 0.5, 1.0}
    assert abs((d == 0.5).mean() - 0.5) < 0.05
    assert percentile_interval(d) == (0.0, 1.0)


def test_accuracy_interval_agrees_with_the_normal_approximation():
    rng = random.Random(1)
    n, p = 400, 0.3
    correct = [1.0] * int(n * p) + [0.0] * (n - int(n * p))
    rng.shuffle(correct)
    lo, hi = percentile_interval(mean_distribution(correct, resample_indices(n, "acc", resamples=4000)))
    half = 1.96 * math.sqrt(p * (1 - p) / n)  # 0.0449
    assert abs(lo - (p - half)) < 0.01 and abs(hi - (p + half)) < 0.01


def test_metrics_are_recomputed_per_resample_not_averaged():
    labels = ["positive", "negative", "neutral"]
    rng = random.Random(0)
    recs = [_cls(g := rng.choice(labels), g if rng.random() < 0.6 else rng.choice(labels + [None]), i)
            for i in range(150)]
    idx = resample_indices(len(recs), "cls")
    acc = metric_distribution(task_metric("classification", "accuracy"), recs, idx)
    assert np.allclose(acc, mean_distribution([r["correct"] for r in recs], idx))  # accuracy: both ways agree
    f1 = task_metric("classification", "macro_f1")
    spec = type("S", (), {"type": "classification", "primary": "macro_f1", "metric_names": ["macro_f1"]})
    assert f1(recs) == aggregate(spec, recs)["score"]
    d = metric_distribution(f1, recs, idx)
    lo, hi = percentile_interval(d)
    assert lo < f1(recs) < hi and hi - lo > 0.05
    # entity F1 is micro over (text, type) pairs: items with many entities weigh more than a per-item mean
    ner = [{"id": i, "status": "wrong", "correct": False, "gold_entities": [["A", "ORG"]] * (1 + 9 * (i % 2)),
            "pred": [["A", "ORG"]] * (10 * (i % 2))} for i in range(40)]
    ent = task_metric("ner", "entity_f1")
    assert math.isclose(ent(ner), 2 * 200 / (2 * 200 + 20))  # not the per-item mean 0.5
    assert np.all(metric_distribution(ent, ner, resample_indices(40, "ner")) > 0.5)


def test_paired_delta_excludes_zero_for_a_better_model_and_not_for_identical_ones():
    rng = random.Random(3)
    n = 200
    base = [1.0 if rng.random() < 0.6 else 0.0 for _ in range(n)]
    wrong = [i for i, c in enumerate(base) if c == 0.0]
    better = list(base)
    for i in wrong[:5]:  # 5 more items right out of 200 (+2.5 points): unpaired intervals overlap ...
        better[i] = 1.0
    idx = resample_indices(n, "paired")
    db, do = mean_distribution(base, idx), mean_distribution(better, idx)
    lo_b, hi_b = percentile_interval(db)
    lo_o, hi_o = percentile_interval(do)
    assert lo_o < hi_b  # ... but the paired interval of the difference is above 0
    d = paired_delta(db, do)
    assert d["excludes_zero"] and d["ci95"][0] > 0
    same = paired_delta(db, mean_distribution(list(base), idx))
    assert not same["excludes_zero"] and same["ci95"] == [0.0, 0.0]
    noisy = list(base)  # swap 3 right for 3 wrong answers: no change beyond noise
    for i, j in zip(wrong[:3], [k for k, c in enumerate(base) if c == 1.0][:3]):
        noisy[i], noisy[j] = 1.0, 0.0
    assert not paired_delta(db, mean_distribution(noisy, idx))["excludes_zero"]


def test_chance_levels():
    spec = type("T", (), {"type": "classification", "labels": ["yes", "no"]})
    assert chance_level(spec) == 0.5
    mc = type("T", (), {"type": "multiple_choice", "labels": []})
    assert math.isclose(chance_level(mc, [4, 4, 3]), (0.25 + 0.25 + 1 / 3) / 3)
    assert chance_level(type("T", (), {"type": "summarization", "labels": []})) is None


def _write_preds(root: Path, model: str, task: str, recs: list[dict]) -> str:
    rel = f"predictions/{model}/{task}.jsonl"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text("".join(json.dumps(r) + "\n" for r in recs))
    return rel


def test_results_tables_and_chart_show_n_chance_and_intervals(tmp_path):
    rng = random.Random(5)
    n = 240
    gold = [rng.choice(["yes", "no"]) for _ in range(n)]
    flip = {"yes": "no", "no": "yes"}
    preds = {"base": [g if rng.random() < 0.55 else flip[g] for g in gold]}
    preds["tuned"] = [g if (p == g or rng.random() < 0.5) else p for g, p in zip(gold, preds["base"])]
    preds["same"] = list(preds["base"])
    results = {"tasks": {"headline": {"category": "unseen_similar", "type": "classification",
                                      "primary_metric": "accuracy", "n": n}}, "models": {}}
    for m, ps in preds.items():
        recs = [_cls(g, p, i) for i, (g, p) in enumerate(zip(gold, ps))]
        spec = type("S", (), {"type": "classification", "primary": "accuracy", "metric_names": ["accuracy"]})
        agg = aggregate(spec, recs)
        agg.update(category="unseen_similar", type="classification", method="generate", chance=0.5,
                   predictions=_write_preds(tmp_path, m, "headline", recs))
        results["models"][m] = {"path": m, "tasks": {"headline": agg}, "categories": {"unseen_similar": agg["score"]},
                                "overall": agg["score"]}
    add_intervals(results, tmp_path)
    r = results["models"]["base"]["tasks"]["headline"]
    assert r["ci95"][0] < r["score"] < r["ci95"][1]
    assert results["models"]["base"]["categories_ci95"]["unseen_similar"] == r["ci95"]  # one task: same interval
    assert results["paired"]["models"]["tuned"]["tasks"]["headline"]["excludes_zero"]
    assert not results["paired"]["models"]["same"]["tasks"]["headline"]["excludes_zero"]

    md = results_markdown(results)
    assert "| chance | score | 95% CI |" in md
    assert f"| 50.0 | {100 * r['score']:.1f} | [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}] |" in md
    table = comparison_table(results)
    row = next(x for x in table["rows"] if x["name"] == "headline")
    assert row["n"] == n and row["chance"] == 0.5 and row["ci95"]["tuned"]
    cmp_md = comparison_markdown(table)
    line = next(x for x in cmp_md.splitlines() if x.startswith("| headline"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == str(n) and cells[3] == "50.0"
    assert cells[-2].endswith(" *") and not cells[-1].endswith("*")  # tuned beats base; same does not
    comparison_chart(table, tmp_path / "comparison.png")
    assert (tmp_path / "comparison.png").stat().st_size > 10_000


def _random_records(kind: str, n: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        if kind == "classification":
            out.append(_cls(g := rng.choice("abc"), rng.choice(["a", "b", "c", g, g, None]), i))
            if i % 37 == 0:
                out[-1].update(status="invalid_input", correct=False, pred=None)
        elif kind == "ner":
            ents = [[rng.choice("XYZ"), rng.choice(["PER", "ORG"])] for _ in range(rng.randint(0, 3))]
            pred = [e for e in ents if rng.random() < 0.6] + [["Q", "LOC"]] * rng.randint(0, 1)
            out.append({"id": i, "status": "invalid_input" if i % 41 == 0 else "wrong", "correct": False,
                        "gold_entities": ents, "pred": pred})
        elif kind == "instruction":
            rules = [{"passed": rng.random() < 0.5} for _ in range(rng.randint(1, 3))]
            out.append({"id": i, "status": "correct" if all(r["passed"] for r in rules) else "wrong",
                        "correct": all(r["passed"] for r in rules), "rules": rules})
        else:
            out.append({"id": i, "status": "scored", "correct": False,
                        "rouge": {"rouge1": rng.random(), "rouge2": rng.random(), "rougeL": rng.random()}})
    return out


def test_fast_statistics_equal_recomputing_the_metric_on_every_resample():
    from findap_nemo.eval.bootstrap import task_distribution

    rng = random.Random(11)
    cases = [("classification", "macro_f1"), ("classification", "accuracy"), ("ner", "entity_f1"),
             ("ner", "entity_precision"), ("ner", "entity_recall"), ("instruction", "rule_accuracy"),
             ("instruction", "prompt_accuracy"), ("summarization", "rougeL")]
    for kind, primary in cases:
        recs = _random_records(kind, 60, rng)
        fast = task_distribution("t", {"type": kind, "primary_metric": primary}, recs, resamples=40)
        slow = metric_distribution(task_metric(kind, primary), recs, resample_indices(60, "t", resamples=40))
        assert np.allclose(fast, slow), (kind, primary)


def test_a_metric_the_fast_path_does_not_reproduce_is_recomputed(monkeypatch):
    import findap_nemo.eval.scoring as scoring
    from findap_nemo.eval.bootstrap import task_distribution

    recs = _random_records("classification", 30, random.Random(2))
    monkeypatch.setattr(scoring, "aggregate", lambda task, records: {"score": 0.123})
    d = task_distribution("t", {"type": "classification", "primary_metric": "accuracy"}, recs, resamples=20)
    assert np.allclose(d, 0.123)
