"""The OpenAI-compatible server client, against a local /v1/completions endpoint served by a tiny real model.

The endpoint answers the way vLLM's does (token-id prompts, ``n`` choices, ``echo`` + ``logprobs`` giving
``token_logprobs`` for prompt tokens); the client must read P(Yes) identical to the in-process engine.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from findap_nemo.genrm.engines import HFEngine, OpenAIServerEngine
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
                    choice = {"index": 0, "text": "", "finish_reason": "length",
                              "logprobs": {"token_logprobs": token_lps + [-1.0]}}
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
