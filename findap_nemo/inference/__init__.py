"""Inference for the stages that run models outside megatron-core: GenRM (sampling, FAP scores, SCP critiques) and
FinEval (answers, multiple-choice log-likelihoods). One engine interface (:mod:`~findap_nemo.inference.base`),
three engines: transformers (``hf``), vLLM (``vllm``), and an OpenAI-compatible server (a URL). The ``backend:``
keys both stages share live in :mod:`~findap_nemo.inference.config`.

Adding an engine: a class with ``generate``, ``next_token_logprobs``, ``loglik`` and ``close`` over token ids
(see ``base``), and a branch in :func:`make_engine`.
"""

from __future__ import annotations

from typing import Optional


def make_engine(kind: str, path: str, *, url: Optional[str] = None, **kwargs):
    """The engine for the model at ``path`` (its tokenizer is always loaded from there): a server ``url`` means
    that server; else ``kind`` (``auto`` picks vLLM when it is installed and a GPU is visible, else transformers).
    Keys an engine does not use are ignored by it."""
    from findap_nemo.inference.config import resolve_kind

    if url:
        from findap_nemo.inference.server import OpenAIServerEngine

        return OpenAIServerEngine(path, url=url, **kwargs)
    if resolve_kind(kind) == "vllm":
        from findap_nemo.inference.vllm import VLLMEngine

        return VLLMEngine(path, **kwargs)
    from findap_nemo.inference.hf import HFEngine

    return HFEngine(path, **kwargs)
