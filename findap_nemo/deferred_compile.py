"""Defer ``torch.compile`` of plain functions to their first call.

megatron-core decorates ~40 fusion kernels with ``torch.compile`` when its modules are imported
(``megatron.core.jit.jit_fuser``). Each decoration imports dynamo and inductor and sets up a compiler config:
~3 CPU-seconds in every process that imports megatron-core (each rank of each stage), although most of those
kernels are never called (none on CPU, where the fusions are off). Deferring the compile to the first call keeps the
behaviour (a kernel that runs is compiled exactly as before, with the same options) and drops the start-up cost.
Modules (``torch.compile(model)``) are compiled eagerly as usual: callers rely on getting an ``OptimizedModule``.
"""

from __future__ import annotations

import functools

import torch

_EAGER_COMPILE = torch.compile
compiled_functions: list[str] = []
"""The deferred functions compiled so far in this process (module.qualname), in call order."""


def _deferred_compile(model=None, **options):
    if model is None:  # decorator factory: @torch.compile(mode=...)
        return lambda fn: _deferred_compile(fn, **options)
    if isinstance(model, torch.nn.Module) or not callable(model):
        return _EAGER_COMPILE(model, **options)
    compiled = None

    @functools.wraps(model)
    def run(*args, **kwargs):
        nonlocal compiled
        if compiled is None:
            compiled = _EAGER_COMPILE(model, **options)
            _record(model)
        return compiled(*args, **kwargs)

    return run


def _record(fn) -> None:
    compiled_functions.append(f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}")


def defer_torch_compile() -> None:
    """Install the deferral (idempotent); call before megatron-core is imported."""
    torch.compile = _deferred_compile
