"""A running OpenAI-compatible server (``vllm serve <hf dir>``, or any server with vLLM's token-id extensions):
the model lives elsewhere, only its tokenizer is loaded here."""

from __future__ import annotations

from typing import Optional

from findap_nemo.inference.base import Completion, ContextFit, LoglikResult


class OpenAIServerEngine(ContextFit):
    """A running OpenAI-compatible server (``vllm serve <hf dir>``): token-id prompts on /v1/completions.

    Requests go out concurrently so the server's continuous batching sees many at once. vLLM's extra
    parameters (``stop_token_ids``, ``skip_special_tokens``) keep stopping identical to the local engines;
    next-token log-probabilities use ``echo`` + ``logprobs`` on the prompt with the candidate token appended.
    """

    name = "openai_server"

    def __init__(self, path: str, *, url: str, served_model: Optional[str] = None, max_length: Optional[int] = None,
                 concurrency: int = 32, timeout_s: float = 600.0, tokenizer=None, url_key: str = "url", **_):
        from findap_nemo.tokenizer import load_tokenizer, stop_token_ids

        self.tokenizer = tokenizer or load_tokenizer(path)
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.url = url.rstrip("/")
        if not self.url.endswith("/v1"):
            self.url += "/v1"
        self.model = served_model or path  # `vllm serve <path>` serves the model under its path
        self.max_length = max_length or 4096
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.truncated_prompts = 0
        self.url_key = url_key  # the config key that named the server, for errors

    def _post(self, body: dict) -> dict:
        import json
        import os
        import urllib.error
        import urllib.request

        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = f"Bearer {os.environ['OPENAI_API_KEY']}"
        req = urllib.request.Request(f"{self.url}/completions", data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"{self.url}/completions: HTTP {err.code}: {err.read()[:500]!r}") from err
        except urllib.error.URLError as err:
            raise RuntimeError(f"{self.url}: server not reachable ({err.reason}); start it with "
                               f"`vllm serve {self.model}` or fix {self.url_key}") from err

    def _map(self, bodies: list[dict]) -> list[dict]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._post, bodies))

    def generate(self, prompts: list[list[int]], *, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                 max_new_tokens: int = 256, seed: int = 0, seeds: Optional[list[int]] = None,
                 progress=None) -> list[list[Completion]]:
        seeds = seeds if seeds is not None else [seed + i for i in range(len(prompts))]
        fitted = [self._fit(p, max_new_tokens) for p in prompts]
        cut = [len(f) < len(p) for f, p in zip(fitted, prompts)]
        bodies = [{"model": self.model, "prompt": fitted[i], "n": n, "temperature": temperature,
                   "top_p": top_p if temperature > 0 else 1.0, "max_tokens": max_new_tokens, "seed": seeds[i],
                   "stop_token_ids": self.stop_ids, "skip_special_tokens": True} for i in range(len(prompts))]
        out = []
        for resp, k in zip(self._map(bodies), cut):
            choices = sorted(resp["choices"], key=lambda c: c.get("index", 0))
            # the API returns text only: token counts (throughput) are the text re-encoded
            out.append([Completion(c["text"], len(self.tokenizer.encode(c["text"], add_special_tokens=False)),
                                   c.get("finish_reason") == "stop", k) for c in choices])
        if progress is not None:
            progress.update(len(prompts))
        return out

    def next_token_logprobs(self, prompts: list[list[int]], token_ids: list[int],
                            groups: Optional[list] = None) -> list[list[float]]:
        bodies, where = [], []
        for p in prompts:
            fitted = self._fit(p, 2)
            for t in token_ids:
                bodies.append({"model": self.model, "prompt": fitted + [t], "max_tokens": 1, "echo": True,
                               "logprobs": 0, "temperature": 0.0})
                where.append(len(fitted))
        flat = [resp["choices"][0]["logprobs"]["token_logprobs"][k] for resp, k in zip(self._map(bodies), where)]
        k = len(token_ids)
        return [[float(x) for x in flat[i * k:(i + 1) * k]] for i in range(len(prompts))]

    def loglik(self, requests: list[tuple[list[int], list[int]]], progress=None) -> list[LoglikResult]:
        """``echo`` + ``logprobs=1`` on context + continuation: each prompt token's log-probability, and the top-1
        token at each position (keyed by token text, as the API returns it) for the greedy check."""
        fulls = [(c + x)[-self.max_length + 1:] for c, x in requests]
        bodies = [{"model": self.model, "prompt": f, "max_tokens": 1, "echo": True, "logprobs": 1,
                   "temperature": 0.0} for f in fulls]
        results = []
        for (ctx, cont), full, resp in zip(requests, fulls, self._map(bodies)):
            info = resp["choices"][0]["logprobs"]
            tokens, lps, tops = info.get("tokens"), info["token_logprobs"], info.get("top_logprobs")
            n = len(cont)
            lp, greedy = 0.0, tokens is not None and tops is not None
            for pos in range(len(full) - n, len(full)):
                if lps[pos] is None:  # the first prompt token has no prediction
                    greedy = False
                    continue
                lp += float(lps[pos])
                if greedy:
                    top = tops[pos] or {}
                    greedy = bool(top) and max(top, key=top.get) == tokens[pos]
            results.append(LoglikResult(lp, n, greedy, len(ctx) + n > len(full)))
        if progress is not None:
            progress.update(len(requests))
        return results

    def close(self) -> None:
        pass
