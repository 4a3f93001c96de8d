"""RMSNorm for megatron's local (non-Transformer-Engine) layer spec."""

from __future__ import annotations

import torch


class RMSNorm(torch.nn.Module):
    """Llama's RMSNorm (computed in fp32, as Hugging Face does, so converted checkpoints match bit for bit).

    megatron's own choice for the local spec is apex's fused norm or ``WrappedTorchNorm``; the latter refuses
    sequence parallelism. Under SP a norm sees a sequence shard, so its weight gradient must be summed over the TP
    group: tagging the weight ``sequence_parallel`` makes megatron's grad finalisation do exactly that, as it does
    for apex/TE norms.
    """

    def __init__(self, config, hidden_size: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, dtype=config.params_dtype,
                                                    device=None if config.use_cpu_initialization else
                                                    torch.cuda.current_device()))
        self.weight.sequence_parallel = bool(config.sequence_parallel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dtype)
