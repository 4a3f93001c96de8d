"""SDPA core attention for megatron's local spec computes what megatron's unfused DotProductAttention computes."""

from __future__ import annotations

import pytest
import torch


def _modules(heads: int, groups: int, dim: int):
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from findap_nemo.config.schema import ModelConfig, ParallelConfig, PrecisionConfig
    from findap_nemo.model.builder import transformer_config
    from findap_nemo.model.sdpa_attention import SDPADotProductAttention

    model = ModelConfig(hidden_size=heads * dim, num_attention_heads=heads, num_query_groups=groups, num_layers=1)
    config = transformer_config(model, ParallelConfig(), PrecisionConfig(params_dtype="fp32"))
    return [cls(config=config, layer_number=1, attn_mask_type=AttnMaskType.causal, attention_type="self")
            for cls in (DotProductAttention, SDPADotProductAttention)]


def _run(module, q, k, v, mask):
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out = module(q, k, v, mask)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    return out.detach(), q.grad, k.grad, v.grad


@pytest.mark.parametrize("heads,groups", [(4, 2), (4, 4), (6, 1)])
@pytest.mark.parametrize("masked", [False, True], ids=["causal", "documents"])
def test_sdpa_matches_unfused_forward_and_backward(dist1, heads, groups, masked):
    from findap_nemo.train.gpt_step import segment_causal_mask

    s, b, dim = 48, 2, 16
    gen = torch.Generator().manual_seed(heads * 10 + groups)
    q = torch.randn(s, b, heads, dim, generator=gen)
    k, v = (torch.randn(s, b, groups, dim, generator=gen) for _ in range(2))
    # three packed documents in row 0, two in row 1
    segments = torch.tensor([[0] * 10 + [1] * 30 + [2] * 8, [0] * 25 + [1] * 23])
    mask = segment_causal_mask(segments) if masked else None
    unfused, sdpa = (_run(m, q, k, v, mask) for m in _modules(heads, groups, dim))
    assert sdpa[0].shape == (s, b, heads * dim)
    for name, a, c in zip(("out", "dq", "dk", "dv"), unfused, sdpa):
        torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-5, msg=name)
    if masked:  # the mask isolates documents: the first token of a document sees only itself, so out = its v
        first = 10
        head_group = torch.arange(heads) // (heads // groups)
        torch.testing.assert_close(sdpa[0][first, 0].view(heads, dim), v[first, 0, head_group], rtol=1e-5,
                                   atol=1e-6)
        causal = _run(_modules(heads, groups, dim)[1], q, k, v, None)[0]
        assert not torch.allclose(causal[first, 0], sdpa[0][first, 0], atol=1e-3)


def test_local_spec_uses_the_configured_attention(dist1):
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    from findap_nemo.config.schema import ModelConfig, ParallelConfig, PrecisionConfig
    from findap_nemo.model.builder import layer_spec, transformer_config
    from findap_nemo.model.sdpa_attention import SDPADotProductAttention

    def core(backend):
        model = ModelConfig(transformer_impl="local", attention_backend=backend)
        spec = layer_spec(model, transformer_config(model, ParallelConfig(), PrecisionConfig(params_dtype="fp32")))
        return spec.layer_specs[0].submodules.self_attention.submodules.core_attention

    assert core("sdpa") is SDPADotProductAttention
    assert core("unfused") is DotProductAttention
    assert ModelConfig().attention_backend == "sdpa"
