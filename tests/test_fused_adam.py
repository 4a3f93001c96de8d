"""torch's fused Adam inside megatron's optimizer: the same updates as the for-loop Adam megatron builds on CPU."""

from __future__ import annotations

import pytest
import torch


def _steps(dist_opt: bool, fused: bool, steps: int = 3) -> dict[str, torch.Tensor]:
    from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

    from findap_nemo.config.schema import ModelConfig, ParallelConfig, PrecisionConfig
    from findap_nemo.model.builder import build_model
    from findap_nemo.train.fused_adam import torch_adams, use_fused_adam

    torch.manual_seed(0)
    parallel = ParallelConfig(use_distributed_optimizer=dist_opt)
    chunks = build_model(ModelConfig(vocab_size=256), parallel, PrecisionConfig(params_dtype="fp32"))
    optimizer = get_megatron_optimizer(OptimizerConfig(optimizer="adam", lr=1e-2, weight_decay=0.1, clip_grad=1.0,
                                                       use_distributed_optimizer=dist_opt), chunks)
    adams = torch_adams(optimizer)
    assert adams and not any(g.get("fused") for a in adams for g in a.param_groups)  # megatron's CPU default
    if fused:
        assert use_fused_adam(optimizer) == sum(len(a.param_groups) for a in adams)
        assert all(g["fused"] for a in adams for g in a.param_groups)
        assert use_fused_adam(optimizer) == 0  # idempotent
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        optimizer.zero_grad()
        for c in chunks:
            c.zero_grad_buffer()
        for p in chunks[0].parameters():
            p.main_grad.copy_(torch.randn(p.shape, generator=gen) * 0.01)
        ok, _, _ = optimizer.step()
        assert ok
    return {k: v.detach().clone() for k, v in chunks[0].module.state_dict().items() if torch.is_tensor(v)
            and "_extra_state" not in k}


@pytest.mark.parametrize("dist_opt", [False, True], ids=["fp32_optimizer", "distributed_optimizer"])
def test_fused_adam_matches_for_loop_adam(dist1, dist_opt):
    ref, fused = _steps(dist_opt, fused=False), _steps(dist_opt, fused=True)
    init = _steps(dist_opt, fused=False, steps=0)
    assert ref.keys() == fused.keys() and len(ref) > 5
    for k in ref:
        torch.testing.assert_close(fused[k], ref[k], rtol=1e-6, atol=1e-7, msg=k)
    assert any(not torch.equal(ref[k], init[k]) for k in ref)  # the steps did update the weights
