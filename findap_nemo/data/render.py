"""Rendering and tokenizing records: CPT text -> [BOS] + text + end-of-text (all targets), with the tokenizer's own
BOS and end-of-document tokens (never its chat markers); chat -> the tokenizer's chat template with assistant-only
targets. Runs in worker processes (one tokenizer each, see ``build._Encoder``)."""

from __future__ import annotations

import numpy as np

from findap_nemo.tokenizer import document_bos_id, end_of_text_id, end_of_turn_token, require_chat_template

_TOK = None


def _init_worker(tokenizer_dir: str) -> None:
    global _TOK
    from findap_nemo.tokenizer import load_tokenizer

    _TOK = load_tokenizer(tokenizer_dir)


_SPECIALS: dict[int, tuple[int | None, int | None]] = {}


def _document_specials(tok) -> tuple[int | None, int | None]:
    """(BOS, end-of-text) of CPT documents, worked out once per tokenizer."""
    key = id(tok)
    if key not in _SPECIALS:
        _SPECIALS[key] = (document_bos_id(tok), end_of_text_id(tok))
    return _SPECIALS[key]


def render_chat(tok, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids and the assistant mask of one conversation, via the tokenizer's own chat template.

    Templates with a ``{% generation %}`` block give the mask directly; for others each assistant turn's span is
    found by rendering the conversation up to it (with and without the turn) and diffing the lengths; a span ends
    with the template's end-of-turn token (what a template writes after it, e.g. ChatML's newline, is no target,
    as with a ``{% generation %}`` block).
    """
    template = require_chat_template(tok, "chat data")
    if "{% generation %}" in template or "{%- generation %}" in template:
        out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        return list(out["input_ids"]), list(out["assistant_masks"])

    def ids_of(msgs, gen=False):
        return list(tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=gen,
                                            return_dict=True)["input_ids"])

    ids = ids_of(messages)
    mask = [0] * len(ids)
    eot = tok.convert_tokens_to_ids(end_of_turn_token(tok)) if end_of_turn_token(tok) else None
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before, upto = ids_of(messages[:i], gen=True), ids_of(messages[: i + 1])
        end = min(len(upto), len(ids))
        span = ids[len(before):end]
        if eot in span:
            end = len(before) + span.index(eot) + 1
        for j in range(len(before), end):
            mask[j] = 1
    return ids, mask


def encode_batch(batch: list[tuple[str, object]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(kind, text | messages)] -> [(int32 ids, uint8 target mask)] in the worker's tokenizer."""
    tok = _TOK
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(batch)
    cpt_idx = [i for i, (k, _) in enumerate(batch) if k == "cpt"]
    if cpt_idx:
        bos, eod = _document_specials(tok)
        head, tail = int(bos is not None), int(eod is not None)
        # the Rust tokenizer directly: same ids as tok(texts), without transformers' per-document conversions
        texts = [batch[i][1] for i in cpt_idx]
        if tok.is_fast:
            all_ids = (e.ids for e in tok.backend_tokenizer.encode_batch(texts, add_special_tokens=False))
        else:
            all_ids = tok(texts, add_special_tokens=False)["input_ids"]
        for i, ids in zip(cpt_idx, all_ids):
            full = np.empty(head + len(ids) + tail, dtype=np.int32)
            full[head:head + len(ids)] = ids
            if head:
                full[0] = bos
            if tail:
                full[-1] = eod
            out[i] = (full, np.ones(len(full), dtype=np.uint8))
    for i, (kind, payload) in enumerate(batch):
        if kind == "it":
            ids, mask = render_chat(tok, payload)
            out[i] = (np.asarray(ids, dtype=np.int32), np.asarray(mask, dtype=np.uint8))
    return out  # type: ignore[return-value]
