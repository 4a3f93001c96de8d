"""Generation engines for sampling, critiques and Yes/No scoring: Hugging Face transformers and vLLM.

Both take token ids (prompts are chat-templated and tokenised once, by the caller) and offer two operations:
``generate`` (N sampled or greedy continuations per prompt, stopping at the chat template's stop tokens) and
``next_token_logprobs`` (log-probabilities of chosen tokens as the very next token: what FAP scores are read
from, instead of sampled text).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Optional

from findap_nemo.hf_batching import HFCausalLM


@dataclass
class Completion:
    text: str
    num_tokens: int  # generated tokens, without the stop token
    finished: bool  # ended on a stop token (False: cut at max_new_tokens)


class _ContextFit:
    """Shared by every engine: prompts longer than the context (minus the tokens to generate) are cut from the left
    and counted in ``truncated_prompts`` (reported in the summary). Engines set ``max_length``."""

    max_length: int
    truncated_prompts: int = 0

    def _fit(self, prompt: list[int], max_new_tokens: int) -> list[int]:
        budget = max(self.max_length - max_new_tokens, 1)
        if len(prompt) > budget:
            self.truncated_prompts += 1
            return prompt[-budget:]
        return prompt


def row_seeds(seed: int, n: int) -> list[int]:
    """The seeds of a prompt's ``n`` samples: distinct, and fixed by the prompt's seed alone."""
    return [(seed + k * 0x9E3779B97F4A7C15) % 2**63 for k in range(n)]


class RowSeededSampler:
    """A logits processor that samples every row from its own ``torch.Generator`` (temperature, then top-p: the
    smallest set of most likely tokens whose mass reaches ``top_p``, as transformers' TopPLogitsWarper keeps) and
    leaves only the drawn token finite, so greedy decoding emits it. Row k's t-th token depends on its prompt and
    its seed only, whatever else is in the batch."""

    CANDIDATES = 256  # the nucleus is looked for among the top tokens first; rows whose nucleus is wider sort all

    def __init__(self, seeds: list[int], temperature: float, top_p: float):
        import torch

        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def draw(self, scores, rows):
        """The next token of each row of ``scores``; ``rows`` names each one's random stream (its row in the batch
        the sampler was made for, which rows that stopped have left)."""
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1).cpu()
        tokens = torch.empty(len(rows), dtype=torch.long)
        if self.top_p < 1.0:  # top-k then full sort only where needed: a full sort of the vocabulary is slow on CPU
            top_p, top_i = probs.topk(min(self.CANDIDATES, probs.shape[-1]), dim=-1)
            wide = (top_p.cumsum(-1) - top_p)[:, -1] < self.top_p  # the last candidate is still in the nucleus
        for k, row in enumerate(rows):
            if self.top_p < 1.0:
                p, idx = probs[k].sort(descending=True) if wide[k] else (top_p[k], top_i[k])
                p = p[(p.cumsum(0) - p) < self.top_p]
            else:
                p, idx = probs[k], None
            cum = p.double().cumsum(0)
            u = torch.rand((), generator=self.generators[int(row)], dtype=torch.float64) * cum[-1]
            j = min(int(torch.searchsorted(cum, u, right=True)), len(p) - 1)
            tokens[k] = j if idx is None else int(idx[j])
        return tokens

    def __call__(self, input_ids, scores):
        """As a transformers logits processor: only the drawn token stays finite."""
        import torch

        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(scores.shape[0]), self.draw(scores, range(scores.shape[0])).to(scores.device)] = 0.0
        return out


class HFEngine(_ContextFit, HFCausalLM):
    """A transformers model (:class:`~findap_nemo.hf_batching.HFCausalLM`) on shared-prefix batches sorted by length
    to pad little: sampling with per-row random streams, greedy decoding, next-token log-probs."""

    name = "hf"

    def __init__(self, path: str, *, device: str = "auto", dtype: str = "auto", batch_size: int = 16,
                 max_length: Optional[int] = None, device_map: Optional[str] = None, tokenizer=None,
                 share_prefix: bool = True, drop_finished: bool = True, **_):
        HFCausalLM.__init__(self, path, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length,
                            device_map=device_map, tokenizer=tokenizer, share_prefix=share_prefix,
                            drop_finished=drop_finished)
        self.truncated_prompts = 0  # prompts cut from the left to fit the context (reported in the summary)

    def generate(self, prompts: list[list[int]], *, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                 max_new_tokens: int = 256, seed: int = 0, seeds: Optional[list[int]] = None) -> list[list[Completion]]:
        """``n`` completions per prompt; greedy when temperature is 0. Deterministic for a given seed and batch.

        With ``seeds`` (one per prompt) every sample draws from a random stream of its own (``row_seeds``):
        its tokens depend only on the prompt and that seed, not on which prompts share the batch (up to the float
        rounding of padded batches), so batches stay full and a resumed run samples what it would have."""
        import torch
        from transformers import LogitsProcessorList

        from findap_nemo.hf_batching import decode

        torch.manual_seed(seed)
        per_call = max(1, self.batch_size // n)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        out: list[list[Completion]] = [[] for _ in prompts]
        sample = temperature > 0
        for start in range(0, len(order), per_call):
            idx = order[start:start + per_call]
            # each prompt n times, in a row: the prompt's prefill is shared by its n samples (and the batch's
            # common prefix by all), the rows in num_return_sequences' order
            rows = [self._fit(prompts[i], max_new_tokens) for i in idx for _ in range(n)]
            sampler = RowSeededSampler([s for i in idx for s in row_seeds(seeds[i], n)], temperature, top_p) \
                if sample and seeds is not None else None
            batch = self._batch(rows)
            if self.drop_finished and (sampler is not None or not sample):
                # rows leave the batch as they stop (hf_batching.decode); seeded rows keep their own streams
                new = decode(self.model, batch, max_new_tokens, self.stop_ids,
                             pick=sampler.draw if sampler is not None else None)
            else:
                if sampler is not None:  # greedy over one-hot scores: the token each row's own stream drew
                    kwargs = dict(do_sample=False, temperature=None, top_p=None, top_k=None,
                                  logits_processor=LogitsProcessorList([sampler]))
                elif sample:
                    kwargs = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
                else:
                    kwargs = dict(do_sample=False, temperature=None, top_p=None, top_k=None)
                with torch.inference_mode():
                    gen = self.model.generate(**batch.generate_kwargs(), max_new_tokens=max_new_tokens,
                                              num_beams=1, eos_token_id=self.stop_ids, pad_token_id=self.pad_id,
                                              use_cache=True, **kwargs)
                new = gen[:, batch.input_ids.shape[1]:].tolist()
            for j, i in enumerate(idx):
                for toks in new[j * n:(j + 1) * n]:
                    cut = next((k for k, t in enumerate(toks) if t in self.stop_ids), None)
                    kept = toks if cut is None else toks[:cut]
                    out[i].append(Completion(self.tokenizer.decode(kept, skip_special_tokens=True), len(kept),
                                             cut is not None))
        return out

    def next_token_logprobs(self, prompts: list[list[int]], token_ids: list[int],
                            groups: Optional[list] = None) -> list[list[float]]:
        """log p(token | prompt) for each of ``token_ids``, from one forward pass (last position's logits only).

        Batches never mix ``groups``: padded batches change the last bits of the scores, so with one group per
        GenRM prompt a prompt's scores do not depend on which other prompts were judged with it."""
        import torch

        from findap_nemo.hf_batching import last_logits

        groups = groups if groups is not None else [0] * len(prompts)
        batches = []
        for g in dict.fromkeys(groups):
            order = sorted((i for i in range(len(prompts)) if groups[i] == g), key=lambda i: -len(prompts[i]))
            batches += [order[k:k + self.batch_size] for k in range(0, len(order), self.batch_size)]
        out: list[list[float]] = [[] for _ in prompts]
        for idx in batches:
            with torch.inference_mode():  # last position only: B x 1 x vocab, not B x T x vocab
                logits = last_logits(self.model, self._batch([self._fit(prompts[i], 1) for i in idx]), 1)
            logp = torch.log_softmax(logits[:, -1, :].float(), dim=-1)[:, token_ids]
            for j, i in enumerate(idx):
                out[i] = logp[j].tolist()
        return out

class VLLMEngine(_ContextFit):
    """vLLM offline engine (continuous batching, paged KV cache, prefix caching for the shared judge prompts)."""

    name = "vllm"

    def __init__(self, path: str, *, dtype: str = "auto", max_length: Optional[int] = None,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85, tokenizer=None, **_):
        from vllm import LLM

        from findap_nemo.tokenizer import load_tokenizer, stop_token_ids

        self.tokenizer = tokenizer or load_tokenizer(path)
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.llm = LLM(model=path, dtype={"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype),
                       tensor_parallel_size=tensor_parallel_size, max_model_len=max_length,
                       gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True)
        try:
            self.max_length = self.llm.llm_engine.model_config.max_model_len
        except AttributeError:  # engine internals differ across vLLM versions
            self.max_length = max_length or self.tokenizer.model_max_length
        self.truncated_prompts = 0

    def generate(self, prompts: list[list[int]], *, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                 max_new_tokens: int = 256, seed: int = 0, seeds: Optional[list[int]] = None) -> list[list[Completion]]:
        from vllm import SamplingParams

        def params_for(s: int):
            return SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                  max_tokens=max_new_tokens, stop_token_ids=self.stop_ids, seed=s,
                                  skip_special_tokens=True)

        params = [params_for(s) for s in seeds] if seeds is not None else params_for(seed)
        inputs = [{"prompt_token_ids": self._fit(p, max_new_tokens)} for p in prompts]
        outs = self.llm.generate(inputs, params, use_tqdm=False)
        return [[Completion(c.text, len([t for t in c.token_ids if t not in self.stop_ids]),
                            c.finish_reason == "stop") for c in o.outputs] for o in outs]

    def next_token_logprobs(self, prompts: list[list[int]], token_ids: list[int],
                            groups: Optional[list] = None) -> list[list[float]]:
        """Each candidate token is appended to the prompt and its prompt logprob read back: exact values for
        every candidate, not only those in a top-k list (prefix caching makes the extra requests cheap)."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        inputs = [{"prompt_token_ids": self._fit(p, 2) + [t]} for p in prompts for t in token_ids]
        outs = self.llm.generate(inputs, params, use_tqdm=False)
        flat = [o.prompt_logprobs[-1][t].logprob for o, t in zip(outs, [t for _ in prompts for t in token_ids])]
        k = len(token_ids)
        return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]

    def close(self) -> None:
        del self.llm
        gc.collect()


class OpenAIServerEngine(_ContextFit):
    """A running OpenAI-compatible server (``vllm serve <hf dir>``): token-id prompts on /v1/completions.

    Requests go out concurrently so the server's continuous batching sees many at once. vLLM's extra
    parameters (``stop_token_ids``, ``skip_special_tokens``) keep stopping identical to the local engines;
    next-token log-probabilities use ``echo`` + ``logprobs`` on the prompt with the candidate token appended.
    """

    name = "openai_server"

    def __init__(self, path: str, *, url: str, served_model: Optional[str] = None, max_length: Optional[int] = None,
                 concurrency: int = 32, timeout_s: float = 600.0, tokenizer=None, **_):
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
                               f"`vllm serve {self.model}` or fix policy.url / genrm.url") from err

    def _map(self, bodies: list[dict]) -> list[dict]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._post, bodies))

    def generate(self, prompts: list[list[int]], *, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                 max_new_tokens: int = 256, seed: int = 0, seeds: Optional[list[int]] = None) -> list[list[Completion]]:
        seeds = seeds if seeds is not None else [seed + i for i in range(len(prompts))]
        bodies = [{"model": self.model, "prompt": self._fit(p, max_new_tokens), "n": n, "temperature": temperature,
                   "top_p": top_p if temperature > 0 else 1.0, "max_tokens": max_new_tokens, "seed": seeds[i],
                   "stop_token_ids": self.stop_ids, "skip_special_tokens": True} for i, p in enumerate(prompts)]
        out = []
        for resp in self._map(bodies):
            choices = sorted(resp["choices"], key=lambda c: c.get("index", 0))
            # the API returns text only: token counts (throughput) are the text re-encoded
            out.append([Completion(c["text"], len(self.tokenizer.encode(c["text"], add_special_tokens=False)),
                                   c.get("finish_reason") == "stop") for c in choices])
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

    def close(self) -> None:
        pass


def make_engine(kind: str, path: str, *, url: Optional[str] = None, **kwargs):
    """A server ``url`` means that server; else ``kind`` auto picks vLLM when it is installed and a GPU is
    visible, else transformers."""
    from findap_nemo.inference_backend import resolve_kind

    if url:
        return OpenAIServerEngine(path, url=url, **kwargs)
    if resolve_kind(kind) == "vllm":
        return VLLMEngine(path, **kwargs)
    return HFEngine(path, **kwargs)
