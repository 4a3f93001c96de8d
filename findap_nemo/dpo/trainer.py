"""The shared :class:`~findap_nemo.train.trainer.Trainer` with DPO's two differences.

1. A micro-batch of ``m`` pairs is ``2m`` sequences, so the pipeline schedule is told ``2 x micro_batch_size``.
2. Without precomputed reference log-probs, the frozen reference runs forward-only through the same schedule over
   the same micro-batches just before the policy's pass (pipeline stages exchange its activations exactly like the
   policy's); its per-sequence sums are attached to the policy's micro-batches on the last stage. Nothing of it is
   kept between steps.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from findap_nemo.train.trainer import Trainer


class DPOTrainer(Trainer):
    def __init__(self, cfg, forward_step, datasets, *, collate_fn, reference=None, **kwargs):
        super().__init__(cfg, forward_step, datasets, collate_fn=collate_fn, name="dpo",
                         tokens_per_sample=2 * cfg.schedule.seq_length, **kwargs)
        self.reference = reference

    def train_step(self) -> dict[str, float]:
        metrics = super().train_step()
        self._tokens_per_pair = metrics.get("tokens_per_pair")
        return metrics

    def _throughput(self, seconds: float) -> dict[str, float]:
        """tokens_per_s counts real (unpadded) chosen + rejected tokens; the padded rate is kept beside it."""
        out = super()._throughput(seconds)
        if getattr(self, "_tokens_per_pair", None):
            out["padded_tokens_per_s"] = out["tokens_per_s"]
            out["tokens_per_s"] = self._tokens_per_pair * self.cfg.schedule.global_batch_size / max(seconds, 1e-9)
        return out

    def _fbf(self, forward_step, model, make_iter: Callable[[], Iterator[dict]], forward_only: bool) -> list:
        """One schedule over this step's micro-batches; each virtual-pipeline chunk reads its own iterator."""
        from megatron.core.pipeline_parallel import get_forward_backward_func

        seq = self.cfg.schedule.seq_length
        it = [make_iter() for _ in model] if len(model) > 1 else make_iter()
        return get_forward_backward_func()(
            forward_step_func=forward_step, data_iterator=it, model=model, num_microbatches=self.num_microbatches,
            seq_length=seq, micro_batch_size=2 * self.mbs, decoder_seq_length=seq, forward_only=forward_only)

    def _reference_logps(self, split: str, start: int) -> list:
        """Per micro-batch reference sums [2m] (last pipeline stage; None elsewhere)."""
        from findap_nemo.dpo.step import make_reference_forward_step

        with torch.no_grad():
            outs = self._fbf(make_reference_forward_step(self.cfg.model.vocab_size), self.reference,
                             lambda: self._microbatches(split, start, self.num_microbatches), forward_only=True)
        return [o["ref_logps"] for o in outs] if outs else [None] * self.num_microbatches

    def _run_schedule(self, split: str, forward_only: bool) -> dict[str, float]:
        start = self.consumed[split]
        refs = self._reference_logps(split, start) if self.reference is not None else None

        def batches() -> Iterator[dict]:
            it = self._microbatches(split, start, self.num_microbatches)
            return _attach(it, refs) if refs is not None else it

        outputs = self._fbf(self.forward_step, self.model, batches, forward_only)
        self.consumed[split] = start + self.cfg.schedule.global_batch_size
        return self._reduce_metrics(outputs)


def _attach(batches: Iterator[dict], refs: list) -> Iterator[dict]:
    for batch, ref in zip(batches, refs):
        if ref is not None:
            batch["ref_logps"] = ref
        yield batch
