"""Measure what a megatron-core training step actually holds in memory on this rank, tensor by tensor.

This is the ground truth the planner's memory model is validated against. CPU torch has no allocator statistics,
so the categories are counted exactly from the tensors themselves:

- weights: the model parameters (inside megatron DDP's contiguous param buffer),
- gradients: DDP's ``main_grad`` buffers,
- optimizer: every tensor in the optimizer state (Adam moments, fp32 master copies, per-parameter step),
- activations: the bytes autograd keeps for backward during one micro-batch forward, collected with
  ``torch.autograd.graph.saved_tensors_hooks`` and de-duplicated by storage (a tensor saved by two ops, or views of
  one buffer, count once). Parameters saved for backward are excluded (they are already counted as weights).

On a GPU, ``peak_allocated`` from the CUDA caching allocator is reported as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from findap_nemo.config.schema import ModelConfig, ParallelConfig, PrecisionConfig


@dataclass
class Measured:
    weights: int
    grads: int
    optimizer: int
    activations: int
    peak_allocated: int | None = None

    @property
    def total(self) -> int:
        return self.weights + self.grads + self.optimizer + self.activations


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


class SavedTensorMeter:
    """Context manager summing the distinct storages autograd saves for backward (activation memory)."""

    def __init__(self, exclude: set[int] | None = None):
        self.exclude = exclude or set()
        self.seen: dict[int, int] = {}

    def _pack(self, t: torch.Tensor):
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            ptr, nbytes = _storage_key(t)
            if ptr not in self.exclude and ptr != 0:
                self.seen[ptr] = max(self.seen.get(ptr, 0), nbytes)
        return t

    @staticmethod
    def _unpack(t):
        return t

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)

    @property
    def bytes(self) -> int:
        return sum(self.seen.values())


def measure_training_memory(model: ModelConfig, parallel: ParallelConfig, precision: PrecisionConfig, *,
                            seq_length: int, micro_batch_size: int) -> Measured:
    """Build the model on this rank (megatron parallel state initialised), run one micro-batch forward/backward and
    an optimizer step, and count the bytes of each category. Pipeline parallelism is not supported here (a middle
    stage needs its neighbours' activations); the planner's per-stage accounting is the same per layer."""
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    from findap_nemo.model.builder import build_model, params_dtype
    from findap_nemo.train.gpt_step import MockGPTDataset

    if parallel.pipeline_model_parallel_size != 1:
        raise ValueError("measure_training_memory supports pipeline_model_parallel_size=1 only")
    dtype = params_dtype(precision)
    chunks = build_model(model, parallel, precision)
    optimizer = get_megatron_optimizer(
        OptimizerConfig(optimizer="adam", lr=1e-4, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
                        params_dtype=dtype, use_distributed_optimizer=parallel.use_distributed_optimizer,
                        clip_grad=1.0), chunks)
    params = [p for c in chunks for p in c.parameters()]
    param_storages = {_storage_key(p)[0] for p in params}
    weights = sum(dict(_storage_key(p) for p in params).values())

    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    ds = MockGPTDataset(micro_batch_size, seq_length, model.vocab_size, seed=0)
    batch = {k: torch.stack([ds[i][k] for i in range(micro_batch_size)]).to(device) for k in ds[0]}
    for c in chunks:
        c.zero_grad_buffer()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with SavedTensorMeter(exclude=param_storages) as meter:
        out = chunks[0](batch["tokens"], batch["position_ids"], None, labels=batch["labels"])
    (out.float() * batch["loss_mask"]).sum().backward()
    del out
    for c in chunks:
        c.finish_grad_sync()
    optimizer.step()

    grads = {}
    for c in chunks:
        for buf in list(c.buffers) + list(getattr(c, "expert_parallel_buffers", [])):
            grads[buf.grad_data.untyped_storage().data_ptr()] = buf.grad_data.untyped_storage().nbytes()
    opt_bytes: dict[int, int] = {}
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(opt, "optimizer", opt)
        for state in inner.state.values():
            for v in state.values():
                if isinstance(v, torch.Tensor):
                    ptr, n = _storage_key(v)
                    opt_bytes[ptr] = n
        # fp32 master copies of half-precision params (distributed or not)
        for group_name in ("shard_fp32_from_float16_groups", "fp32_from_float16_groups"):
            for group in getattr(opt, group_name, []) or []:
                for t in group:
                    ptr, n = _storage_key(t)
                    opt_bytes[ptr] = n
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
    return Measured(weights=weights, grads=sum(grads.values()), optimizer=sum(opt_bytes.values()),
                    activations=meter.bytes, peak_allocated=peak)
