"""Metrics over a task's scored examples, plus the instruction-following rule checks.

An example that could not be read, or whose answer could not be parsed, is in every denominator as a wrong
answer: accuracy counts it wrong, macro-F1 counts it as a miss of its gold class, entity F1 counts its gold
entities as missed.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any, Optional

KNOWN_METRICS = {
    "classification": {"accuracy", "macro_f1"},
    "multiple_choice": {"accuracy"},
    "numeric": {"accuracy"},
    "ner": {"entity_f1", "entity_precision", "entity_recall"},
    "instruction": {"prompt_accuracy", "rule_accuracy"},
    "exact_match": {"exact_match"},
    "summarization": {"rouge1", "rouge2", "rougeL"},
}


def accuracy(correct: list[bool]) -> float:
    return sum(bool(c) for c in correct) / len(correct) if correct else 0.0


def macro_f1(gold: list[Optional[str]], pred: list[Optional[str]], labels: Optional[list[str]] = None) -> float:
    """Mean per-class F1 over the classes present in gold or predictions (or ``labels`` when given).

    A None prediction (unparsed) is a miss for its gold class and a false positive for no class; a None gold
    (unknown label) can never be matched, and its prediction counts as a false positive.
    """
    classes = list(labels) if labels else sorted({g for g in gold if g is not None} | {p for p in pred if p is not None})
    if not classes:
        return 0.0
    f1s = []
    for c in classes:
        tp = sum(1 for g, p in zip(gold, pred) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred) if p == c and g != c)
        fn = sum(1 for g, p in zip(gold, pred) if g == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s)


def numbers_match(pred, gold, abs_tol: float, rel_tol: float, percent_equivalent: bool = True) -> bool:
    """|pred - gold| <= max(abs_tol, rel_tol * |gold|).

    ``pred``/``gold`` are (value, is_percent, ...) with any scale already applied. With ``percent_equivalent``
    and exactly one side written as a percentage, that side is also compared divided by 100 ("20%" matches 0.2,
    0.2 matches gold "20%"); when both or neither are percentages only the values are compared, so "500" never
    matches 5.
    """
    p, p_pct = float(pred[0]), bool(pred[1])
    g, g_pct = float(gold[0]), bool(gold[1])
    candidates = [(p, g)]
    if percent_equivalent and p_pct != g_pct:
        candidates.append((p / 100.0, g) if p_pct else (p, g / 100.0))
    return any(math.isfinite(a) and abs(a - b) <= max(abs_tol, rel_tol * abs(b)) for a, b in candidates)


def numeric_rule(abs_tol: float, rel_tol: float, percent_equivalent: bool) -> str:
    """The tolerance rule of a numeric task in words, for its results and the report."""
    rule = f"|pred - gold| <= max({abs_tol:g}, {rel_tol:g} * |gold|)"
    if percent_equivalent:
        rule += "; when exactly one side is a percentage, that side / 100 also counts"
    return rule + "; scale words (thousand, million, bn, k, m ...) applied to the value"


def entity_prf(gold: list[list[tuple[str, str]]], pred: list[list[tuple[str, str]]]) -> dict[str, float]:
    """Micro precision/recall/F1 over (text, type) pairs, counting duplicates (multiset match per example)."""
    tp = fp = fn = 0
    for g, p in zip(gold, pred):
        gc, pc = Counter(g), Counter(p)
        hit = sum((gc & pc).values())
        tp += hit
        fp += sum(pc.values()) - hit
        fn += sum(gc.values()) - hit
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    if tp + fp + fn == 0:  # nothing to find and nothing found
        precision = recall = f1 = 1.0
    return {"entity_precision": precision, "entity_recall": recall, "entity_f1": f1}


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F-measures (Google's rouge-score, Porter stemming), as FLARE/FinEval score summaries."""
    return {k: v.fmeasure for k, v in _rouge_scorer().score(reference, prediction).items()}


def _rouge_scorer():
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    return _SCORER


_SCORER = None


# --- instruction following ---------------------------------------------------------------------------------------

_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)
_WORD = re.compile(r"\b[\w'’-]+\b")


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word.lower())}(?!\w)", text.lower()) is not None


def _rule_bullets(text: str, n: int) -> bool:
    return len(_BULLET.findall(text)) == int(n)


def _rule_json(text: str) -> bool:
    body = text.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, flags=re.DOTALL)
    try:
        json.loads(fence.group(1) if fence else body)
        return True
    except ValueError:
        return False


RULES: dict[str, Any] = {
    # type -> (check(text, **args), required args)
    "bullet_count": (lambda t, n: _rule_bullets(t, n), ("n",)),
    "include_words": (lambda t, words: all(_has_word(t, w) for w in words), ("words",)),
    "exclude_words": (lambda t, words: not any(_has_word(t, w) for w in words), ("words",)),
    "max_words": (lambda t, n: len(_words(t)) <= int(n), ("n",)),
    "min_words": (lambda t, n: len(_words(t)) >= int(n), ("n",)),
    "starts_with": (lambda t, text: t.strip().lower().startswith(str(text).lower()), ("text",)),
    "ends_with": (lambda t, text: t.strip().lower().endswith(str(text).lower()), ("text",)),
    "lowercase": (lambda t: t == t.lower() and any(c.isalpha() for c in t), ()),
    "uppercase": (lambda t: t == t.upper() and any(c.isalpha() for c in t), ()),
    "no_commas": (lambda t: "," not in t, ()),
    "json_format": (lambda t: _rule_json(t), ()),
    "paragraph_count": (lambda t, n: len([p for p in re.split(r"\n\s*\n", t.strip()) if p.strip()]) == int(n), ("n",)),
}


def check_rule(text: str, rule: Any) -> tuple[bool, Optional[str]]:
    """(passed, problem). A malformed or unknown rule fails with the reason instead of raising."""
    if not isinstance(rule, dict) or "type" not in rule:
        return False, f"rule {rule!r}: expected a mapping with a 'type'"
    kind = rule["type"]
    if kind not in RULES:
        return False, f"rule type {kind!r} unknown; known: {sorted(RULES)}"
    fn, required = RULES[kind]
    args = {k: v for k, v in rule.items() if k != "type"}
    missing = [k for k in required if k not in args]
    extra = [k for k in args if k not in required]
    if missing or extra:
        return False, f"rule {kind!r}: needs keys {list(required)}, got {sorted(args)}"
    try:
        return bool(fn(text or "", **args)), None
    except (TypeError, ValueError) as err:
        return False, f"rule {kind!r}: bad argument ({err})"


def summarize(task_results: dict[str, dict]) -> tuple[dict[str, float], Optional[float]]:
    """Category score = mean of its tasks' primary scores; overall = mean over categories."""
    cats: dict[str, list[float]] = {}
    for r in task_results.values():
        cats.setdefault(r["category"], []).append(r["score"])
    categories = {c: sum(v) / len(v) for c, v in cats.items()}
    overall = sum(categories.values()) / len(categories) if categories else None
    return categories, overall
