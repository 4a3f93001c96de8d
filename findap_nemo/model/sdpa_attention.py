"""Core attention for megatron's local layer spec through ``torch.nn.functional.scaled_dot_product_attention``.

megatron's ``DotProductAttention`` materialises the full [b, heads, s, s] score matrix (baddbmm, masked_fill, fp32
softmax, bmm); SDPA computes the same softmax(QK^T * scale + mask) V with torch's fused kernels (flash attention on
CPU and GPU), which is faster and keeps no score matrix for backward. It is the local spec's default
(``model.attention_backend=sdpa``); ``unfused`` keeps megatron's module as the reference.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from megatron.core import tensor_parallel
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType


class SDPADotProductAttention(DotProductAttention):
    """Drop-in for megatron's ``DotProductAttention``: same constructor, same [sq, b, heads, dim] inputs and
    [sq, b, heads * dim] output, same masks (None = causal, else megatron's boolean mask where True = masked), same
    softmax scale, GQA groups mapped to query heads as megatron's ``repeat_interleave`` does. Inherits the module
    (no parameters for the vanilla softmax), so checkpoints are interchangeable with the unfused path.

    Softmax variants SDPA cannot express (off-by-one / learnable offset, sliding windows) run megatron's forward.
    """

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attention_mask: Tensor | None,
                attn_mask_type: AttnMaskType | None = None, attention_bias: Tensor | None = None,
                packed_seq_params=None):
        if self.softmax_offset is not None or self.scale_mask_softmax.window_size is not None:
            return super().forward(query, key, value, attention_mask, attn_mask_type, attention_bias,
                                   packed_seq_params)
        assert packed_seq_params is None, "packed sequences (THD) need Transformer Engine's attention"
        assert attention_bias is None, "attention bias is not supported by the local spec's attention"

        sq, b, heads, _ = query.shape
        sk = key.size(0)
        # megatron divides the scale by the layer number when apply_query_key_layer_scaling is on and the softmax
        # multiplies it back: the product is the effective scale.
        scale = self.softmax_scale * (self.scale_mask_softmax.scale or 1.0)
        mask, causal = None, False
        if attention_mask is not None:
            mask = ~attention_mask  # megatron: True = masked out; SDPA: True = attend
        elif self.attn_mask_type == AttnMaskType.causal and sq > 1:
            assert sq == sk, "causal mask is only for self attention"
            causal = True

        dropout = self.attention_dropout.p if self.training else 0.0
        # [s, b, n, d] -> [b, n, s, d]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))

        def attend():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal,
                                                  scale=scale, enable_gqa=k.size(1) != heads)

        if dropout > 0 and not self.config.sequence_parallel:
            with tensor_parallel.get_cuda_rng_tracker().fork():  # per-TP-rank dropout streams, as megatron
                context = attend()
        else:
            context = attend()
        # [b, n, sq, d] -> [sq, b, n * d]
        return context.permute(2, 0, 1, 3).reshape(sq, b, self.hidden_size_per_partition)
