"""What the current machine offers (GPU, Transformer Engine, apex), probed once and cached."""

from __future__ import annotations

import functools
import importlib.util


@functools.cache
def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@functools.cache
def is_hopper() -> bool:
    import torch

    return has_cuda() and torch.cuda.get_device_capability()[0] >= 9


@functools.cache
def has_transformer_engine() -> bool:
    if importlib.util.find_spec("transformer_engine") is None:
        return False
    try:
        import transformer_engine.pytorch  # noqa: F401
    except Exception:  # a CPU box can have the package but not its CUDA libraries
        return False
    return True


@functools.cache
def has_apex() -> bool:
    """NVIDIA apex (not PyPI's unrelated `apex`): detected by its fused kernels."""
    return importlib.util.find_spec("apex") is not None and importlib.util.find_spec("apex.normalization") is not None


EXIT_REQUEUE = 75
"""Exit code after a signal-triggered checkpoint (EX_TEMPFAIL): the SLURM script requeues the job on it."""
