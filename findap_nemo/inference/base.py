"""What every engine returns and shares: completions, log-likelihoods, and prompts cut to fit the context.

An engine (:mod:`~findap_nemo.inference.hf`, :mod:`~findap_nemo.inference.vllm`,
:mod:`~findap_nemo.inference.server`) takes token ids, so prompts are tokenised once, the same way, whichever engine
runs them, and offers three operations:

- ``generate(prompts, n=, temperature=, top_p=, max_new_tokens=, seeds=)``: n sampled (or greedy) continuations per
  prompt, stopped at the chat template's stop tokens (GenRM's samples and critiques, FinEval's answers);
- ``next_token_logprobs(prompts, token_ids)``: log p(token | prompt) of chosen next tokens (FAP's P(Yes));
- ``loglik(requests)``: log p(continuation | context) summed over the continuation, and whether it is the greedy
  one (FinEval's multiple choice).

Results come back in request order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Completion:
    text: str
    num_tokens: int  # generated tokens, without the stop token
    finished: bool  # ended on a stop token (False: cut at max_new_tokens)
    truncated_prompt: bool = False  # the prompt was cut from the left to fit the context


@dataclass
class LoglikResult:
    logprob: float  # sum of log p(continuation token | prefix)
    num_tokens: int
    is_greedy: bool  # every continuation token is the argmax
    truncated_prompt: bool = False  # context + continuation were cut from the left to fit the context


class ContextFit:
    """Prompts longer than the context (minus the tokens to generate) are cut from the left and counted in
    ``truncated_prompts`` (GenRM's summary reports it; FinEval reads each result's ``truncated_prompt``).
    Engines set ``max_length``."""

    max_length: int
    truncated_prompts: int = 0

    def _fit(self, prompt: list[int], max_new_tokens: int) -> list[int]:
        budget = max(self.max_length - max_new_tokens, 1)
        if len(prompt) > budget:
            self.truncated_prompts += 1
            return prompt[-budget:]
        return prompt


def cut_at_stop(tokens: list[int], stop_ids) -> tuple[list[int], bool]:
    """The tokens before the first stop token, and whether there was one."""
    cut = next((k for k, t in enumerate(tokens) if t in stop_ids), None)
    return (tokens, False) if cut is None else (tokens[:cut], True)
