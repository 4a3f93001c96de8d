"""The transformers engine on a tiny random Llama: P(Yes) from logits, batched sampling, stop tokens."""

from __future__ import annotations

import pytest
import torch

from findap_nemo.inference import make_engine
from findap_nemo.inference.hf import HFEngine
from findap_nemo.genrm.pairs import fap_score
from findap_nemo.genrm.prompts import answer_token_ids, encode_chat


@pytest.fixture(scope="module")
def engine(tiny_hf_model_dir):
    return HFEngine(str(tiny_hf_model_dir), device="cpu", dtype="fp32", batch_size=4)


def _judge_ids(engine, text):
    return encode_chat(engine.tokenizer, [{"role": "user", "content": text}])


def test_p_yes_equals_softmax_by_hand(engine):
    tok = engine.tokenizer
    yes = answer_token_ids(tok, ["Yes", " Yes"], "yes")
    no = answer_token_ids(tok, ["No", " No"], "no")
    prompts = [_judge_ids(engine, "Is the final answer correct? Step 1: ratio 1.5"),
               _judge_ids(engine, "Is it correct?"),  # shorter: left-padded in the same batch
               _judge_ids(engine, "The company reported quarterly revenue of $4.2 billion. " * 3)]
    batched = engine.next_token_logprobs(prompts, yes + no)
    for ids, lps in zip(prompts, batched):
        with torch.no_grad():
            logits = engine.model(input_ids=torch.tensor([ids])).logits[0, -1].double()
        e = torch.exp(logits - logits.max())
        probs = e / e.sum()  # softmax by hand, in float64
        p_yes, p_no = float(probs[yes].sum()), float(probs[no].sum())
        score, mass = fap_score(lps, len(yes))
        assert score == pytest.approx(p_yes / (p_yes + p_no), abs=1e-5)
        assert mass == pytest.approx(p_yes + p_no, rel=1e-4)
    assert len({round(fap_score(lp, len(yes))[0], 6) for lp in batched}) == 3  # the prompts do matter


def test_generate_n_samples_stop_tokens_and_seed(engine):
    prompts = [_judge_ids(engine, "Solve step by step: current ratio?"), _judge_ids(engine, "Q?")]
    a = engine.generate(prompts, n=3, temperature=1.0, top_p=0.9, max_new_tokens=6, seed=7)
    b = engine.generate(prompts, n=3, temperature=1.0, top_p=0.9, max_new_tokens=6, seed=7)
    assert [len(x) for x in a] == [3, 3]
    assert [[c.text for c in x] for x in a] == [[c.text for c in x] for x in b]  # seeded
    for comps in a:
        for c in comps:
            assert c.num_tokens <= 6 and (c.finished or c.num_tokens == 6)
    greedy = engine.generate(prompts[:1], n=1, temperature=0.0, max_new_tokens=5)[0][0]
    # greedy continuation equals argmax decoding by hand, cut at the chat stop tokens
    ids = list(prompts[0])
    expected = []
    for _ in range(5):
        with torch.no_grad():
            nxt = int(engine.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
        if nxt in engine.stop_ids:
            break
        expected.append(nxt)
        ids.append(nxt)
    assert greedy.num_tokens == len(expected)
    assert greedy.text == engine.tokenizer.decode(expected, skip_special_tokens=True)


def test_context_truncation_is_counted(tiny_hf_model_dir):
    eng = HFEngine(str(tiny_hf_model_dir), device="cpu", dtype="fp32", max_length=40)
    long = _judge_ids(eng, "Net income fell to $310 million as interest expense rose. " * 10)
    assert len(long) > 40
    out = eng.generate([long], n=1, max_new_tokens=4)
    assert len(out[0]) == 1 and eng.truncated_prompts == 1


def test_vllm_backend_absent_is_a_clear_error(tiny_hf_model_dir):
    from findap_nemo.config import ConfigError
    from findap_nemo.inference.config import has_vllm

    if has_vllm():
        pytest.skip("vLLM is installed here; the error path is for machines without it")
    with pytest.raises(ConfigError, match="vLLM is not installed"):
        make_engine("vllm", str(tiny_hf_model_dir))
    assert make_engine("auto", str(tiny_hf_model_dir), device="cpu").name == "hf"


def test_backend_keys_have_one_owner_for_eval_and_genrm():
    """FinEval and GenRM read the same `backend:` keys, defaults and checks (inference.config.BackendConfig); GenRM
    adds only its own (batch_size, concurrency); vLLM asked for where it is missing is a clear error."""
    import dataclasses

    from findap_nemo.config import ConfigError, load_config
    from findap_nemo.eval.config import EvalConfig
    from findap_nemo.genrm.config import GenRMConfig
    from findap_nemo.inference.config import BackendConfig, has_vllm, resolve_kind

    shared = {f.name: f.default for f in dataclasses.fields(BackendConfig)}
    ev = {f.name: f.default for f in dataclasses.fields(EvalConfig().backend)}
    gr = {f.name: f.default for f in dataclasses.fields(GenRMConfig().backend)}
    assert ev == shared and {k: gr[k] for k in shared} == shared and set(gr) - set(shared) == {"batch_size", "concurrency"}
    for schema in (EvalConfig, GenRMConfig):
        with pytest.raises(ConfigError, match=r"backend.gpu_memory_utilization=1.5.*in \(0, 1\]"):
            load_config(schema, None, ["backend.gpu_memory_utilization=1.5"])
        with pytest.raises(ConfigError, match=r"backend.kind='tgi'.*one of \['auto', 'hf', 'vllm'\]"):
            load_config(schema, None, ["backend.kind=tgi"])
    assert resolve_kind("hf") == "hf" and resolve_kind("auto") == "hf"  # no GPU here
    if not has_vllm():
        with pytest.raises(ConfigError, match="backend.kind='vllm': vLLM is not installed"):
            resolve_kind("vllm")
