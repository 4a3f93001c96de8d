"""Which inference engine serves a model, and how: the one owner of the ``backend:`` keys that FinEval and GenRM
share (kind, device, dtype, vLLM's tensor parallelism and memory share) and of the rule that picks vLLM or
transformers (:func:`findap_nemo.inference.make_engine` builds the engine); GenRM adds the keys only it uses
(`GenRMBackendConfig`)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Optional

from findap_nemo.config import ConfigError, Problems

BACKENDS = ("auto", "hf", "vllm")
DTYPES = ("auto", "fp32", "bf16", "fp16")


@dataclass
class BackendConfig:
    kind: str = "auto"  # auto (vLLM when installed and a GPU is present) | hf | vllm
    device: str = "auto"  # hf: auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16
    device_map: Optional[str] = None  # hf: "auto" spreads a large model over all visible GPUs
    tensor_parallel_size: int = 1  # vllm: GPUs per model (8 for 70B on one node)
    # vllm: the share of each GPU's memory vLLM takes; GenRM with a judge other than the policy loads two models on
    # the same GPUs: give each about half
    gpu_memory_utilization: float = 0.85

    def validate(self, p: Problems, prefix: str = "backend") -> None:
        p.check(self.kind in BACKENDS, f"{prefix}.kind", self.kind, f"one of {list(BACKENDS)}")
        p.check(self.dtype in DTYPES, f"{prefix}.dtype", self.dtype, f"one of {list(DTYPES)}")
        p.check(self.device in ("auto", "cpu") or self.device.startswith("cuda"), f"{prefix}.device", self.device,
                "auto, cpu, cuda or cuda:N")
        p.check(self.tensor_parallel_size >= 1, f"{prefix}.tensor_parallel_size", self.tensor_parallel_size, ">= 1")
        p.check(0 < self.gpu_memory_utilization <= 1, f"{prefix}.gpu_memory_utilization",
                self.gpu_memory_utilization, "in (0, 1]")


@dataclass
class ServerSpec:
    """A model served by an OpenAI-compatible server (``vllm serve <hf dir>``); its tokenizer is still read from
    the model's folder, so prompts are tokenised here exactly as for a local engine."""

    url: str = ""  # http://host:port (/v1 is added when missing)
    served_model: Optional[str] = None  # the server's name for the model (default: its folder path, as vllm serve)

    def validate(self, p: Problems, prefix: str) -> None:
        p.check(self.url.startswith(("http://", "https://")), f"{prefix}.url", self.url,
                "an http(s):// address of an OpenAI-compatible server")


def has_vllm() -> bool:
    return importlib.util.find_spec("vllm") is not None


def resolve_kind(kind: str, key: str = "backend.kind") -> str:
    """``hf`` or ``vllm``: ``auto`` is vLLM when it is installed and a GPU is visible, else transformers; asking for
    vLLM where it is not installed is a configuration error."""
    if kind == "auto":
        from findap_nemo.runtime import has_cuda

        return "vllm" if has_vllm() and has_cuda() else "hf"
    if kind == "vllm" and not has_vllm():
        raise ConfigError(f"{key}='vllm': vLLM is not installed here; `pip install findap-nemo[vllm]` on a GPU node "
                          f"or use {key}=hf")
    return kind
