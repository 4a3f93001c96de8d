"""Preference pairs from judged samples, in NeMo-Aligner's DPO JSONL format (what `findap-nemo dpo` reads).

Pure functions over the per-prompt records of progress.jsonl, so pair rules are testable on hand-written records
and a resumed run rebuilds every pair from everything judged so far.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Optional


def fap_score(logprobs: list[float], num_yes: int, min_mass: float = 0.0) -> tuple[Optional[float], float]:
    """P(Yes) normalised over Yes/No from next-token log-probabilities (the first ``num_yes`` are Yes spellings).

    Returns (score, mass) where mass = P(Yes) + P(No) under the full softmax; score is None (unparsable) when the
    mass is below ``min_mass`` or underflows to zero.
    """
    yes = _logsumexp(logprobs[:num_yes])
    no = _logsumexp(logprobs[num_yes:])
    both = _logsumexp([yes, no])
    mass = math.exp(both) if both > -math.inf else 0.0
    if both == -math.inf or mass < min_mass:
        return None, mass
    return math.exp(yes - both), mass


def _logsumexp(xs: list[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(x - m) for x in xs))


def build_pairs(records: list[dict], *, fap_enabled: bool = True, margin: float = 0.1, min_chosen_score: float = 0.0,
                scp_enabled: bool = True, scp_max_per_prompt: Optional[int] = None,
                models: Optional[dict] = None) -> tuple[list[dict], Counter]:
    """FAP: best vs worst judged sample per prompt when their scores differ by >= margin (ties dropped and
    counted); SCP: (corrected solution, original solution) for every parsed correction, rewarded with both FAP
    scores when both were judged, else 1.0 / 0.0."""
    pairs: list[dict] = []
    counts: Counter = Counter()
    models = models or {}
    for rec in records:
        samples = rec["samples"]
        if fap_enabled:
            judged = [(i, s) for i, s in enumerate(samples) if s.get("fap") is not None]
            if len(judged) < 2:
                counts["fap_too_few_judged"] += 1
            else:
                best = max(judged, key=lambda t: (t[1]["fap"], -t[0]))
                worst = min(judged, key=lambda t: (t[1]["fap"], t[0]))
                gap = best[1]["fap"] - worst[1]["fap"]
                if gap <= 0 or gap < margin:  # equal scores are a tie even at margin 0
                    counts["fap_ties_dropped"] += 1
                elif best[1]["fap"] < min_chosen_score:
                    counts["fap_below_min_chosen_dropped"] += 1
                elif best[1]["text"] == worst[1]["text"]:
                    counts["fap_identical_dropped"] += 1
                else:
                    pairs.append(_pair(rec, best[1]["text"], worst[1]["text"], best[1]["fap"], worst[1]["fap"], {
                        "method": "fap", "chosen_sample": best[0], "rejected_sample": worst[0],
                        "scores": [s.get("fap") for s in samples], "margin": gap}, models))
                    counts["fap_pairs"] += 1
        if scp_enabled:
            made = 0
            for c in sorted(rec.get("scp", []), key=lambda c: (samples[c["sample"]].get("fap") or 0.0, c["sample"])):
                if c.get("status") != "ok":
                    continue
                rejected = samples[c["sample"]]["text"]
                if c["chosen"] == rejected:
                    counts["scp_identical_dropped"] += 1
                    continue
                if scp_max_per_prompt is not None and made >= scp_max_per_prompt:
                    counts["scp_over_max_per_prompt_dropped"] += 1
                    continue
                chosen_fap, rejected_fap = c.get("chosen_fap"), samples[c["sample"]].get("fap")
                judged = chosen_fap is not None and rejected_fap is not None
                if judged and chosen_fap <= rejected_fap:
                    counts["scp_pairs_judged_not_better"] += 1  # kept: the correction is the signal; reported
                rewards = (chosen_fap, rejected_fap) if judged else (1.0, 0.0)
                pairs.append(_pair(rec, c["chosen"], rejected, *rewards, {
                    "method": "scp", "chosen_sample": None, "rejected_sample": c["sample"],
                    "erroneous_step": c["step"], "correction": c["correction"],
                    "chosen_fap": chosen_fap, "rejected_fap": rejected_fap}, models))
                made += 1
                counts["scp_pairs"] += 1
    return pairs, counts


def _pair(rec: dict, chosen: str, rejected: str, chosen_reward: float, rejected_reward: float, meta: dict,
          models: dict) -> dict:
    return {"prompt": rec["prompt"], "chosen_response": chosen, "rejected_response": rejected,
            "chosen_reward": float(chosen_reward), "rejected_reward": float(rejected_reward),
            "meta": {"prompt_id": rec["prompt_id"], **meta, "reference": rec.get("reference"), **models}}
