"""Preference JSONL -> tokenized pairs -> interleaved micro-batches (real tokenizer, real files)."""

from __future__ import annotations

import json

import pytest

from findap_nemo.config import ConfigError
from findap_nemo.dpo.data import PairCollator, PairDataset, load_pairs, split_holdout
from findap_nemo.tokenizer import EOT, load_tokenizer

MSGS = [{"role": "system", "content": "You are a financial analyst."},
        {"role": "user", "content": "Is net income up?"}]


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir):
    return load_tokenizer(tiny_tokenizer_dir)


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_list_prompt_uses_chat_template_and_appends_eot(tok, tmp_path):
    f = _write(tmp_path / "p.jsonl", [{"prompt": MSGS, "chosen_response": " Yes. ", "rejected_response": "No.",
                                      "meta": {"judge": "x"}}])
    recs, report = load_pairs(str(f), tok, seq_length=256, progress=False)
    r = recs[0]
    # The prompt + chosen equals the template applied to the full conversation (same tokens as SFT data).
    full = tok.apply_chat_template(MSGS + [{"role": "assistant", "content": " Yes. "}], tokenize=False)
    assert tok.decode(r.prompt_ids + r.chosen_ids) == full
    assert tok.decode(r.chosen_ids) == "Yes." + EOT and tok.decode(r.rejected_ids) == "No." + EOT
    assert (r.chosen_reward, r.rejected_reward) == (1.0, 0.0)
    assert report.kept == 1 and report.warnings == {f"responses without {EOT} (appended)": 2}


def test_string_prompt_verbatim_and_template_mismatch_warned(tok, tmp_path):
    good = tok.apply_chat_template(MSGS, tokenize=False, add_generation_prompt=True)
    rows = [{"prompt": good, "chosen_response": "A" + EOT, "rejected_response": "B" + EOT, "chosen_reward": 3,
             "rejected_reward": 1.5},
            {"prompt": "Question: is it up?\nAnswer:", "chosen": "Yes", "rejected": "No"}]
    recs, report = load_pairs(str(_write(tmp_path / "s.jsonl", rows)), tok, seq_length=256, progress=False)
    assert tok.decode(recs[0].prompt_ids) == good
    assert (recs[0].chosen_reward, recs[0].rejected_reward) == (3.0, 1.5)
    assert tok.decode(recs[1].prompt_ids).startswith(tok.bos_token + "Question")
    w = dict(report.warnings)
    assert w.pop("string prompt without the template's BOS token (added)") == 1
    assert sum(v for k, v in w.items() if "chat-template mismatch" in k) == 1
    assert w.pop(f"responses without {EOT} (appended)") == 2


def test_bad_lines_name_file_and_line(tok, tmp_path):
    ok = {"prompt": "p", "chosen_response": "a", "rejected_response": "b"}
    for bad, needle in (("{not json", ":2: not valid JSON"),
                        ({"prompt": "p", "chosen_response": "a"}, ":2: missing 'rejected_response'"),
                        ({**ok, "chosen_reward": "high"}, ":2: 'chosen_reward' must be a number"),
                        ({**ok, "prompt": [{"text": "x"}]}, ":2: a list 'prompt' must hold chat messages")):
        f = _write(tmp_path / "bad.jsonl", [ok, bad])
        with pytest.raises(ConfigError, match=needle) as err:
            load_pairs(str(f), tok, seq_length=64, progress=False)
        assert str(f) in str(err.value)


def test_too_long_pairs_are_dropped_and_counted(tok, tmp_path):
    rows = [{"prompt": MSGS, "chosen_response": "Yes.", "rejected_response": "No."},
            {"prompt": MSGS, "chosen_response": "word " * 200, "rejected_response": "No."}]
    recs, report = load_pairs(str(_write(tmp_path / "l.jsonl", rows)), tok, seq_length=64, progress=False)
    assert [r.index for r in recs] == [0]
    assert report.dropped_too_long == 1 and "1 dropped" in report.summary()


def test_collator_interleaves_with_shared_prompt_and_response_masks(tok, tmp_path):
    rows = [{"prompt": MSGS, "chosen_response": f"Answer {i} is yes.", "rejected_response": "No.",
             "rejected_reward": -1.0} for i in range(3)]
    recs, _ = load_pairs(str(_write(tmp_path / "c.jsonl", rows)), tok, seq_length=128, progress=False)
    ds = PairDataset(recs)
    batch = PairCollator(tok.pad_token_id, 128, fixed_length=False, pad_to_multiple_of=16, tensor_parallel=2)(
        [ds[0], ds[2]])
    n, s = batch["tokens"].shape
    assert n == 4 and s % 16 == 0 and s < 128
    assert batch["pair_index"].tolist() == [0, 2]
    assert batch["gt_rewards"].tolist() == [1.0, -1.0, 1.0, -1.0]
    assert batch["seq_lengths"].tolist() == [len(recs[i].prompt_ids) + len(r) - 1 for i in (0, 2)
                                             for r in (recs[i].chosen_ids, recs[i].rejected_ids)]
    for j, (r, side) in enumerate([(recs[0], "c"), (recs[0], "r"), (recs[2], "c"), (recs[2], "r")]):
        resp = r.chosen_ids if side == "c" else r.rejected_ids
        ids = r.prompt_ids + resp
        t = len(ids) - 1
        assert batch["tokens"][j, :t].tolist() == ids[:-1]
        assert batch["labels"][j, :t].tolist() == ids[1:]
        # exactly the response tokens (EOT included) are targets; prompt and padding are not
        masked_targets = batch["labels"][j][batch["loss_mask"][j].bool()].tolist()
        assert masked_targets == resp and masked_targets[-1] == tok.convert_tokens_to_ids(EOT)
        assert batch["tokens"][j, t:].eq(tok.pad_token_id).all()
    # the prompt part of chosen and rejected is the same tokens
    p = len(recs[0].prompt_ids)
    assert batch["tokens"][0, :p].tolist() == batch["tokens"][1, :p].tolist()
    fixed = PairCollator(tok.pad_token_id, 128, fixed_length=True)([ds[0]])
    assert fixed["tokens"].shape == (2, 128)
    ds.reference = {0: (-1.5, -2.5), 1: (0.0, 0.0), 2: (-3.0, -4.0)}
    assert PairCollator(tok.pad_token_id, 128, fixed_length=False)([ds[2], ds[0]])["ref_logps"].tolist() == \
        [-3.0, -4.0, -1.5, -2.5]


def test_holdout_split_is_seeded_and_disjoint(tok, tmp_path):
    rows = [{"prompt": "p", "chosen_response": f"a{i}", "rejected_response": "b"} for i in range(20)]
    recs, _ = load_pairs(str(_write(tmp_path / "h.jsonl", rows)), tok, seq_length=64, progress=False)
    tr, va = split_holdout(recs, 0.1, seed=3)
    assert len(va) == 2 and len(tr) == 18
    assert not {r.index for r in tr} & {r.index for r in va}
    assert [r.index for r in split_holdout(recs, 0.1, seed=3)[1]] == [r.index for r in va]
