"""A tiny HF model with a planted next-token preference, shared by the eval tests."""

from __future__ import annotations

from pathlib import Path

import torch

from findap_nemo.eval.prompts import encode_continuation, encode_messages
from findap_nemo.eval.registry import task_from_dict
from findap_nemo.eval.scoring import prepare


def plant(src: Path, out: Path, prefer: dict[str, str], tok) -> Path:
    """Copy the tiny model so that after token text K the next token is (with high probability) prefer[K]."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        for after, nxt in prefer.items():
            a = tok.convert_tokens_to_ids(after) if isinstance(after, str) and after in tok.get_vocab() else after
            h = model.model.norm(model.model.embed_tokens.weight[a][None])[0]
            target = encode_continuation(tok, nxt) if isinstance(nxt, str) else [nxt]
            assert len(target) == 1
            model.lm_head.weight[target[0]] = 12.0 * h / h.norm()
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


MC_TASK = {"name": "mc", "category": "reasoning", "type": "multiple_choice", "mc_method": "loglik",
           "source": {"path": "unused.jsonl"}, "prompt": "{{ text }}\n{{ choices_block }}", "gold_field": "gold"}


def ctx_last_token(tok) -> int:
    task = task_from_dict(MC_TASK, "test")
    prep = prepare(task, {"text": "q", "choices": ["x", "y", "z"], "gold": 0}, 0, [])
    return encode_messages(tok, prep.messages, chat_template=True)[-1]


