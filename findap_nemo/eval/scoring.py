"""Per-example scoring for every task type, and the per-task aggregate.

Each example ends in exactly one status: ``correct``, ``wrong``, ``scored`` (summaries: graded by ROUGE),
``unparsed`` (the model's answer could not be
read) or ``invalid_input`` (bad JSON, a missing field, a gold label outside the task's labels, options that are
not a list). All four are in the denominator; the last two are counted in the task's results.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from findap_nemo.eval import metrics as M
from findap_nemo.eval.extract import (choice_letters, extract_choice, extract_entities, extract_label,
                                      extract_number, gold_entities, normalize, parse_number, strip_articles)
from findap_nemo.eval.prompts import ExampleError, build_messages, choice_texts, example_id
from findap_nemo.eval.registry import ERROR_KEY, LINE_KEY, TaskSpec

STATUSES = ("correct", "wrong", "scored", "unparsed", "invalid_input")  # scored: graded, not right/wrong


@dataclass
class Prepared:
    """An example ready for the model, or marked invalid (then the model is not asked)."""

    index: int
    id: str
    line: Optional[int]
    messages: Optional[list[dict]] = None
    gold: Any = None
    choices: list[str] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def letters(self) -> list[str]:
        return choice_letters(len(self.choices))


def _gold(task: TaskSpec, ex: dict, choices: list[str]) -> Any:
    if task.type == "multiple_choice":
        letters = choice_letters(len(choices))
        if task.gold_field and task.gold_field in ex:
            g = ex[task.gold_field]
            if isinstance(g, int) and not isinstance(g, bool) and 0 <= g < len(choices):
                return letters[g]
            raise ExampleError(f"field {task.gold_field!r}={g!r}: expected an option index 0..{len(choices) - 1}")
    if task.type == "instruction":
        if task.rules_field not in ex or not isinstance(ex[task.rules_field], list) or not ex[task.rules_field]:
            raise ExampleError(f"field {task.rules_field!r}: expected a non-empty list of rules")
        return ex[task.rules_field]
    if task.answer_field not in ex or ex[task.answer_field] is None:
        raise ExampleError(f"missing field {task.answer_field!r} (the gold answer)")
    raw = ex[task.answer_field]
    if task.type == "classification":
        label, how = extract_label(str(raw), task.labels, task.label_aliases)
        if how not in ("exact",):
            raise ExampleError(f"gold label {raw!r} is not one of the task's labels {task.labels}")
        return label
    if task.type == "multiple_choice":
        letters = choice_letters(len(choices))
        if isinstance(raw, int) and not isinstance(raw, bool):  # MMLU-style 0-based index
            if 0 <= raw < len(choices):
                return letters[raw]
            raise ExampleError(f"gold answer index {raw} is outside 0..{len(choices) - 1}")
        letter, _ = extract_choice(str(raw), letters, choices)
        if letter is None:
            raise ExampleError(f"gold answer {raw!r} names none of the options {letters}")
        return letter
    if task.type == "numeric":
        value = parse_number(str(raw))
        if value[0] is None:
            raise ExampleError(f"gold answer {raw!r} is not a number")
        return value
    if task.type == "ner":
        ents = gold_entities(raw, task.entity_types)
        if ents is None:
            raise ExampleError(f"gold entities {raw!r}: expected [{{text, type}}] with types in "
                               f"{sorted(set(task.entity_types.values()))}")
        return ents
    if task.type == "summarization":
        if not isinstance(raw, str) or not raw.strip():
            raise ExampleError(f"field {task.answer_field!r} must hold the reference summary text")
        return raw
    if task.type == "exact_match":
        answers = raw if isinstance(raw, list) else [raw]
        if task.aliases_field and isinstance(ex.get(task.aliases_field), list):
            answers = answers + ex[task.aliases_field]
        answers = [str(a) for a in answers if str(a).strip()]
        if not answers:
            raise ExampleError(f"field {task.answer_field!r} holds no answer")
        return answers
    raise ExampleError(f"unknown task type {task.type!r}")


def prepare(task: TaskSpec, ex: dict, index: int, shots: list[dict]) -> Prepared:
    prep = Prepared(index=index, id=example_id(task, ex, index) if ERROR_KEY not in ex else f"{task.name}-{index}",
                    line=ex.get(LINE_KEY))
    try:
        if ERROR_KEY in ex:
            raise ExampleError(ex[ERROR_KEY])
        if task.type == "multiple_choice":
            prep.choices = choice_texts(task, ex)
        prep.gold = _gold(task, ex, prep.choices)
        prep.messages = build_messages(task, ex, shots)
    except ExampleError as err:
        prep.error = str(err)
        prep.messages = None
    return prep


def _record(prep: Prepared, status: str, **extra) -> dict:
    gold = prep.gold
    if isinstance(gold, tuple):  # numbers are (value, is_percent)
        gold = gold[0]
    rec = {"id": prep.id, "index": prep.index, "line": prep.line, "status": status,
           "correct": status == "correct", "gold": gold}
    if prep.error:
        rec["error"] = prep.error
    rec.update(extra)
    return rec


def invalid_record(prep: Prepared) -> dict:
    return _record(prep, "invalid_input")


def score_generation(task: TaskSpec, prep: Prepared, output: str) -> dict:
    """Score one generated answer against the gold."""
    if task.type == "classification":
        pred, how = extract_label(output, task.labels, task.label_aliases)
        status = "unparsed" if pred is None else ("correct" if pred == prep.gold else "wrong")
        return _record(prep, status, pred=pred, extraction=how, output=output)
    if task.type == "multiple_choice":
        pred, how = extract_choice(output, prep.letters, prep.choices, task.bracket_only)
        status = "unparsed" if pred is None else ("correct" if pred == prep.gold else "wrong")
        return _record(prep, status, pred=pred, extraction=how, output=output)
    if task.type == "numeric":
        pred, how = extract_number(output)
        if pred is None:
            return _record(prep, "unparsed", pred=None, extraction=how, output=output)
        ok = M.numbers_match(pred, prep.gold, task.abs_tol, task.rel_tol, task.percent_equivalent)
        return _record(prep, "correct" if ok else "wrong", pred=pred[0], extraction=how, output=output)
    if task.type == "ner":
        ents, bad = extract_entities(output, task.entity_types)
        status = "unparsed" if not ents and bad else (
            "correct" if sorted(ents) == sorted(prep.gold) else "wrong")
        return _record(prep, status, pred=[list(e) for e in ents], unreadable_parts=bad, output=output,
                       gold_entities=[list(e) for e in prep.gold])
    if task.type == "exact_match":
        golds = {strip_articles(a) for a in prep.gold} - {""}
        if task.match == "contains":
            text = f" {strip_articles(output)} "
            hit = any(f" {g} " in text for g in golds)
        else:
            cands = {strip_articles(output), strip_articles(output.strip().splitlines()[0] if output.strip() else "")}
            hit = bool(cands & golds)
        status = "correct" if hit else ("unparsed" if not normalize(output) else "wrong")
        return _record(prep, status, pred=output.strip(), output=output)
    if task.type == "summarization":
        if not output.strip():
            return _record(prep, "unparsed", rouge={k: 0.0 for k in ("rouge1", "rouge2", "rougeL")}, output=output)
        scores = M.rouge(output.strip(), prep.gold)
        return _record(prep, "scored", rouge={k: round(v, 6) for k, v in scores.items()}, output=output)
    if task.type == "instruction":
        checks = []
        for rule in prep.gold:
            ok, problem = M.check_rule(output, rule)
            checks.append({"rule": rule, "passed": ok, **({"problem": problem} if problem else {})})
        status = "correct" if all(c["passed"] for c in checks) else "wrong"
        return _record(prep, status, rules=checks, output=output)
    raise ValueError(task.type)


def loglik_score(logprob: float, num_tokens: int, text: str, normalize: str) -> float:
    """One option's score: summed log-prob, or divided by its tokens / characters (lm-eval acc_norm) / bytes."""
    if num_tokens == 0:  # an option that tokenizes to nothing (empty text) cannot be scored and never wins
        return -math.inf
    length = {"none": 1, "per_token": num_tokens, "per_char": len(text),
              "per_byte": len(text.encode("utf-8"))}[normalize]
    return logprob / max(length, 1)


def score_loglik(task: TaskSpec, prep: Prepared, results: list) -> dict:
    """Multiple choice by log-likelihood: the option with the highest (optionally length-normalised) score."""
    texts = prep.letters if task.loglik_target == "letter" else prep.choices
    scores = [loglik_score(r.logprob, r.num_tokens, t, task.loglik_normalize) for r, t in zip(results, texts)]
    if any(math.isnan(s) for s in scores) or all(s == -math.inf for s in scores):
        return _record(prep, "unparsed", pred=None, option_scores=[str(s) for s in scores])
    best = max(range(len(scores)), key=lambda i: scores[i])
    pred = prep.letters[best]
    return _record(prep, "correct" if pred == prep.gold else "wrong", pred=pred,
                   option_scores=[round(s, 6) if math.isfinite(s) else None for s in scores])


def aggregate(task: TaskSpec, records: list[dict]) -> dict:
    """Task metrics and status counts over all records (every example counts)."""
    n = len(records)
    counts = {s: sum(1 for r in records if r["status"] == s) for s in STATUSES}
    out: dict[str, Any] = {}
    correct = [r["correct"] for r in records]
    if task.type == "classification":
        gold = [r["gold"] if r["status"] != "invalid_input" else None for r in records]
        pred = [r.get("pred") for r in records]
        out = {"accuracy": M.accuracy(correct), "macro_f1": M.macro_f1(gold, pred)}
    elif task.type in ("multiple_choice", "numeric"):
        out = {"accuracy": M.accuracy(correct)}
    elif task.type == "exact_match":
        out = {"exact_match": M.accuracy(correct)}
    elif task.type == "summarization":  # invalid and empty answers score 0
        out = {k: (sum((r.get("rouge") or {}).get(k, 0.0) for r in records) / n if n else 0.0)
               for k in ("rouge1", "rouge2", "rougeL")}
    elif task.type == "ner":
        gold, pred = [], []
        for r in records:
            if r["status"] == "invalid_input":  # unknown gold: one entity counted as missed
                gold.append([("<invalid example>", "INVALID")])
                pred.append([])
            else:
                gold.append([tuple(e) for e in r["gold_entities"]])
                pred.append([tuple(e) for e in r["pred"]])
        out = M.entity_prf(gold, pred)
    elif task.type == "instruction":
        passed = total = 0
        for r in records:
            rules = r.get("rules") or [{"passed": False}]  # an invalid example is one failed rule
            total += len(rules)
            passed += sum(1 for c in rules if c["passed"])
        out = {"prompt_accuracy": M.accuracy(correct), "rule_accuracy": passed / total if total else 0.0}
    metrics = {k: out[k] for k in task.metric_names}
    result = {"n": n, "metrics": metrics, "score": metrics[task.primary], "primary_metric": task.primary,
              "counts": counts}
    read_by = Counter(r["extraction"] for r in records if r.get("extraction"))
    if read_by:  # how the answers were read (multiple choice, numeric, classification): the unparsed are visible
        result["extraction"] = dict(sorted(read_by.items()))
    if task.type == "numeric":
        result["rule"] = M.numeric_rule(task.abs_tol, task.rel_tol, task.percent_equivalent)
    return result
