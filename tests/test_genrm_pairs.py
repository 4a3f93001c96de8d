"""FAP scores from log-probabilities and pair construction on hand-written per-prompt records."""

from __future__ import annotations

import math

import pytest

from findap_nemo.genrm.pairs import build_pairs, fap_score

PROMPT = [{"role": "user", "content": "Q?"}]


def _rec(pid, scores, texts=None, scp=()):
    texts = texts or [f"solution {i}" for i in range(len(scores))]
    samples = [{"text": t, "fap": s, "fap_status": "ok" if s is not None else "unparsable"}
               for t, s in zip(texts, scores)]
    return {"prompt_id": pid, "prompt": PROMPT, "reference": "1.5", "samples": samples, "scp": list(scp)}


def test_fap_score_normalises_over_yes_and_no():
    # two Yes spellings and one No spelling, as log-probabilities under the full softmax
    lps = [math.log(0.2), math.log(0.1), math.log(0.3)]
    score, mass = fap_score(lps, 2)
    assert score == pytest.approx(0.3 / 0.6) and mass == pytest.approx(0.6)
    assert fap_score(lps, 2, min_mass=0.7) == (None, pytest.approx(0.6))
    assert fap_score([-math.inf, -math.inf], 1) == (None, 0.0)
    tiny = fap_score([-1000.0, -1001.0], 1)  # far below float range: still exact in log space
    assert tiny[0] == pytest.approx(1 / (1 + math.exp(-1)))


def test_fap_pairs_best_vs_worst_margin_ties_and_filters():
    records = [
        _rec("a", [0.2, 0.9, 0.5]),  # pair: 1 (0.9) over 0 (0.2)
        _rec("b", [0.50, 0.52]),  # gap 0.02 < 0.1: tie
        _rec("c", [0.7, None, None]),  # one judged: too few
        _rec("d", [0.4, 0.4]),  # equal: tie
        _rec("e", [0.9, 0.1], texts=["same", "same"]),  # identical texts
        _rec("f", [0.3, 0.05]),  # best below min_chosen_score 0.25? no: 0.3 >= 0.25 -> pair
        _rec("g", [0.2, 0.01]),  # best 0.2 < 0.25: dropped
    ]
    pairs, counts = build_pairs(records, margin=0.1, min_chosen_score=0.25, scp_enabled=False,
                                models={"genrm_model": "/m/judge"})
    assert [p["meta"]["prompt_id"] for p in pairs] == ["a", "f"]
    a = pairs[0]
    assert a["prompt"] == PROMPT and a["chosen_response"] == "solution 1" and a["rejected_response"] == "solution 0"
    assert (a["chosen_reward"], a["rejected_reward"]) == (0.9, 0.2)
    assert a["meta"]["method"] == "fap" and a["meta"]["chosen_sample"] == 1 and a["meta"]["rejected_sample"] == 0
    assert a["meta"]["scores"] == [0.2, 0.9, 0.5] and a["meta"]["genrm_model"] == "/m/judge"
    assert counts == {"fap_pairs": 2, "fap_ties_dropped": 2, "fap_too_few_judged": 1, "fap_identical_dropped": 1,
                      "fap_below_min_chosen_dropped": 1}


def test_fap_tie_breaking_is_by_sample_order():
    pairs, _ = build_pairs([_rec("a", [0.9, 0.1, 0.9, 0.1])], margin=0.0, scp_enabled=False)
    assert pairs[0]["meta"]["chosen_sample"] == 0 and pairs[0]["meta"]["rejected_sample"] == 1
    none, counts = build_pairs([_rec("a", [0.5, 0.5])], margin=0.0, scp_enabled=False)
    assert none == [] and counts["fap_ties_dropped"] == 1


def test_scp_pairs_from_corrections():
    scp = [
        {"sample": 0, "status": "ok", "step": 2, "correction": "fixed", "chosen": "Step 1: x\nStep 2: fixed\nmore"},
        {"sample": 1, "status": "no_step_index", "critique": "??"},
        {"sample": 2, "status": "ok", "step": 1, "correction": "y", "chosen": "solution 2"},  # identical
        {"sample": 3, "status": "ok", "step": 1, "correction": "z", "chosen": "Step 1: z\n"},
    ]
    rec = _rec("a", [0.3, 0.1, 0.2, 0.05], texts=["Step 1: x\nStep 2: bad", "s1", "solution 2", "Step 1: w"],
               scp=scp)
    pairs, counts = build_pairs([rec], fap_enabled=False, scp_max_per_prompt=1)
    # lowest FAP score first: sample 3 (0.05), then sample 0 is over the cap
    assert len(pairs) == 1 and pairs[0]["meta"]["rejected_sample"] == 3
    assert counts == {"scp_pairs": 1, "scp_identical_dropped": 1, "scp_over_max_per_prompt_dropped": 1}
    pairs, counts = build_pairs([rec], fap_enabled=False)
    assert len(pairs) == 2
    p = next(p for p in pairs if p["meta"]["rejected_sample"] == 0)
    assert p["chosen_response"] == "Step 1: x\nStep 2: fixed\nmore" and p["rejected_response"] == "Step 1: x\nStep 2: bad"
    assert (p["chosen_reward"], p["rejected_reward"]) == (1.0, 0.0)
    assert p["meta"]["method"] == "scp" and p["meta"]["erroneous_step"] == 2
    assert p["meta"]["rejected_fap"] == 0.3
    # the shared prefix before the erroneous step
    assert p["chosen_response"].startswith("Step 1: x\n") and p["rejected_response"].startswith("Step 1: x\n")


def test_scp_rewards_are_fap_scores_when_both_judged():
    scp = [{"sample": 0, "status": "ok", "step": 1, "correction": "a", "chosen": "Step 1: a", "chosen_fap": 0.8},
           {"sample": 1, "status": "ok", "step": 1, "correction": "b", "chosen": "Step 1: b", "chosen_fap": 0.1},
           {"sample": 2, "status": "ok", "step": 1, "correction": "c", "chosen": "Step 1: c", "chosen_fap": None}]
    pairs, counts = build_pairs([_rec("a", [0.3, 0.2, 0.4], scp=scp)], fap_enabled=False)
    rewards = {p["meta"]["rejected_sample"]: (p["chosen_reward"], p["rejected_reward"]) for p in pairs}
    assert rewards == {0: (0.8, 0.3), 1: (0.1, 0.2), 2: (1.0, 0.0)}
    assert counts["scp_pairs"] == 3 and counts["scp_pairs_judged_not_better"] == 1
