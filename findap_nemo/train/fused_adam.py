"""torch's fused Adam for megatron optimizers built without apex / Transformer Engine (CPU, or GPUs without them).

``get_megatron_optimizer`` falls back to plain ``torch.optim.Adam`` when neither FusedAdam imports, and torch then
picks its per-parameter for-loop implementation on CPU: one small kernel chain per tensor, 4-8x slower than torch's
fused kernel. The optimizer takes no such argument, so the flag is set on the built optimizer's parameter groups;
it is saved with them in checkpoints and a resumed run keeps what it was saved with.
"""

from __future__ import annotations

import torch

_FUSED_DEVICES = ("cpu", "cuda")


def torch_adams(optimizer) -> list[torch.optim.Optimizer]:
    """The torch Adam/AdamW instances inside a megatron (possibly chained) optimizer."""
    found = []
    for opt in getattr(optimizer, "chained_optimizers", None) or [optimizer]:
        inner = getattr(opt, "optimizer", None)
        if isinstance(inner, (torch.optim.Adam, torch.optim.AdamW)):
            found.append(inner)
    return found


def use_fused_adam(optimizer) -> int:
    """Switch torch Adam parameter groups to ``fused=True`` where every parameter allows it; the number switched.

    Same update as the for-loop implementation up to float rounding (the kernel evaluates the same formula)."""
    switched = 0
    for adam in torch_adams(optimizer):
        for group in adam.param_groups:
            if group.get("fused") or group.get("differentiable"):
                continue
            if all(p.device.type in _FUSED_DEVICES and torch.is_floating_point(p) for p in group["params"]):
                group["fused"], group["foreach"] = True, False
                switched += 1
        if switched:
            adam.defaults.update(fused=True, foreach=False)
    return switched
