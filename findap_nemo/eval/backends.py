"""Inference backends: Hugging Face transformers (CPU/GPU, batched) and vLLM when installed.

Both take token ids (so prompts are tokenised once, the same way, whichever backend runs them), decode greedily
and score continuations by log-likelihood. Batches are sorted by length to waste little padding; results come
back in request order.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from typing import Optional

from findap_nemo.hf_batching import HFCausalLM

log = logging.getLogger(__name__)


@dataclass
class Generation:
    text: str
    num_tokens: int  # generated tokens up to and without the stop token
    truncated_prompt: bool = False  # the prompt was cut from the left to fit the context


@dataclass
class LoglikResult:
    logprob: float  # sum of log p(continuation token | prefix)
    num_tokens: int
    is_greedy: bool  # every continuation token is the argmax
    truncated_prompt: bool = False


class HFBackend(HFCausalLM):
    """``AutoModelForCausalLM`` in eval mode (:class:`~findap_nemo.hf_batching.HFCausalLM`): greedy generation and
    log-likelihoods of continuations over shared-prefix batches."""

    name = "hf"

    def __init__(self, path: str, *, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
                 max_length: Optional[int] = None, device_map: Optional[str] = None, seed: int = 0,
                 tokenizer=None, share_prefix: bool = True, drop_finished: bool = True):
        import torch

        torch.manual_seed(seed)
        super().__init__(path, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length,
                         device_map=device_map, tokenizer=tokenizer, share_prefix=share_prefix,
                         drop_finished=drop_finished)

    def generate(self, prompts: list[list[int]], max_new_tokens: int, progress=None) -> list[Generation]:
        import torch

        from findap_nemo.hf_batching import decode

        budget = max(self.max_length - max_new_tokens, 1)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        out: list[Optional[Generation]] = [None] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            seqs = [prompts[i][-budget:] for i in idx]
            batch = self._batch(seqs)
            if self.drop_finished:
                new = decode(self.model, batch, max_new_tokens, self.stop_ids)
            else:
                with torch.inference_mode():
                    gen = self.model.generate(**batch.generate_kwargs(), max_new_tokens=max_new_tokens,
                                              do_sample=False, num_beams=1, eos_token_id=self.stop_ids,
                                              pad_token_id=self.pad_id)
                new = gen[:, batch.input_ids.shape[1]:].tolist()
            for j, i in enumerate(idx):
                toks = new[j]
                cut = next((k for k, t in enumerate(toks) if t in self.stop_ids), len(toks))
                toks = toks[:cut]
                out[i] = Generation(self.tokenizer.decode(toks, skip_special_tokens=True), len(toks),
                                    len(prompts[i]) > budget)
            if progress is not None:
                progress.update(len(idx))
        return out  # type: ignore[return-value]

    def loglik(self, requests: list[tuple[list[int], list[int]]], progress=None) -> list[LoglikResult]:
        import torch

        from findap_nemo.hf_batching import last_logits

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

        from findap_nemo.hf_batching import last_logits

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

class VLLMBackend:
    """vLLM offline engine: greedy ``SamplingParams(temperature=0)``; log-likelihoods from prompt logprobs."""

    name = "vllm"

    def __init__(self, path: str, *, dtype: str = "auto", seed: int = 0, tensor_parallel_size: int = 1,
                 max_length: Optional[int] = None, gpu_memory_utilization: float = 0.9, tokenizer=None, **_):
        from vllm import LLM

        from findap_nemo.tokenizer import load_tokenizer, stop_token_ids

        self.tokenizer = tokenizer or load_tokenizer(path)
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.llm = LLM(model=path, dtype={"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype),
                       seed=seed, tensor_parallel_size=tensor_parallel_size, max_model_len=max_length,
                       gpu_memory_utilization=gpu_memory_utilization)
        try:
            self.max_length = self.llm.llm_engine.model_config.max_model_len
        except AttributeError:  # engine internals differ across vLLM versions
            self.max_length = max_length or self.tokenizer.model_max_length

    def generate(self, prompts: list[list[int]], max_new_tokens: int, progress=None) -> list[Generation]:
        from vllm import SamplingParams

        budget = max(self.max_length - max_new_tokens, 1)
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=self.stop_ids,
                                skip_special_tokens=True)
        inputs = [{"prompt_token_ids": p[-budget:]} for p in prompts]
        outs = self.llm.generate(inputs, params, use_tqdm=False)
        if progress is not None:
            progress.update(len(prompts))
        return [Generation(o.outputs[0].text, len([t for t in o.outputs[0].token_ids if t not in self.stop_ids]),
                           len(p) > budget) for o, p in zip(outs, prompts)]

    def loglik(self, requests: list[tuple[list[int], list[int]]], progress=None) -> list[LoglikResult]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1)
        fulls = [(c + x)[-self.max_length + 1:] for c, x in requests]
        outs = self.llm.generate([{"prompt_token_ids": f} for f in fulls], params, use_tqdm=False)
        results = []
        for (ctx, cont), full, o in zip(requests, fulls, outs):
            n = len(cont)
            lp, greedy = 0.0, True
            for pos in range(len(full) - n, len(full)):
                entry = o.prompt_logprobs[pos]
                tok = full[pos]
                if entry is None:  # the first prompt token has no prediction
                    greedy = False
                    continue
                lp += entry[tok].logprob
                best = max(entry.items(), key=lambda kv: kv[1].logprob)[0]
                greedy &= best == tok
            results.append(LoglikResult(lp, n, greedy, len(ctx) + n > len(full)))
        if progress is not None:
            progress.update(len(requests))
        return results

    def close(self) -> None:
        """Free the GPU for the next model (vLLM keeps state in process-wide groups; best effort)."""
        del self.llm
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception as err:  # older/newer vLLM layouts: memory is still freed by gc below in most versions
            log.debug("vLLM cleanup: %s", err)
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def make_backend(kind: str, path: str, **kwargs):
    """``hf``, ``vllm``, or ``auto`` (vLLM when installed and a GPU is present, else HF)."""
    from findap_nemo.inference_backend import resolve_kind

    if resolve_kind(kind) == "vllm":
        return VLLMBackend(path, **kwargs)
    kwargs.pop("tensor_parallel_size", None)
    kwargs.pop("gpu_memory_utilization", None)
    return HFBackend(path, **kwargs)
