"""FinEval metrics and answer extraction against hand-computed values, on good and malformed outputs."""

from __future__ import annotations

import re

import numpy as np
import pytest

from findap_nemo.eval import metrics as M
from findap_nemo.eval.extract import (extract_choice, extract_entities, extract_label, extract_number, normalize,
                                      parse_number)

TYPES = {"person": "PER", "organization": "ORG", "location": "LOC"}


def test_accuracy_and_macro_f1_hand_computed():
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", None, "c"]  # None: an answer that could not be parsed
    assert M.accuracy([g == p for g, p in zip(gold, pred)]) == pytest.approx(3 / 5)
    # a: tp1 fp0 fn1 -> 2/3; b: tp1 fp1 fn1 -> 1/2; c: tp1 -> 1
    assert M.macro_f1(gold, pred) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # an unknown gold label (None) can never be hit; its prediction is a false positive for "c"
    assert M.macro_f1(["a", None], ["a", "c"]) == pytest.approx((1.0 + 0.0) / 2)
    assert M.accuracy([]) == 0.0


def test_entity_f1_hand_computed():
    gold = [[("jane fraser", "PER"), ("citigroup", "ORG")], [("new york", "LOC")]]
    pred = [[("jane fraser", "PER"), ("citigroup", "LOC")], []]
    r = M.entity_prf(gold, pred)  # tp 1, fp 1, fn 2
    assert r["entity_precision"] == pytest.approx(0.5)
    assert r["entity_recall"] == pytest.approx(1 / 3)
    assert r["entity_f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    # duplicates are matched as a multiset: predicting an entity twice is one hit and one false positive
    r = M.entity_prf([[("x", "ORG")]], [[("x", "ORG"), ("x", "ORG")]])
    assert (r["entity_precision"], r["entity_recall"]) == (0.5, 1.0)


def test_numeric_tolerance_and_percent():
    assert M.numbers_match((150.2, False), (150.20000000000005, False), abs_tol=0.01, rel_tol=0.0)
    assert M.numbers_match((125.3, False), (125.33, False), abs_tol=0.0, rel_tol=0.01)
    assert not M.numbers_match((130.0, False), (125.33, False), abs_tol=0.0, rel_tol=0.01)
    assert M.numbers_match((20.0, True), (0.2, False), abs_tol=1e-6, rel_tol=0.0)  # "20%" vs 0.2
    assert not M.numbers_match((20.0, True), (0.2, False), abs_tol=1e-6, rel_tol=0.0, percent_equivalent=False)
    assert not M.numbers_match((-20.0, True), (20.0, True), abs_tol=0.01, rel_tol=0.01)
    assert M.numbers_match((0.2, False), (20.0, True), abs_tol=1e-6, rel_tol=0.0)  # 0.2 vs gold "20%"


@pytest.mark.parametrize("pred,gold,ok", [
    ((500.0, False), (5.0, False), False),  # neither is a percentage: no x100 equivalence
    ((0.05, False), (5.0, False), False),
    ((500.0, True), (5.0, True), False),  # both percentages: values compared as they are
    ((5.0, True), (5.0, True), True),
    ((5.0, True), (0.05, False), True),  # exactly one percentage: 5% = 0.05
    ((0.05, False), (5.0, True), True),
    ((500.0, False), (5.0, True), False),  # 500 is not 5%
    ((1.2e6, False), (1.2, False), False),  # "$1.2 million" is not 1.2
    ((-4.5, True), (4.5, True), False),  # "(4.5%)" is negative
])
def test_percent_equivalence_only_when_one_side_is_a_percentage(pred, gold, ok):
    assert M.numbers_match(pred, gold, abs_tol=1e-6, rel_tol=0.001) is ok


def test_numeric_rule_is_reported():
    rule = M.numeric_rule(0.01, 0.01, True)
    assert "max(0.01, 0.01 * |gold|)" in rule and "exactly one side is a percentage" in rule
    task = _task(type="numeric", abs_tol=0.5, rel_tol=0.0, percent_equivalent=False)
    from findap_nemo.eval.scoring import aggregate, prepare, score_generation

    prep = prepare(task, {"text": "q", "answer": "$1.2 million"}, 0, [])
    recs = [score_generation(task, prep, "Answer: 1,200,000"), score_generation(task, prep, "Answer: 1.2"),
            score_generation(task, prep, "no idea")]
    assert [r["status"] for r in recs] == ["correct", "wrong", "unparsed"]
    agg = aggregate(task, recs)
    assert agg["rule"] == "|pred - gold| <= max(0.5, 0 * |gold|); scale words (thousand, million, bn, k, m ...) " \
                          "applied to the value"
    assert agg["extraction"] == {"answer_is": 2, "none": 1}


def test_instruction_rules():
    three = "- liquidity\n- duration\n* credit risk"
    assert M.check_rule(three, {"type": "bullet_count", "n": 3}) == (True, None)
    assert M.check_rule(three, {"type": "bullet_count", "n": 4})[0] is False
    assert M.check_rule("Prices rise.", {"type": "include_words", "words": ["prices"]})[0]
    assert not M.check_rule("Priceless.", {"type": "include_words", "words": ["price"]})[0]  # whole words only
    assert M.check_rule("one two three", {"type": "max_words", "n": 3})[0]
    assert not M.check_rule("one two three four", {"type": "max_words", "n": 3})[0]
    assert M.check_rule('```json\n{"ticker": "ABC", "price": 1}\n```', {"type": "json_format"})[0]
    assert not M.check_rule("{ticker: ABC}", {"type": "json_format"})[0]
    assert M.check_rule("a.\n\nb.", {"type": "paragraph_count", "n": 2})[0]
    assert M.check_rule("all lower case", {"type": "lowercase"})[0]
    assert M.check_rule("Liquidity is...", {"type": "starts_with", "text": "liquidity"})[0]
    # malformed rules fail with a reason instead of raising
    ok, why = M.check_rule("x", {"type": "rhyme"})
    assert not ok and "unknown" in why
    ok, why = M.check_rule("x", {"type": "max_words"})
    assert not ok and "needs keys" in why
    ok, why = M.check_rule("x", "max 3 words")
    assert not ok and "mapping" in why


@pytest.mark.parametrize("output,expected,how", [
    ("Thinking... the duration is longest. [[B]]", "B", "bracket"),
    ("first [[A]] then I changed my mind: [[ c ]]", "C", "bracket"),  # last wins; a lone letter of either case
    ("[[Option B]]", "B", "bracket"),
    ("So the real rate is [[B) 3.0%]]", "B", "bracket"),
    ("[[b]]", "B", "bracket"),
    ("[[(C)]] is my pick", "C", "bracket"),
    ("[[Choice: A]]", "A", "bracket"),
    ("[[longest maturity and lowest coupon]]", "B", "bracket"),  # an option's text in the brackets
    ("[[A]] ... on reflection [[X]] [[maybe]]", "A", "bracket"),  # brackets naming nothing are skipped
    ("The answer is (b) because ...", "B", "answer_is"),
    ("Answer: A", "A", "answer_is"),
    ("**Answer:** C", "C", "answer_is"),
    ("the answer is a decline in rates, which is option C", "C", "option_named"),  # lowercase "a" is no choice
    ("The answer is C. Option B is wrong because ...", "C", "answer_is"),  # an answer phrase beats a mention
    ("Option A ignores coupons; option B fits.", "B", "option_named"),
    ("The correct option is A because duration is longest", "A", "answer_is"),
    ("I think B is right. Final answer: C.", "C", "answer_is"),
    ("C. increase the variability", "C", "leading_letter"),
    ("(A) conflicts of interest", "A", "leading_letter"),
    ("B because the coupon is lowest", "B", "leading_letter"),
    ("A. shortest maturity\nB. longest maturity and lowest coupon\nC. shortest", None, "none"),  # options echoed
    ("A. 0.67\nB. 1.50", None, "none"),
    ("A. 0.67\nB. 1.50\nThe answer is B.", "B", "answer_is"),
    ("B. longest maturity and lowest coupon\nThis has the highest duration.", "B", "leading_letter"),
    ("longest maturity and lowest coupon", "B", "option_text"),
    ("A decline in rates raises bond prices.", None, "none"),  # the article, not option A
    ("The answer is A decline in rates.", None, "none"),
    ("a", None, "none"),  # a lowercase word never
    ("answer is c", None, "none"),
    ("I am not sure.", None, "none"),  # "I" is a pronoun, and not an option here
    ("[[D]]", None, "none"),             # not one of the options
    ("", None, "empty"),
    ("\u001b year\ufffd?\ufffd", None, "none"),  # garbage
    ("Because bonds are complicated", None, "none"),  # a word starting with a letter is not a selection
])
def test_extract_choice(output, expected, how):
    choices = ["shortest maturity", "longest maturity and lowest coupon", "shortest maturity and lowest coupon"]
    assert extract_choice(output, ["A", "B", "C"], choices) == (expected, how)


def test_extract_choice_bracket_only():
    assert extract_choice("Answer: A", ["A", "B"], bracket_only=True) == (None, "no_bracket")
    assert extract_choice("so [[B]].", ["A", "B"], bracket_only=True) == ("B", "bracket")
    assert extract_choice("so [[Option B]].", ["A", "B"], bracket_only=True) == ("B", "bracket")


def test_extract_label():
    labels = ["positive", "negative", "neutral"]
    assert extract_label("Positive.", labels) == ("positive", "exact")
    assert extract_label("The sentiment is negative, not positive", labels) == ("negative", "first_mention")
    assert extract_label("bullish", labels) == (None, "none")
    assert extract_label("", labels) == (None, "empty")
    assert extract_label("pos", labels, {"pos": "positive"}) == ("positive", "exact")
    assert extract_label("nonnegative", labels) == (None, "none")  # whole words only


def test_extract_number():
    assert extract_number("Revenue grew. Answer: $1,234.5 million") == ((1234.5e6, False, "million"), "answer_is")
    assert extract_number("The change is (3.2)") == ((-3.2, False, ""), "last_number")
    assert extract_number("2019 and 2020 differ by −20%") == ((-20.0, True, ""), "last_number")
    assert extract_number("values are 3 and 5, so the answer is 8.") == ((8.0, False, ""), "answer_is")
    assert extract_number("no figure here") == (None, "none")
    assert extract_number("") == (None, "empty")
    assert parse_number("0.4") == (0.4, False, "")
    assert parse_number("12%") == (12.0, True, "")


@pytest.mark.parametrize("text,value,percent", [
    ("$1.2 million", 1.2e6, False),
    ("1.2 Million dollars", 1.2e6, False),
    ("$4bn", 4e9, False),
    ("4.5 billion", 4.5e9, False),
    ("2.5k", 2500.0, False),
    ("$3.1M", 3.1e6, False),
    ("7 thousand", 7000.0, False),
    ("(4.5%)", -4.5, True),  # accounting negative around a percentage
    ("(4.5)%", -4.5, True),
    ("($1,200)", -1200.0, False),
    ("-$3.2", -3.2, False),
    ("$-3.2", -3.2, False),
    ("1.2e3", 1200.0, False),
    ("3.5E-2", 0.035, False),
    ("12 percent", 12.0, True),
    ("12 months", 12.0, False),  # units kept apart: "m" of months is no scale
    ("5 km", 5.0, False),
    ("3 mb", 3.0, False),
    ("2019 M&A deals", 2019.0, False),
    ("4.2 USD", 4.2, False),
    ("1.5x", 1.5, False),
])
def test_parse_number_scales_negatives_exponents(text, value, percent):
    got = parse_number(text)
    assert got.value == pytest.approx(value) and got.percent == percent


def test_extract_entities_good_and_malformed():
    out = "Jane Fraser, PER\nCitigroup (organization)\nNew York is a location\nthis line is not an entity\nX, MONEY"
    ents, bad = extract_entities(out, TYPES)
    assert ents == [("jane fraser", "PER"), ("citigroup", "ORG"), ("new york", "LOC")]
    assert bad == 2
    assert extract_entities("none", TYPES) == ([], 0)
    assert extract_entities("", TYPES) == ([], 0)


def test_normalize_ignores_case_and_punctuation():
    assert normalize("  The U.S. Federal-Reserve! ") == "the u s federal reserve"


def test_rouge_and_summary_aggregate_hand_computed():
    from findap_nemo.eval.registry import task_from_dict
    from findap_nemo.eval.scoring import aggregate, prepare, score_generation

    # 6 reference words, 6 predicted, 5 shared unigrams; bigrams: "the cat", "on the", "the mat" of 5 each
    r = M.rouge("the cat was on the mat", "the cat sat on the mat")
    assert r["rouge1"] == pytest.approx(5 / 6)
    assert r["rouge2"] == pytest.approx(3 / 5)
    assert r["rougeL"] == pytest.approx(5 / 6)
    task = task_from_dict({"name": "s", "category": "unseen_similar", "type": "summarization",
                           "source": {"path": "x.jsonl"}, "prompt": "{{ text }}"}, "test")
    good = prepare(task, {"text": "t", "answer": "the cat sat on the mat"}, 0, [])
    bad = prepare(task, {"text": "t"}, 1, [])  # no reference: invalid, scores 0
    recs = [score_generation(task, good, "the cat was on the mat"), {"status": "invalid_input", "correct": False}]
    assert bad.error and recs[0]["status"] == "scored"
    agg = aggregate(task, recs)
    assert agg["score"] == pytest.approx((5 / 6) / 2) and agg["counts"]["invalid_input"] == 1


def _task(**kw):
    from findap_nemo.eval.registry import task_from_dict

    base = {"name": "t", "category": "reasoning", "source": {"path": "x.jsonl"}, "prompt": "{{ text }}"}
    return task_from_dict({**base, **kw}, "test")


@pytest.mark.parametrize("spec,example,output,status", [
    ({"type": "numeric"}, {"text": "q", "answer": "20%"}, "It grew from 70 to 84, so the answer is 0.2", "correct"),
    ({"type": "numeric"}, {"text": "q", "answer": "6"}, "Answer: 6.5", "wrong"),
    ({"type": "numeric"}, {"text": "q", "answer": "6"}, "I cannot tell.", "unparsed"),
    ({"type": "numeric"}, {"text": "q", "answer": "n/a"}, "6", "invalid_input"),
    ({"type": "classification", "labels": ["good", "bad"]}, {"text": "q", "answer": "bad"}, "Bad.", "correct"),
    ({"type": "classification", "labels": ["good", "bad"]}, {"text": "q", "answer": "bad"}, "risky", "unparsed"),
    ({"type": "classification", "labels": ["good", "bad"]}, {"text": "q", "answer": "ugly"}, "bad", "invalid_input"),
    ({"type": "ner", "entity_types": {"org": "ORG"}}, {"text": "q", "answer": [["Citi", "ORG"]]}, "Citi, ORG",
     "correct"),
    ({"type": "ner", "entity_types": {"org": "ORG"}}, {"text": "q", "answer": [["Citi", "ORG"]]}, "lorem ipsum",
     "unparsed"),
    ({"type": "ner", "entity_types": {"org": "ORG"}}, {"text": "q", "answer": [["Citi", "BANK"]]}, "Citi, ORG",
     "invalid_input"),
    ({"type": "exact_match"}, {"text": "q", "answer": ["Adam Smith"], }, "adam smith.", "correct"),
    ({"type": "exact_match"}, {"text": "q", "answer": "Au"}, "\n", "unparsed"),
    ({"type": "multiple_choice", "bracket_only": True}, {"text": "q", "choices": ["x", "y"], "answer": "B"},
     "final: [[B]]", "correct"),
    ({"type": "multiple_choice"}, {"text": "q", "choices": ["x", "y"], "answer": "Z"}, "[[A]]", "invalid_input"),
    ({"type": "multiple_choice"}, {"text": "q", "answer": "A"}, "[[A]]", "invalid_input"),  # no choices
    ({"type": "instruction"}, {"text": "q", "rules": [{"type": "max_words", "n": 2}]}, "two words", "correct"),
    ({"type": "instruction"}, {"text": "q", "rules": []}, "anything", "invalid_input"),
    ({"type": "classification", "labels": ["good", "bad"]}, {"answer": "bad"}, "bad", "invalid_input"),  # no text
])
def test_scoring_statuses(spec, example, output, status):
    from findap_nemo.eval.scoring import invalid_record, prepare, score_generation

    task = _task(**spec)
    prep = prepare(task, example, 0, [])
    rec = invalid_record(prep) if prep.error else score_generation(task, prep, output)
    assert rec["status"] == status, rec
    assert rec["correct"] == (status == "correct")
    if status == "invalid_input":
        assert rec["error"]


def test_loglik_empty_option_never_wins():
    from findap_nemo.inference.base import LoglikResult
    from findap_nemo.eval.scoring import prepare, score_loglik

    task = _task(type="multiple_choice", mc_method="loglik", loglik_target="text", loglik_normalize=True)
    prep = prepare(task, {"text": "q", "choices": ["", "yes", "no"], "answer": "C"}, 0, [])
    rec = score_loglik(task, prep, [LoglikResult(0.0, 0, True), LoglikResult(-6.0, 3, False),
                                    LoglikResult(-3.0, 1, False)])
    # normalised: B = -2 per token beats C = -3; the empty option A (0 tokens) is never picked
    assert rec["pred"] == "B" and rec["status"] == "wrong" and rec["option_scores"] == [None, -2.0, -3.0]


def test_loglik_normalisations_per_token_and_lm_eval_acc_norm():
    """per_char is lm-evaluation-harness's acc_norm: argmax(loglik / len(choice text in characters))."""
    from findap_nemo.inference.base import LoglikResult
    from findap_nemo.eval.scoring import prepare, score_loglik

    choices = ["up", "down sharply", "flat"]
    # B: 4 tokens, 12 characters; A: 1 token, 2 characters; C: 1 token, 4 characters
    results = [LoglikResult(-1.0, 1, False), LoglikResult(-3.6, 4, False), LoglikResult(-2.4, 1, False)]
    picks = {}
    for norm in ("none", "per_token", "per_char", "per_byte"):
        task = _task(type="multiple_choice", mc_method="loglik", loglik_target="text", loglik_normalize=norm)
        prep = prepare(task, {"text": "q", "choices": choices, "answer": "A"}, 0, [])
        picks[norm] = score_loglik(task, prep, results)["pred"]
    lls = np.array([r.logprob for r in results])
    lm_eval_acc_norm = "ABC"[int(np.argmax(lls / np.array([float(len(c)) for c in choices])))]
    assert picks == {"none": "A", "per_token": "B", "per_char": lm_eval_acc_norm, "per_byte": lm_eval_acc_norm}
    assert lm_eval_acc_norm == "B"  # -0.3 per character beats A's -0.5
    # older configs: true/false mean per_token/none; anything else is refused naming the key
    assert _task(type="multiple_choice", mc_method="loglik", loglik_normalize=True).loglik_normalize == "per_token"
    with pytest.raises(Exception, match="loglik_normalize"):
        _task(type="multiple_choice", mc_method="loglik", loglik_normalize="per_word")


@pytest.mark.parametrize("match,output,status", [
    ("contains", "The author is Adam Smith.", "correct"),
    ("contains", "It was written by adam smith in 1776", "correct"),
    ("contains", "Adam Smithson", "wrong"),  # whole words only
    ("contains", "Smith", "wrong"),
    ("contains", "", "unparsed"),
    ("exact", "The author is Adam Smith.", "wrong"),
    ("exact", "Adam Smith\nHe was Scottish.", "correct"),  # first line
])
def test_open_qa_contains_and_exact(match, output, status):
    from findap_nemo.eval.scoring import prepare, score_generation

    task = _task(type="exact_match", match=match)
    prep = prepare(task, {"text": "q", "answer": ["Adam Smith", "The"]}, 0, [])  # "The" normalises to nothing
    assert score_generation(task, prep, output)["status"] == status


def test_shipped_nq_open_uses_contains():
    from findap_nemo.eval.registry import load_registry

    reg = load_registry()
    assert reg["nq_open"].match == "contains"
    assert reg["mmlu_finance"].loglik_normalize == "per_char"


def test_report_shows_unparsed_and_how_answers_were_read():
    from findap_nemo.eval.report import results_markdown
    from findap_nemo.eval.scoring import aggregate, prepare, score_generation

    task = _task(type="multiple_choice")
    recs = []
    for out in ("[[B]]", "Answer: (A)", "A decline in rates", "no idea"):
        prep = prepare(task, {"text": "q", "choices": ["x", "y"], "answer": "B"}, len(recs), [])
        recs.append(score_generation(task, prep, out))
    agg = aggregate(task, recs)
    assert agg["counts"]["unparsed"] == 2 and agg["extraction"] == {"answer_is": 1, "bracket": 1, "none": 2}
    agg.update(category="reasoning", type="multiple_choice", method="generate", examples_per_s=None)
    md = results_markdown({"models": {"m": {"path": "/m", "tasks": {"t": agg}, "categories": {"reasoning": 0.25},
                                            "overall": 0.25}}})
    assert "- t: unparsed 2 of 4; answers read by answer_is 1, bracket 1, none 2" in md


def test_a_broken_task_yaml_names_its_file_and_line(tmp_path):
    """Task YAMLs are read like every config file (config.read_yaml): file, line and column of the error, and a
    top level that is not a mapping refused by name."""
    from findap_nemo.config import ConfigError
    from findap_nemo.eval.registry import load_registry

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ntype: classification\nprompt: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(bad))} line \d+, column \d+: not valid YAML"):
        load_registry([tmp_path])
    bad.write_text("- name: t\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(bad))}: the top level must be a mapping"):
        load_registry([tmp_path])
