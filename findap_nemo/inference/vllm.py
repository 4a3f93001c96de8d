"""vLLM offline engine (GPU): continuous batching, paged KV cache, and prefix caching for prompts that share a
template (GenRM's judge prompts, FinEval's few-shot blocks)."""

from __future__ import annotations

import gc
import logging
from typing import Optional

from findap_nemo.inference.base import Completion, ContextFit, LoglikResult

log = logging.getLogger(__name__)

VLLM_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class VLLMEngine(ContextFit):
    name = "vllm"

    def __init__(self, path: str, *, dtype: str = "auto", max_length: Optional[int] = None, seed: int = 0,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85, tokenizer=None, **_):
        from vllm import LLM

        from findap_nemo.tokenizer import load_tokenizer, stop_token_ids

        self.tokenizer = tokenizer or load_tokenizer(path)
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.llm = LLM(model=path, dtype=VLLM_DTYPES.get(dtype, dtype), seed=seed,
                       tensor_parallel_size=tensor_parallel_size, max_model_len=max_length,
                       gpu_memory_utilization=gpu_memory_utilization, enable_prefix_caching=True)
        try:
            self.max_length = self.llm.llm_engine.model_config.max_model_len
        except AttributeError:  # engine internals differ across vLLM versions
            self.max_length = max_length or self.tokenizer.model_max_length
        self.truncated_prompts = 0

    def generate(self, prompts: list[list[int]], *, n: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                 max_new_tokens: int = 256, seed: int = 0, seeds: Optional[list[int]] = None,
                 progress=None) -> list[list[Completion]]:
        from vllm import SamplingParams

        def params_for(s: int):
            return SamplingParams(n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                                  max_tokens=max_new_tokens, stop_token_ids=self.stop_ids, seed=s,
                                  skip_special_tokens=True)

        params = [params_for(s) for s in seeds] if seeds is not None else params_for(seed)
        fitted = [self._fit(p, max_new_tokens) for p in prompts]
        cut = [len(f) < len(p) for f, p in zip(fitted, prompts)]
        inputs = [{"prompt_token_ids": f} for f in fitted]
        outs = self.llm.generate(inputs, params, use_tqdm=False)
        if progress is not None:
            progress.update(len(prompts))
        return [[Completion(c.text, len([t for t in c.token_ids if t not in self.stop_ids]),
                            c.finish_reason == "stop", k) for c in o.outputs] for o, k in zip(outs, cut)]

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

    def loglik(self, requests: list[tuple[list[int], list[int]]], progress=None) -> list[LoglikResult]:
        """From prompt logprobs of context + continuation (the top-1 entry tells whether each token is greedy)."""
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
