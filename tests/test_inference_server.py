"""The OpenAI-compatible server client, against a local /v1/completions endpoint served by a tiny real model.

The endpoint answers the way vLLM's does (token-id prompts, ``n`` choices, ``echo`` + ``logprobs`` giving
``tokens``, ``token_logprobs`` and ``top_logprobs`` for prompt tokens); the client must read P(Yes), continuation
log-likelihoods and greedy answers identical to the in-process engine, for GenRM and for FinEval alike.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from findap_nemo.inference.hf import HFEngine
from findap_nemo.inference.server import OpenAIServerEngine
from findap_nemo.genrm.pairs import fap_score
from findap_nemo.genrm.prompts import answer_token_ids, encode_chat


@pytest.fixture(scope="module")
def served(tiny_hf_model_dir):
    engine = HFEngine(str(tiny_hf_model_dir), device="cpu", dtype="fp32", batch_size=4)
    bodies, lock = [], threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                bodies.append(body)
                ids = body["prompt"]
                if body.get("echo"):
                    with torch.no_grad():
                        logits = engine.model(input_ids=torch.tensor([ids])).logits[0].float()
                    lp = torch.log_softmax(logits, -1)
                    token_lps = [None] + [float(lp[k - 1, ids[k]]) for k in range(1, len(ids))]
                    text = engine.tokenizer.convert_ids_to_tokens
                    # vLLM's top_logprobs: the `logprobs` most likely tokens plus the prompt's own, keyed by text
                    tops = [None] + [{text(int(lp[k - 1].argmax())): float(lp[k - 1].max()),
                                      text(ids[k]): token_lps[k]} for k in range(1, len(ids))]
                    choice = {"index": 0, "text": "", "finish_reason": "length",
                              "logprobs": {"tokens": text(ids) + ["x"], "token_logprobs": token_lps + [-1.0],
                                           "top_logprobs": tops + [None]}}
                    resp = {"choices": [choice]}
                else:
                    comps = engine.generate([ids], n=body["n"], temperature=body["temperature"],
                                            top_p=body["top_p"], max_new_tokens=body["max_tokens"],
                                            seed=body["seed"])[0]
                    resp = {"choices": [{"index": i, "text": c.text, "finish_reason": "stop" if c.finished else
                                         "length"} for i, c in enumerate(comps)]}
            data = json.dumps(resp).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield engine, f"http://127.0.0.1:{server.server_address[1]}", bodies
    server.shutdown()


def test_server_p_yes_matches_local_engine(served, tiny_hf_model_dir):
    engine, url, bodies = served
    client = OpenAIServerEngine(str(tiny_hf_model_dir), url=url, concurrency=4)
    tok = client.tokenizer
    cand = answer_token_ids(tok, ["Yes", " Yes"], "yes") + answer_token_ids(tok, ["No", " No"], "no")
    prompts = [encode_chat(tok, [{"role": "user", "content": q}]) for q in ("Is it correct?", "Step 1: ratio 1.5")]
    remote = client.next_token_logprobs(prompts, cand)
    local = engine.next_token_logprobs(prompts, cand)
    for r, l in zip(remote, local):
        assert r == pytest.approx(l, abs=1e-4)
        assert fap_score(r, 2)[0] == pytest.approx(fap_score(l, 2)[0], abs=1e-5)
    assert all(b["echo"] and b["max_tokens"] == 1 and b["model"] == str(tiny_hf_model_dir) for b in bodies)


def test_server_generate_sends_stop_tokens_and_n(served, tiny_hf_model_dir):
    engine, url, bodies = served
    bodies.clear()
    client = OpenAIServerEngine(str(tiny_hf_model_dir), url=url + "/v1", served_model="policy")
    prompts = [encode_chat(client.tokenizer, [{"role": "user", "content": "Q?"}])] * 2
    out = client.generate(prompts, n=3, temperature=1.0, top_p=0.9, max_new_tokens=5, seed=3)
    assert [len(x) for x in out] == [3, 3]
    # the API returns text: token counts are the text re-encoded (approximate for gibberish bytes)
    assert all(c.num_tokens == len(client.tokenizer.encode(c.text, add_special_tokens=False)) for x in out for c in x)
    assert any(c.text for x in out for c in x)
    assert sorted(b["seed"] for b in bodies) == [3, 4]
    assert all(b["stop_token_ids"] == engine.stop_ids and b["n"] == 3 and b["model"] == "policy" for b in bodies)


def test_unreachable_server_is_a_clear_error(tiny_hf_model_dir):
    client = OpenAIServerEngine(str(tiny_hf_model_dir), url="http://127.0.0.1:9", timeout_s=5)
    with pytest.raises(RuntimeError, match="server not reachable.*vllm serve"):
        client.generate([[1, 2, 3]], max_new_tokens=2)


def test_server_loglik_and_greedy_answers_match_local_engine(served, tiny_hf_model_dir):
    """FinEval's two operations through a server: continuation log-likelihoods (with the greedy flag) and greedy
    answers equal the in-process engine's."""
    engine, url, _ = served
    client = OpenAIServerEngine(str(tiny_hf_model_dir), url=url)
    tok = client.tokenizer
    ctx = encode_chat(tok, [{"role": "user", "content": "Revenue rose 12%. Sentiment?"}])
    reqs = [(ctx, tok.encode(x, add_special_tokens=False)) for x in (" positive", " negative", " A")]
    greedy = engine.generate([ctx], max_new_tokens=1)[0][0]
    reqs.append((ctx, tok.encode(greedy.text, add_special_tokens=False)[:1]))  # a continuation that is greedy
    remote, local = client.loglik(reqs), engine.loglik(reqs)
    for r, l in zip(remote, local):
        assert r.logprob == pytest.approx(l.logprob, abs=1e-4) and r.num_tokens == l.num_tokens
        assert r.is_greedy == l.is_greedy
    assert local[-1].is_greedy and not all(x.is_greedy for x in local)
    prompts = [ctx, encode_chat(tok, [{"role": "user", "content": "Q?"}])]
    answers = lambda eng: [c[0].text for c in eng.generate(prompts, max_new_tokens=6)]  # noqa: E731
    assert answers(client) == answers(engine)


def test_eval_runs_a_model_through_its_server(served, tiny_hf_model_dir, tmp_path):
    """`servers: {name: {url}}` in the eval config: the same scores and predictions as the local engine."""
    from findap_nemo.eval.run import run_eval

    _, url, bodies = served
    base = {"models": {"m": str(tiny_hf_model_dir)}, "tasks": ["fpb_sentiment", "arc_easy"], "limit": 3,
            "backend": {"kind": "hf", "device": "cpu"}, "chart": False}
    local = run_eval({**base, "output_dir": str(tmp_path / "local")})
    bodies.clear()
    remote = run_eval({**base, "output_dir": str(tmp_path / "remote"), "servers": {"m": {"url": url}}})
    assert bodies, "the server answered nothing"
    for task in ("fpb_sentiment", "arc_easy"):
        a, b = (json.loads(l) for l in (tmp_path / "local/predictions/m" / f"{task}.jsonl").read_text().splitlines()), \
            (json.loads(l) for l in (tmp_path / "remote/predictions/m" / f"{task}.jsonl").read_text().splitlines())
        assert [x["pred"] for x in a] == [x["pred"] for x in b], task
        assert remote["models"]["m"]["tasks"][task]["score"] == local["models"]["m"]["tasks"][task]["score"]


def test_eval_server_keys_are_checked(tiny_hf_model_dir, tmp_path):
    from findap_nemo.config import ConfigError, load_config
    from findap_nemo.eval.config import EvalConfig

    with pytest.raises(ConfigError) as exc:
        load_config(EvalConfig, None, [f"models.m={tiny_hf_model_dir}", "servers.other.url=http://x:1",
                                       "servers.m.url=localhost:8000"])
    text = "\n".join(exc.value.problems)
    assert "servers.other" in text and "name a model of `models` (m)" in text
    assert "servers.m.url='localhost:8000'" in text and "http(s)://" in text
