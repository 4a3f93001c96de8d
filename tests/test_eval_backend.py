"""The HF backend's log-likelihood scoring and generation, on real tiny HF models.

The planted model is a real LlamaForCausalLM whose attention and MLP outputs are zeroed, so the last hidden state
depends only on the current token; its lm_head row for one option letter is set along the hidden state of the
prompt's last token. The scorer (real HF forward path, padding, batching) must then pick that letter.
"""

from __future__ import annotations


import pytest
import torch

from findap_nemo.inference.hf import HFEngine as HFBackend
from findap_nemo.eval.prompts import encode_continuation, encode_messages
from findap_nemo.eval.registry import task_from_dict
from findap_nemo.eval.scoring import prepare
from test_eval_planted import MC_TASK, ctx_last_token as _ctx_last_token, plant


@pytest.fixture(scope="module")
def tok(tiny_hf_model_dir):
    from findap_nemo.tokenizer import load_tokenizer

    return load_tokenizer(tiny_hf_model_dir)


@pytest.mark.parametrize("letter", ["B", "C"])
def test_loglik_picks_the_planted_option(tiny_hf_model_dir, tok, tmp_path, letter):
    last = _ctx_last_token(tok)
    planted = plant(tiny_hf_model_dir, tmp_path / "planted", {last: letter}, tok)
    backend = HFBackend(str(planted), device="cpu", batch_size=4)
    task = task_from_dict(MC_TASK, "test")
    questions = ["Which bond is riskier?", "Pick the leading indicator for housing starts in the region.", "Q3"]
    reqs = []
    for q in questions:
        prep = prepare(task, {"text": q, "choices": ["a", "b", "c"], "gold": 0}, 0, [])
        ctx = encode_messages(tok, prep.messages, chat_template=True)
        reqs += [(ctx, encode_continuation(tok, l)) for l in "ABC"]
    res = backend.loglik(reqs)
    for i in range(len(questions)):
        scores = [r.logprob for r in res[3 * i:3 * i + 3]]
        assert "ABC"[max(range(3), key=scores.__getitem__)] == letter
        assert res[3 * i + "ABC".index(letter)].is_greedy
    backend.close()


def test_loglik_matches_a_direct_forward_and_is_batch_invariant(tiny_hf_model_dir, tok):
    from transformers import AutoModelForCausalLM

    reqs = [(tok("The Federal Reserve held rates")["input_ids"], encode_continuation(tok, " steady")),
            (tok("Net income fell")["input_ids"], encode_continuation(tok, " to $310 million")),
            (tok("Answer:")["input_ids"], encode_continuation(tok, " A"))]
    one = HFBackend(str(tiny_hf_model_dir), device="cpu", batch_size=1).loglik(reqs)
    many = HFBackend(str(tiny_hf_model_dir), device="cpu", batch_size=3).loglik(reqs)  # left padding
    model = AutoModelForCausalLM.from_pretrained(str(tiny_hf_model_dir), dtype=torch.float32).eval()
    for (ctx, cont), a, b in zip(reqs, one, many):
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        ref = sum(float(lp[len(ctx) - 1 + k, t]) for k, t in enumerate(cont))
        assert a.logprob == pytest.approx(ref, abs=1e-4)
        assert b.logprob == pytest.approx(ref, abs=1e-4)
        assert a.num_tokens == len(cont)


def test_one_token_options_share_one_forward_per_context(tiny_hf_model_dir, tok):
    """Option letters of one question are scored from one forward pass of its context, with the same numbers."""
    from transformers import AutoModelForCausalLM

    ctxs = [tok("Which bond is riskier? Answer:")["input_ids"], tok("Net income fell. Sentiment:")["input_ids"]]
    letters = [encode_continuation(tok, x) for x in ("A", "B", "C")]
    assert all(len(x) == 1 for x in letters)
    reqs = [(c, x) for c in ctxs for x in letters] + [(ctxs[0], encode_continuation(tok, " to $310 million"))]
    backend = HFBackend(str(tiny_hf_model_dir), device="cpu", batch_size=4)
    calls = []
    hook = backend.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    res = backend.loglik(reqs)
    hook.remove()
    assert len(calls) == 2  # one batch of the 2 distinct contexts + one batch of the multi-token request
    model = AutoModelForCausalLM.from_pretrained(str(tiny_hf_model_dir), dtype=torch.float32).eval()
    for (ctx, cont), r in zip(reqs, res):
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0, :-1].float(), -1)
        ref = sum(float(lp[len(ctx) - 1 + k, t]) for k, t in enumerate(cont))
        assert r.logprob == pytest.approx(ref, abs=1e-4) and r.num_tokens == len(cont)
        assert r.is_greedy == all(int(lp[len(ctx) - 1 + k].argmax()) == t for k, t in enumerate(cont))


def test_generation_is_greedy_batched_and_stops(tiny_hf_model_dir, tok, tmp_path):
    from findap_nemo.tokenizer import EOT

    last = _ctx_last_token(tok)
    b_id = encode_continuation(tok, "B")[0]
    planted = plant(tiny_hf_model_dir, tmp_path / "planted_gen", {last: "B", b_id: tok.convert_tokens_to_ids(EOT)},
                    tok)
    task = task_from_dict(dict(MC_TASK, mc_method="generate"), "test")
    prompts = []
    for q in ["short", "a much longer question about duration, convexity and yield"]:
        prep = prepare(task, {"text": q, "choices": ["a", "b"], "gold": 1}, 0, [])
        prompts.append(encode_messages(tok, prep.messages, chat_template=True))
    gens = [c[0] for c in HFBackend(str(planted), device="cpu", batch_size=2).generate(prompts, max_new_tokens=8)]
    assert [g.text for g in gens] == ["B", "B"]  # stopped at <|eot_id|>, which is not in the text
    assert [g.num_tokens for g in gens] == [1, 1]
    # the random model is deterministic and batching does not change greedy outputs
    be1 = HFBackend(str(tiny_hf_model_dir), device="cpu", batch_size=1)
    be2 = HFBackend(str(tiny_hf_model_dir), device="cpu", batch_size=2)
    a, b = [[c[0] for c in be.generate(prompts, max_new_tokens=6)] for be in (be1, be2)]
    assert [g.text for g in a] == [g.text for g in b]
    assert all(0 < g.num_tokens <= 6 for g in a)
