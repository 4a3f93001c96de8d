"""Hugging Face transformers engine (CPU or GPU): batched sampling with per-row random streams, greedy decoding,
next-token log-probabilities and log-likelihoods of continuations, on shared-prefix batches."""

from __future__ import annotations

from typing import Optional

from findap_nemo.inference.base import Completion, ContextFit, LoglikResult, cut_at_stop
from findap_nemo.inference.hf_batching import HFCausalLM


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
        the sampler was made for, which rows that stopped have left). Vectorised over rows: only the one uniform
        draw per row comes from that row's generator."""
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1).cpu()
        u = torch.stack([torch.rand((), generator=self.generators[int(r)], dtype=torch.float64) for r in rows])
        if self.top_p >= 1.0:
            return self._inverse_cdf(probs, u, None)
        if probs.shape[-1] <= 4 * self.CANDIDATES:  # a small vocabulary: one sort costs less than top-k + sort
            p, idx = probs.sort(dim=-1, descending=True, stable=True)
            return self._inverse_cdf(p, u, idx)
        # top-k first, a full sort only for rows whose nucleus is wider (a full sort of the vocabulary is slow on CPU)
        top_p, top_i = probs.topk(self.CANDIDATES, dim=-1)
        wide = (top_p.cumsum(-1) - top_p)[:, -1] < self.top_p  # the last candidate is still in the nucleus
        if not bool(wide.any()):
            return self._inverse_cdf(top_p, u, top_i)
        tokens = torch.empty(len(rows), dtype=torch.long)
        narrow = ~wide
        if bool(narrow.any()):
            tokens[narrow] = self._inverse_cdf(top_p[narrow], u[narrow], top_i[narrow])
        p, idx = probs[wide].sort(dim=-1, descending=True, stable=True)
        tokens[wide] = self._inverse_cdf(p, u[wide], idx)
        return tokens

    def _inverse_cdf(self, p, u, idx):
        """Rows of probabilities ``p`` sorted descending (any order when top_p is 1), cut to the nucleus (a prefix,
        as the mass before a token only grows), then token ``idx[j]`` for the first j whose cumulative mass passes
        ``u`` x the nucleus mass."""
        import torch

        if self.top_p < 1.0:
            p = p * ((p.cumsum(-1) - p) < self.top_p)
        cum = p.double().cumsum(-1)
        j = torch.searchsorted(cum, (u * cum[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
        j = torch.minimum(j, (p > 0).sum(-1).clamp(min=1) - 1)  # float rounding at the top end stays in the nucleus
        return j if idx is None else idx.gather(-1, j.unsqueeze(-1)).squeeze(-1)

    def __call__(self, input_ids, scores):
        """As a transformers logits processor: only the drawn token stays finite."""
        import torch

        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(scores.shape[0]), self.draw(scores, range(scores.shape[0])).to(scores.device)] = 0.0
        return out


class HFEngine(ContextFit, HFCausalLM):
    """A transformers model (:class:`~findap_nemo.inference.hf_batching.HFCausalLM`) on shared-prefix batches sorted
    by length to pad little: sampling with per-row random streams, greedy decoding, next-token log-probs and
    log-likelihoods of continuations."""

    name = "hf"

    def __init__(self, path: str, *, device: str = "auto", dtype: str = "auto", batch_size: int = 16,
                 max_length: Optional[int] = None, device_map: Optional[str] = None, tokenizer=None,
                 share_prefix: bool = True, drop_finished: bool = True, **_):
        HFCausalLM.__init__(self, path, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length,
                            device_map=device_map, tokenizer=tokenizer, share_prefix=share_prefix,
                            drop_finished=drop_finished)
        self.truncated_prompts = 0  # prompts cut from the left to fit the context (reported in the summary)

    def generate(self, prompts: list[list[int]], *, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                 max_new_tokens: int = 256, seed: int = 0, seeds: Optional[list[int]] = None,
                 progress=None) -> list[list[Completion]]:
        """``n`` completions per prompt; greedy when temperature is 0. Deterministic for a given seed and batch.

        With ``seeds`` (one per prompt) every sample draws from a random stream of its own (``row_seeds``):
        its tokens depend only on the prompt and that seed, not on which prompts share the batch (up to the float
        rounding of padded batches), so batches stay full and a resumed run samples what it would have."""
        import torch
        from transformers import LogitsProcessorList

        from findap_nemo.inference.hf_batching import decode

        torch.manual_seed(seed)
        per_call = max(1, self.batch_size // n)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        out: list[list[Completion]] = [[] for _ in prompts]
        sample = temperature > 0
        for start in range(0, len(order), per_call):
            idx = order[start:start + per_call]
            # each prompt's n samples in a row (num_return_sequences' order); the batch's common prefix is
            # prefilled once for all
            fitted = {i: self._fit(prompts[i], max_new_tokens) for i in idx}  # each cut prompt counted once
            sampler = RowSeededSampler([s for i in idx for s in row_seeds(seeds[i], n)], temperature, top_p) \
                if sample and seeds is not None else None
            if self.drop_finished and (sampler is not None or not sample):
                # rows leave the batch as they stop (hf_batching.decode); seeded rows keep their own streams; each
                # prompt is prefilled once for its n samples
                new = decode(self.model, self._batch([fitted[i] for i in idx]), max_new_tokens, self.stop_ids,
                             pick=sampler.draw if sampler is not None else None, repeat=n)
            else:
                batch = self._batch([fitted[i] for i in idx for _ in range(n)])
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
                cut = len(fitted[i]) < len(prompts[i])
                for toks in new[j * n:(j + 1) * n]:
                    kept, stopped = cut_at_stop(toks, self.stop_ids)
                    out[i].append(Completion(self.tokenizer.decode(kept, skip_special_tokens=True), len(kept),
                                             stopped, cut))
            if progress is not None:
                progress.update(len(idx))
        return out

    def next_token_logprobs(self, prompts: list[list[int]], token_ids: list[int],
                            groups: Optional[list] = None) -> list[list[float]]:
        """log p(token | prompt) for each of ``token_ids``, from one forward pass (last position's logits only).

        Batches never mix ``groups``: padded batches change the last bits of the scores, so with one group per
        GenRM prompt a prompt's scores do not depend on which other prompts were judged with it."""
        import torch

        from findap_nemo.inference.hf_batching import last_logits

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

    def loglik(self, requests: list[tuple[list[int], list[int]]], progress=None) -> list[LoglikResult]:
        import torch

        from findap_nemo.inference.hf_batching import last_logits

        out: list[Optional[LoglikResult]] = [None] * len(requests)
        # one-token continuations of the same context (option letters) share a single forward pass
        shared = [i for i, (ctx, cont) in enumerate(requests) if len(cont) == 1 and len(ctx) + 1 <= self.max_length]
        self._loglik_one_token(requests, shared, out, progress)
        done = set(shared)
        order = sorted((i for i in range(len(requests)) if i not in done),
                       key=lambda i: -(len(requests[i][0]) + len(requests[i][1])))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            seqs, conts, cut = [], [], []
            for i in idx:
                ctx, cont = requests[i]
                full = (ctx + cont)[-self.max_length:]
                seqs.append(full)
                conts.append(cont)
                cut.append(len(ctx) + len(cont) > self.max_length)
            keep = max(len(c) for c in conts) + 1
            with torch.inference_mode():  # only the continuation's logits: B x keep x vocab, not B x T x vocab
                logits = last_logits(self.model, self._batch(seqs, reserve=keep), keep).float()
            logp = torch.log_softmax(logits[:, :-1, :], dim=-1)  # position k predicts token k+1 of the kept tail
            for j, i in enumerate(idx):
                c = conts[j]
                n = len(c)
                rows = logp[j, keep - 1 - n:, :]
                target = torch.tensor(c, device=rows.device)
                tok_lp = rows.gather(-1, target[:, None]).squeeze(-1)
                greedy = bool((rows.argmax(-1) == target).all())
                out[i] = LoglikResult(float(tok_lp.sum()), n, greedy, cut[j])
            if progress is not None:
                progress.update(len(idx))
        return out  # type: ignore[return-value]

    def _loglik_one_token(self, requests, indices: list[int], out: list, progress=None) -> None:
        """Score one-token continuations from the last position of each DISTINCT context: a k-option letter
        question costs one forward pass instead of k (the same numbers as scoring ctx + letter separately)."""
        import torch

        from findap_nemo.inference.hf_batching import last_logits

        by_ctx: dict[tuple, list[int]] = {}
        for i in indices:
            by_ctx.setdefault(tuple(requests[i][0]), []).append(i)
        contexts = sorted(by_ctx, key=len, reverse=True)
        for start in range(0, len(contexts), self.batch_size):
            batch = contexts[start:start + self.batch_size]
            with torch.inference_mode():
                logits = last_logits(self.model, self._batch([list(c) for c in batch]), 1)
                logp = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
            best = logp.argmax(-1).tolist()
            for j, ctx in enumerate(batch):
                for i in by_ctx[ctx]:
                    tok = requests[i][1][0]
                    out[i] = LoglikResult(float(logp[j, tok]), 1, best[j] == tok, False)
            if progress is not None:
                progress.update(sum(len(by_ctx[c]) for c in batch))
