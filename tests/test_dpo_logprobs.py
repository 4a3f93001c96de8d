"""Vocab-parallel log-probs: TP2 (each rank holds half the vocabulary) equals TP1 and the full log-softmax,
in value and gradient. The module doubles as the torchrun script (``python -m torch.distributed.run ... this``)."""

from __future__ import annotations

import os
import sys

import torch

B, S, V = 3, 7, 256


def _inputs():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, S, V, generator=g) * 4.0
    labels = torch.randint(0, V, (B, S), generator=g)
    return logits, labels


REAL_VOCABS = (250, 120)  # 250: rank 1 of TP2 holds 6 padded rows; 120: rank 1 holds only padding


def _padded_logits(real: int) -> torch.Tensor:
    logits, _ = _inputs()
    logits = logits.clone()
    logits[..., real:] = 40.0
    return logits


def _worker(out_path: str) -> None:
    from megatron.core import parallel_state as ps

    from findap_nemo.config.schema import ParallelConfig
    from findap_nemo.dpo.logprobs import vocab_parallel_log_probs
    from findap_nemo.parallel import destroy_distributed, init_distributed

    init_distributed(ParallelConfig(tensor_model_parallel_size=int(os.environ["WORLD_SIZE"])), seed=1)
    tp, rank = ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
    logits, labels = _inputs()
    part = V // tp
    local = logits[..., rank * part:(rank + 1) * part].clone().requires_grad_(True)
    lp = vocab_parallel_log_probs(local, labels)
    (lp * torch.arange(1, S + 1).float()).sum().backward()  # position-weighted, so a wrong shift shows
    grads = [torch.zeros_like(local) for _ in range(tp)]
    torch.distributed.all_gather(grads, local.grad.contiguous(), group=ps.get_tensor_model_parallel_group())
    masked = {}
    for real in REAL_VOCABS:  # padded rows hold large garbage logits that would dominate an unmasked softmax
        padded = _padded_logits(real)
        local = padded[..., rank * part:(rank + 1) * part].clone().requires_grad_(True)
        mlp = vocab_parallel_log_probs(local, labels % real, vocab_size=real)
        mlp.sum().backward()
        g = [torch.zeros_like(local) for _ in range(tp)]
        torch.distributed.all_gather(g, local.grad.contiguous(), group=ps.get_tensor_model_parallel_group())
        masked[real] = {"logps": mlp.detach(), "grad": torch.cat(g, -1)}
    if torch.distributed.get_rank() == 0:
        torch.save({"logps": lp.detach(), "grad": torch.cat(grads, -1), "masked": masked}, out_path)
    destroy_distributed()


def _reference():
    logits, labels = _inputs()
    logits.requires_grad_(True)
    lp = torch.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0]
    (lp * torch.arange(1, S + 1).float()).sum().backward()
    return lp.detach(), logits.grad


def test_vocab_parallel_log_probs_tp2_equals_tp1_and_full_softmax(tmp_path):
    from helpers import torchrun

    got = {}
    for tp in (1, 2):
        out = tmp_path / f"tp{tp}.pt"
        torchrun(__file__, str(out), nproc=tp, timeout=300)
        got[tp] = torch.load(out)
    ref_lp, ref_grad = _reference()
    for tp in (1, 2):
        torch.testing.assert_close(got[tp]["logps"], ref_lp, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[tp]["grad"], ref_grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[2]["logps"], got[1]["logps"], rtol=1e-6, atol=1e-6)
    assert (ref_lp < 0).all()
    # padded vocabulary rows: the log-probs of the unpadded (HF-sized) softmax, zero gradient on padded rows
    _, labels = _inputs()
    for real in REAL_VOCABS:
        hf_logits = _padded_logits(real)[..., :real].clone().requires_grad_(True)
        hf = torch.log_softmax(hf_logits, -1).gather(-1, (labels % real)[..., None])[..., 0]
        hf.sum().backward()
        unmasked = torch.log_softmax(_padded_logits(real), -1).gather(-1, (labels % real)[..., None])[..., 0]
        assert (unmasked < hf - 1.0).all()  # without the mask the garbage rows would shift every log-prob
        for tp in (1, 2):
            m = got[tp]["masked"][real]
            torch.testing.assert_close(m["logps"], hf.detach(), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(m["grad"][..., :real], hf_logits.grad, rtol=1e-5, atol=1e-5)
            assert (m["grad"][..., real:] == 0).all() and torch.isfinite(m["grad"]).all()


if __name__ == "__main__":
    _worker(sys.argv[1])
