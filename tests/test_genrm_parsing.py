"""Step splitting, SCP critique parsing and prompt/template reading on hand-written model outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from findap_nemo.config import ConfigError
from findap_nemo.genrm.prompts import Templates, answer_token_ids, read_prompts
from findap_nemo.genrm.steps import Critique, corrected_prefix, format_steps, parse_critique, split_steps

SOLUTION = ("Let me work it out.\n"
            "Step 1: Current assets are $450,000.\n"
            "Step 2: Current ratio = 450,000 / 300,000 = 2.5.\n"
            "Step 3: So the ratio is high.\nFinal answer: 2.5")


def test_split_steps_keeps_spans_and_text():
    steps = split_steps(SOLUTION)
    assert [s.number for s in steps] == [1, 2, 3]
    assert steps[1].text == "Current ratio = 450,000 / 300,000 = 2.5."
    assert steps[2].text.endswith("Final answer: 2.5")
    assert SOLUTION[steps[1].start:].startswith("Step 2:")
    assert steps[-1].end == len(SOLUTION)


def test_split_steps_variants_and_unmarked():
    steps = split_steps("**Step 1:** add\n- step 2. subtract\n  STEP 3) done")
    assert [s.text for s in steps] == ["add", "subtract", "done"]
    assert format_steps(steps) == "Step 1: add\nStep 2: subtract\nStep 3: done"
    whole = split_steps("  just an answer: 42 ")
    assert len(whole) == 1 and whole[0].text == "just an answer: 42"
    assert split_steps("   \n ") == []
    # "step" inside a sentence is not a marker
    assert len(split_steps("The next step 2: no, this is prose")) == 1


@pytest.mark.parametrize("text, step, correction", [
    ("First incorrect step: 2\nCorrected step: Current ratio = 450,000 / 300,000 = 1.5.", 2,
     "Current ratio = 450,000 / 300,000 = 1.5."),
    ("The first erroneous step is Step 2.\nCorrected step 2: Current ratio = 1.5.\nStep 3: blah", 2,
     "Current ratio = 1.5."),
    ("first wrong step: 3\ncorrected step: Step 3: The ratio is 1.5, which is adequate.\n\nExtra commentary", 3,
     "The ratio is 1.5, which is adequate."),
])
def test_parse_critique_good(text, step, correction):
    crit, status = parse_critique(text, split_steps(SOLUTION))
    assert status == "ok"
    assert crit == Critique(step, correction)


@pytest.mark.parametrize("text, reason", [
    ("First incorrect step: none", "no_error"),
    ("First incorrect step: N/A. Every step is right.", "no_error"),
    ("I think the solution looks wrong somewhere.", "no_step_index"),
    ("", "no_step_index"),
    ("First incorrect step: 7\nCorrected step: x", "step_out_of_range"),
    ("First incorrect step: 0\nCorrected step: x", "step_out_of_range"),
    ("First incorrect step: 2\nThe step is wrong.", "no_correction"),
    ("First incorrect step: 2\nCorrected step:   \n\n", "no_correction"),
    ("First incorrect step: 2\nCorrected step: Current ratio =  450,000 / 300,000 = 2.5.", "unchanged_correction"),
    ("\u00bf\u0003 First incorrect step 2x Corr", "no_step_index"),  # "2x" is not a step number
])
def test_parse_critique_malformed(text, reason):
    crit, status = parse_critique(text, split_steps(SOLUTION))
    assert crit is None and status == reason


CORPUS = [json.loads(line) for line in
          (Path(__file__).parent / "data" / "scp_critiques.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("case", CORPUS, ids=[c["style"] for c in CORPUS])
def test_parse_critique_corpus_of_instruct_styles(case):
    """Critiques written the way instruct models answer the SCP prompt (bold labels, headings, bullets, quotes,
    preambles, <think> drafts, repeated blocks), each with the parse a reader would expect."""
    crit, status = parse_critique(case["critique"], split_steps(case["solution"]))
    assert status == case["status"]
    if status == "ok":
        assert crit == Critique(case["step"], case["correction"])
    else:
        assert crit is None


def test_second_block_never_reaches_the_policy_prefix():
    steps = split_steps(SOLUTION)
    text = ("**First incorrect step:** 2\n**Corrected step:** Current ratio = 1.5.\n"
            "**First incorrect step:** 3\n**Corrected step:** The ratio is adequate.")
    crit, status = parse_critique(text, steps)
    prefix = corrected_prefix(SOLUTION, steps, crit)
    assert status == "ok" and prefix.endswith("Step 2: Current ratio = 1.5.\n")
    assert "adequate" not in prefix and "First incorrect" not in prefix and "**" not in prefix


def test_corrected_prefix_shares_original_prefix():
    steps = split_steps(SOLUTION)
    crit, _ = parse_critique("First incorrect step: 2\nCorrected step: Current ratio = 1.5.", steps)
    prefix = corrected_prefix(SOLUTION, steps, crit)
    original_head = SOLUTION[:steps[1].start]
    assert prefix == original_head + "Step 2: Current ratio = 1.5.\n"
    # unmarked solution: the correction replaces it from the start
    one = split_steps("the ratio is 2.5")
    c1, status = parse_critique("First incorrect step: 1\nCorrected step: The ratio is 1.5.", one)
    assert status == "ok" and corrected_prefix("the ratio is 2.5", one, c1) == "Step 1: The ratio is 1.5.\n"


def test_read_prompts_and_errors(tmp_path):
    good = tmp_path / "p.jsonl"
    good.write_text(json.dumps({"id": "a", "prompt": "Q1?", "reference": 1.5}) + "\n\n"
                    + json.dumps({"question": "Q2?", "answer": "B", "system": "S"}) + "\n")
    recs = read_prompts(good)
    assert [(r.id, r.question, r.reference, r.system) for r in recs] == [("a", "Q1?", "1.5", None),
                                                                          ("p-3", "Q2?", "B", "S")]
    assert len(read_prompts(good, limit=1)) == 1
    bad = tmp_path / "bad.jsonl"
    for text, msg in ([json.dumps({"prompt": "x"}) + "\n{oops\n", "bad.jsonl:2: not valid JSON"],
                      [json.dumps({"reference": "x"}) + "\n", "bad.jsonl:1: 'prompt' must be"],
                      [json.dumps({"id": "q", "prompt": "x"}) + "\n" + json.dumps({"id": "q", "prompt": "y"}),
                       "duplicate id 'q'"],
                      ["", "no prompts"]):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=msg):
            read_prompts(bad)


def test_templates_fill_and_shipped_samples():
    from helpers import REPO

    t = Templates(REPO / "configs/genrm/prompts/solve.txt", REPO / "configs/genrm/prompts/fap.txt",
                  REPO / "configs/genrm/prompts/scp.txt")
    with_ref = t.fill(t.fap, "Q {x}?", "Step 1: a", "1.5")
    assert "Q {x}?" in with_ref and "Reference answer: 1.5" in with_ref and "Step 1: a" in with_ref
    assert "\n\n\n" not in t.fill(t.fap, "Q", "S", None) and "Reference answer" not in t.fill(t.fap, "Q", "S")
    shipped = read_prompts(REPO / "samples/genrm/prompts.jsonl")
    assert 20 <= len(shipped) <= 40 and all(r.reference for r in shipped)


def test_answer_tokens_single_and_split(tiny_tokenizer_dir):
    from findap_nemo.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_tokenizer_dir)
    ids = answer_token_ids(tok, ["Yes", " Yes", "Yes"], "yes")  # duplicates collapse
    assert len(ids) == 2 and all(len(tok.decode([i]).strip()) == 3 for i in ids)
    assert answer_token_ids(tok, ["Yes", "Photosynthesis maybe"], "yes") == ids[:1]
    with pytest.raises(ConfigError, match="fap.no_tokens=.*splits every spelling"):
        answer_token_ids(tok, ["Nope, definitely not"], "no")
