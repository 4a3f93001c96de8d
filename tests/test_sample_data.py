"""The shipped sample data: regenerated exactly by its scripts, FinEval sets big enough to show an effect, and
the training data held out from them by entity and by template (the data stage's decontamination finds nothing)."""

from __future__ import annotations

import glob
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from findap_nemo.data.decontam import Decontaminator, eval_texts, words

REPO = Path(__file__).resolve().parents[1]


def _module(rel: str):
    spec = importlib.util.spec_from_file_location(rel.replace("/", "_")[:-3], REPO / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gens():
    return _module("samples/fineval/generate.py"), _module("samples/fintrain/generate.py")


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _training_texts() -> list[tuple[str, str]]:
    out = []
    for path in sorted(glob.glob(str(REPO / "samples/fintrain/*.jsonl"))):
        for row in _read(Path(path)):
            out.append((row["id"], json.dumps(row, ensure_ascii=False)))
    return out


def test_shipped_files_are_what_the_generators_write(gens):
    fineval, fintrain = gens
    for name, rows in fineval.build().items():
        assert _read(REPO / f"samples/fineval/{name}.jsonl") == rows, f"rerun samples/fineval/generate.py ({name})"
    for name, rows in fintrain.build().items():
        assert _read(REPO / f"samples/fintrain/{name}") == rows, f"rerun samples/fintrain/generate.py ({name})"
    assert fineval.build() == fineval.build()  # deterministic


def test_eval_sets_sizes_balance_and_distinct_items(gens):
    fineval, _ = gens
    sets = fineval.build()
    for name in ("fpb_sentiment", "headline", "fomc", "fin_ner"):
        assert len(sets[name]) >= 200, name
    for name in ("arc_easy", "nq_open", "mmlu_finance", "cfa_easy"):
        assert len(sets[name]) >= 150, name
    assert len(sets["instruction_following"]) >= 100
    for name, labels in (("fpb_sentiment", 3), ("fomc", 3), ("headline", 2)):
        counts = Counter(r["answer"] for r in sets[name])
        assert len(counts) == labels and max(counts.values()) - min(counts.values()) <= 1, (name, counts)
    for name, rows in sets.items():  # a repeated item would count twice in the bootstrap
        keys = [json.dumps({k: v for k, v in r.items() if k not in ("id", "answer", "gold", "rules")},
                           sort_keys=True) for r in rows]
        assert len(set(keys)) == len(keys), name
        assert len({r["id"] for r in rows}) == len(rows), name


def test_eval_and_training_entities_and_templates_are_disjoint(gens):
    fineval, fintrain = gens
    ev, tr = fineval.entity_names(), fintrain.entity_names()
    for kind in ev:
        assert not set(ev[kind]) & set(tr.get(kind, [])), kind
    # no evaluation company, person or place occurs anywhere in the training data (as a word sequence)
    train_words = [" " + " ".join(words(t)) + " " for _, t in _training_texts()]
    for kind in ("companies", "people", "places"):
        for name in ev[kind]:
            needle = " " + " ".join(words(name)) + " "
            hits = [i for i, t in enumerate(train_words) if needle in t]
            assert not hits, f"eval {kind} {name!r} appears in {len(hits)} training documents"
    # and the reverse: the training entities are unseen by the evaluation sets
    eval_words = [" " + " ".join(words(t)) + " " for _, t in eval_texts([str(REPO / "samples/fineval/*.jsonl")])]
    for kind in ("companies", "people", "places"):
        for name in tr[kind]:
            needle = " " + " ".join(words(name)) + " "
            assert not any(needle in t for t in eval_words), f"training {kind} {name!r} appears in an eval set"
    # templates: not even an 8-word sequence is shared between any evaluation item and any training document
    dec = Decontaminator(eval_texts([str(REPO / "samples/fineval/*.jsonl")]), n=8)
    shared = [doc_id for doc_id, text in _training_texts() if dec.contaminated(text)]
    assert shared == []


def test_decontamination_check_can_fail(gens):
    """The overlap check above is live: a training document quoting one eval item is caught at 13 words."""
    dec = Decontaminator(eval_texts([str(REPO / "samples/fineval/*.jsonl")]), n=13)
    fomc = _read(REPO / "samples/fineval/fomc.jsonl")
    long_item = next(r["text"] for r in fomc if len(words(r["text"])) >= 13)
    assert dec.contaminated(f"Market wrap. {long_item} Stocks closed higher.")
    assert not dec.contaminated(_training_texts()[0][1])


def test_training_data_has_every_similar_task_type_in_eval_answer_formats(gens):
    _, fintrain = gens
    rows = _read(REPO / "samples/fintrain/finance_it.jsonl")
    asks = {"sentiment": fintrain.SENTIMENT_ASKS, "stance": fintrain.POLICY_ASKS, "ner": fintrain.ENTITY_ASKS,
            "headline": [a for v in fintrain.COMMODITY_ASKS.values() for a in v]}
    counts = Counter()
    for r in rows:
        user = next(m["content"] for m in r["messages"] if m["role"] == "user")
        answer = r["messages"][-1]["content"]
        kind = next((k for k, v in asks.items() if any(a in user for a in v)), "other")
        counts[kind] += 1
        if kind == "sentiment":
            assert answer in ("positive", "negative", "neutral")
        elif kind == "stance":
            assert answer in ("hawkish", "dovish", "neutral")
        elif kind == "headline":
            assert answer in ("Yes", "No")
        elif kind == "ner":  # the eval scorer's "name, TYPE" lines
            assert all(line.rsplit(", ", 1)[1] in ("PER", "ORG", "LOC") for line in answer.splitlines()), answer
        elif "[[" in answer:
            counts["reasoning"] += 1
            assert answer.endswith(("[[A]].", "[[B]].", "[[C]]."))
    for kind in ("sentiment", "stance", "headline", "ner", "reasoning"):
        assert counts[kind] >= 200, counts
    total = sum(p.stat().st_size for p in (REPO / "samples/fintrain").glob("*.jsonl"))
    assert total < 5_000_000
