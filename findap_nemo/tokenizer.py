"""Tokenizers and the chat template: one place for both, used by data, DPO, GenRM and eval alike.

Real checkpoints bring their own tokenizer (``AutoTokenizer.from_pretrained``) and chat template. Tests and the
CPU demo use a small byte-level BPE trained locally with the same special tokens and template as Llama 3 Instruct,
so every code path (template rendering, assistant masks, EOS handling) is the one real models take.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

BOS = "<|begin_of_text|>"
EOS_TEXT = "<|end_of_text|>"
EOT = "<|eot_id|>"  # end of a chat turn: the stop token of Llama 3 Instruct
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
PAD = "<|finetune_right_pad_id|>"
LLAMA3_SPECIAL_TOKENS = [BOS, EOS_TEXT, START_HEADER, END_HEADER, EOT, PAD]

# Llama 3 Instruct's template (as shipped in its tokenizer_config.json), with a {% generation %} block so
# `apply_chat_template(..., return_assistant_tokens_mask=True)` can mark assistant tokens.
LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endgeneration %}"
    "{%- else %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


def load_tokenizer(path: str | os.PathLike):
    """Load an HF tokenizer folder; give it the Llama 3 template and a pad token when it lacks them."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if not getattr(tok, "chat_template", None):
        tok.chat_template = LLAMA3_CHAT_TEMPLATE
    if tok.pad_token is None:
        tok.pad_token = PAD if PAD in tok.get_vocab() else tok.eos_token
    return tok


def stop_token_ids(tok) -> list[int]:
    """Token ids that end an assistant turn (EOS and, for Llama 3 style templates, <|eot_id|>)."""
    ids = {tok.eos_token_id}
    vocab = tok.get_vocab()
    for t in (EOT, EOS_TEXT):
        if t in vocab:
            ids.add(vocab[t])
    return sorted(i for i in ids if i is not None)


def train_tokenizer(texts: Iterable[str], out_dir: str | os.PathLike, vocab_size: int = 1024):
    """Train a byte-level BPE with Llama 3's special tokens and chat template; save as an HF tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=LLAMA3_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=BOS, eos_token=EOT, pad_token=PAD,
                                   model_max_length=131072)
    fast.chat_template = LLAMA3_CHAT_TEMPLATE
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return load_tokenizer(out)
