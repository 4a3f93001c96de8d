"""Batching token sequences for Hugging Face decoder models (shared by the eval backend and the GenRM engine).

Prompts of one task (or one GenRM judge template) share a long prefix: the chat template's system turn and the
task's instruction are often more than half of every prompt. ``shared_prefix_batch`` runs that prefix once and
hands its KV cache, repeated over the batch, to the forward pass or ``generate`` (vLLM's automatic prefix caching,
for transformers on CPU): the same logits up to float rounding, for a fraction of the prefill FLOPs.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any

# a prefix shorter than this is not worth a separate forward pass
MIN_SHARED_PREFIX = 8


def torch_dtype(name: str, on_gpu: bool):
    """A dtype setting (auto, fp32/float32, bf16/bfloat16, fp16/float16) as a torch dtype; auto is bf16 on a GPU
    and fp32 on CPU."""
    import torch

    if name == "auto":
        return torch.bfloat16 if on_gpu else torch.float32
    return {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
            "fp16": torch.float16, "float16": torch.float16}[name]


class HFCausalLM:
    """A transformers causal LM in eval mode with what every HF inference path needs: its tokenizer, stop tokens,
    pad id and context length, and batches built by :func:`shared_prefix_batch`. The eval backend and the GenRM
    engine are both this, plus their own operations."""

    def __init__(self, path: str, *, device: str = "auto", dtype: str = "auto", batch_size: int = 8,
                 max_length: int | None = None, device_map: str | None = None, tokenizer=None,
                 share_prefix: bool = True, drop_finished: bool = True):
        import torch
        from transformers import AutoModelForCausalLM

        from findap_nemo.tokenizer import load_tokenizer, stop_token_ids

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.tokenizer = tokenizer or load_tokenizer(path)
        kwargs: dict[str, Any] = {"dtype": torch_dtype(dtype, self.device.type == "cuda")}
        if device_map:
            kwargs["device_map"] = device_map
        self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        if device_map:
            self.device = next(self.model.parameters()).device
        else:
            self.model.to(self.device)
        self.model.eval()
        self.batch_size = batch_size
        self.share_prefix = share_prefix  # prefill each batch's common prompt prefix once
        # rows leave the batch as they stop (decode) unless the model's generation_config asks for logits
        # processors, which generate() applies
        self.drop_finished = drop_finished and plain_greedy(self.model)
        cfg_len = getattr(self.model.config, "max_position_embeddings", None) or 4096
        self.max_length = min(max_length or cfg_len, cfg_len)
        self.stop_ids = stop_token_ids(self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]

    def _batch(self, seqs: list[list[int]], reserve: int = 1) -> "SharedPrefixBatch":
        return shared_prefix_batch(self.model, seqs, self.pad_id, self.device, reserve=reserve,
                                   share=self.share_prefix)

    def close(self) -> None:
        import gc

        import torch

        del self.model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def left_pad(seqs: list[list[int]], pad_id: int, device):
    """Left-pad to the longest sequence: (input_ids, attention_mask, position_ids), positions starting at 0 at each
    sequence's first real token, so generation continues every row from its own last token."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), pos.to(device)


def cache_kwarg(model) -> str:
    """The keyword that passes a KV cache: transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name
    is deprecated there and removed in later releases)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@dataclass
class SharedPrefixBatch:
    """A batch laid out as ``[shared prefix][left padding][own suffix]`` per row.

    ``input_ids``/``attention_mask`` cover the whole row (what ``generate`` takes, with ``cache_kwargs``);
    ``suffix_ids``/``suffix_positions`` are what a forward pass over the cached prefix takes. Without a shared
    prefix (``prefix_len == 0``) it is a plain left-padded batch and ``cache_kwargs`` is empty.
    """

    input_ids: Any
    attention_mask: Any
    suffix_ids: Any
    suffix_positions: Any
    prefix_len: int
    cache_kwargs: dict

    def forward_kwargs(self) -> dict:
        return dict(input_ids=self.suffix_ids, attention_mask=self.attention_mask, position_ids=self.suffix_positions,
                    **self.cache_kwargs)

    def generate_kwargs(self) -> dict:
        return dict(input_ids=self.input_ids, attention_mask=self.attention_mask, **self.cache_kwargs)


def shared_prefix_len(seqs: list[list[int]], reserve: int = 1) -> int:
    """Length of the longest common prefix, leaving at least ``reserve`` tokens of every sequence outside it (the
    positions whose logits are read); 0 when shorter than ``MIN_SHARED_PREFIX``."""
    n = min(len(os.path.commonprefix(seqs)), min(len(s) for s in seqs) - reserve)
    return n if n >= MIN_SHARED_PREFIX else 0


def shared_prefix_batch(model, seqs: list[list[int]], pad_id: int, device, *, reserve: int = 1,
                        share: bool = True) -> SharedPrefixBatch:
    """Prefill the common prefix of ``seqs`` once (batch of one), repeat its KV cache over the batch and left-pad
    the suffixes after it. Positions run on from the prefix, so every row sees exactly its own sequence."""
    import torch

    p = shared_prefix_len(seqs, reserve) if share and len(seqs) > 1 else 0
    suffix_ids, suffix_mask, suffix_pos = left_pad([s[p:] for s in seqs], pad_id, device)
    if not p:
        return SharedPrefixBatch(suffix_ids, suffix_mask, suffix_ids, suffix_pos, 0, {})
    from transformers import DynamicCache

    prefix = torch.tensor([seqs[0][:p]], dtype=torch.long, device=device)
    key = cache_kwarg(model)
    cache = DynamicCache()
    with torch.inference_mode():
        model(input_ids=prefix, use_cache=True, logits_to_keep=1, **{key: cache})
    cache.batch_repeat_interleave(len(seqs))
    n = len(seqs)
    mask = torch.cat([torch.ones((n, p), dtype=suffix_mask.dtype, device=device), suffix_mask], dim=1)
    ids = torch.cat([prefix.expand(n, -1), suffix_ids], dim=1)
    return SharedPrefixBatch(ids, mask, suffix_ids, suffix_pos + p, p, {key: cache})


def last_logits(model, batch: SharedPrefixBatch, keep: int):
    """Logits of the last ``keep`` positions of every row (B x keep x vocab), not of the whole batch."""
    return model(**batch.forward_kwargs(), logits_to_keep=keep).logits[:, -keep:, :]


# generation_config fields that change which token greedy decoding picks: a model that sets any of them is decoded
# by ``generate`` itself, which applies them.
_GREEDY_ALTERING = ("repetition_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
                    "suppress_tokens", "begin_suppress_tokens", "forced_bos_token_id", "forced_eos_token_id",
                    "sequence_bias", "min_length", "min_new_tokens", "exponential_decay_length_penalty",
                    "renormalize_logits", "forced_decoder_ids", "watermarking_config")


def plain_greedy(model) -> bool:
    """True when the model's generation_config leaves greedy decoding as plain argmax (what :func:`decode`
    does): every field that would add a logits processor (repetition penalty, suppressed tokens, a minimum length,
    ...) is at transformers' default."""
    from transformers import GenerationConfig

    gc = getattr(model, "generation_config", None)
    if gc is None:
        return True
    default = GenerationConfig()
    return all(getattr(gc, key, None) == getattr(default, key, None) for key in _GREEDY_ALTERING)


def decode(model, batch: SharedPrefixBatch, max_new_tokens: int, stop_ids: list[int], pick=None,
           repeat: int = 1) -> list[list[int]]:
    """Decoding that takes each row out of the batch as soon as it stops (a stop token), instead of computing it
    until the slowest row is done as ``generate`` does: a batch of short answers with a few long ones costs about
    its answers' tokens, not rows x the longest answer. Returns each row's new tokens, its stop token last if it
    stopped (as ``generate`` leaves them).

    ``repeat``: decode each row of ``batch`` that many times (row k's copies are rows k*repeat ... of the result,
    ``generate(num_return_sequences=repeat)``'s order). Each prompt is prefilled once and its KV cache copied, so
    n samples of a prompt cost one prefill, not n.

    ``pick(logits, rows)`` chooses the next token of every row still in the batch (``rows``: their indices in the
    expanded batch, for per-row random streams); argmax by default, which gives ``generate(do_sample=False)``'s
    tokens for a :func:`plain_greedy` model (tested)."""
    import torch

    key = cache_kwarg(model)
    cache = batch.cache_kwargs.get(key)
    if cache is None:
        from transformers import DynamicCache

        cache = DynamicCache()
    pick = pick or (lambda logits, rows: logits.argmax(-1))
    mask, pos = batch.attention_mask, batch.suffix_positions[:, -1:]
    stop = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=mask.device)
    out: list[list[int]] = [[] for _ in range(mask.shape[0] * repeat)]
    if max_new_tokens < 1:
        return out
    with torch.inference_mode():
        first = dict(input_ids=batch.suffix_ids, attention_mask=mask, position_ids=batch.suffix_positions,
                     **{key: cache})
        logits = model(**first, use_cache=True, logits_to_keep=1).logits[:, -1]
        if repeat > 1:  # the prefilled rows, each copied in place
            cache.batch_repeat_interleave(repeat)
            logits, mask, pos = (t.repeat_interleave(repeat, dim=0) for t in (logits, mask, pos))
        rows = torch.arange(mask.shape[0], device=mask.device)  # batch position -> original row
        for step in range(max_new_tokens):
            nxt = pick(logits, rows).to(mask.device)
            going = ~torch.isin(nxt, stop)
            for r, t in zip(rows.tolist(), nxt.tolist()):
                out[r].append(t)
            if step == max_new_tokens - 1 or not bool(going.any()):
                break
            if not bool(going.all()):  # drop the rows that stopped, from the KV cache too
                keep = going.nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                rows, mask, pos, nxt = rows[keep], mask[keep], pos[keep], nxt[keep]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            pos = pos + 1
            logits = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos, use_cache=True,
                           logits_to_keep=1, **{key: cache}).logits[:, -1]
    return out
