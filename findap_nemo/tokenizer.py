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


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json")
"""The files of an HF tokenizer folder; copied byte for byte wherever a tokenizer travels with weights."""

# Names real tokenizers give their end-of-document token (Llama 3, GPT-2/SmolLM/Qwen, Llama 2/Mistral, Gemma).
_END_OF_TEXT_NAMES = (EOS_TEXT, "<|endoftext|>", "</s>", "<eos>")


def load_tokenizer(path: str | os.PathLike):
    """Load an HF tokenizer folder exactly as shipped: nothing is invented (no template, no pad token).

    Code that needs a pad id asks :func:`pad_token_id`; code that renders chats asks :func:`require_chat_template`.
    """
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def copy_tokenizer_files(src: str | os.PathLike, dst: str | os.PathLike) -> list[str]:
    """Copy the tokenizer files of ``src`` into ``dst`` unchanged; returns the names copied."""
    import shutil

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    return copied


def require_chat_template(tok, where: str) -> str:
    """The tokenizer's own chat template, or a ConfigError saying how to give it one (none is invented)."""
    from findap_nemo.config import ConfigError

    template = getattr(tok, "chat_template", None)
    if not template:
        raise ConfigError(f"{where}: the tokenizer {getattr(tok, 'name_or_path', '?')} has no chat template, so "
                          f"chat data cannot be rendered the way the model expects; use the instruct model's "
                          f"tokenizer folder (chat_template.jinja or tokenizer_config.json 'chat_template')")
    return template


def end_of_turn_token(tok) -> str | None:
    """The special token the chat template writes after an assistant message (Llama 3 ``<|eot_id|>``, ChatML
    ``<|im_end|>``, Mistral ``</s>``), found by rendering a probe conversation; None without a template."""
    template = getattr(tok, "chat_template", None)
    if not template:
        return None
    key = (id(tok), template)
    if key not in _EOT_CACHE:
        _EOT_CACHE[key] = _probe_end_of_turn(tok)
    return _EOT_CACHE[key]


_EOT_CACHE: dict[tuple[int, str], str | None] = {}


def _probe_end_of_turn(tok) -> str | None:
    sentinel = "FINDAPSENTINEL"
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": sentinel}],
                                   tokenize=False)
    at = text.rfind(sentinel)
    if at < 0:
        return None
    after = text[at + len(sentinel):].lstrip(" ")
    specials = set(tok.all_special_tokens) | set(getattr(tok, "added_tokens_encoder", {}) or {})
    for t in sorted(specials, key=len, reverse=True):
        if t and after.startswith(t):
            return t
    return None


def end_of_text_id(tok) -> int | None:
    """The end-of-document token CPT text ends with: the EOS, unless the EOS is a chat turn marker (Llama 3
    Instruct, ChatML models), in which case the tokenizer's own end-of-text token (``<|end_of_text|>``,
    ``<|endoftext|>``, ``</s>``)."""
    turn_markers = {end_of_turn_token(tok), EOT}
    if tok.eos_token is not None and tok.eos_token not in turn_markers:
        return tok.eos_token_id
    vocab = tok.get_vocab()
    for name in _END_OF_TEXT_NAMES:
        if name in vocab and name not in turn_markers:
            return vocab[name]
    return tok.eos_token_id


def document_bos_id(tok) -> int | None:
    """The BOS id documents start with: the tokenizer's BOS when it puts it before plain text itself (Llama 3,
    Mistral) or its chat template starts every conversation with ``bos_token``; else None (GPT-2-style BPEs such
    as SmolLM2 and Qwen2, whose ``bos_token`` may be a chat marker like ``<|im_start|>``)."""
    bos = tok.bos_token_id
    if bos is None:
        return None
    ids = tok("a", add_special_tokens=True)["input_ids"]
    if ids and ids[0] == bos:
        return bos
    return bos if "bos_token" in (getattr(tok, "chat_template", None) or "") else None


def stop_token_ids(tok) -> list[int]:
    """Token ids that end an assistant turn: the EOS, the chat template's end-of-turn token and, for Llama 3
    vocabularies, ``<|eot_id|>``/``<|end_of_text|>``."""
    ids = {tok.eos_token_id}
    vocab = tok.get_vocab()
    eot = end_of_turn_token(tok)
    for t in (eot, EOT, EOS_TEXT):
        if t is not None and t in vocab:
            ids.add(vocab[t])
    return sorted(i for i in ids if i is not None)


def pad_token_id(tok) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its first stop token (pads are never
    targets and are masked out of attention, so any id is correct; the tokenizer itself is left unchanged)."""
    if tok.pad_token_id is not None:
        return int(tok.pad_token_id)
    stops = stop_token_ids(tok)
    if not stops:
        from findap_nemo.config import ConfigError

        raise ConfigError(f"tokenizer {getattr(tok, 'name_or_path', '?')}: no pad, EOS or end-of-turn token")
    return stops[0]


def train_tokenizer(texts: Iterable[str], out_dir: str | os.PathLike, vocab_size: int = 1024,
                    chat_format: str = "llama3"):
    """Train a byte-level BPE and save it as an HF tokenizer folder, with the special tokens and chat template of
    Llama 3 Instruct (``chat_format="llama3"``) or of ChatML models such as SmolLM2 (``"chatml"``: no BOS added,
    ``<|im_end|>`` ends turns, ``<|endoftext|>`` ends documents, no pad token, no ``{% generation %}`` block)."""
    if chat_format == "chatml":
        return _train_bpe(texts, out_dir, vocab_size, CHATML_SPECIAL_TOKENS, CHATML_CHAT_TEMPLATE,
                          bos_token="<|im_start|>", eos_token="<|im_end|>", unk_token="<|endoftext|>",
                          model_max_length=8192)
    return _train_bpe(texts, out_dir, vocab_size, LLAMA3_SPECIAL_TOKENS, LLAMA3_CHAT_TEMPLATE,
                      bos_token=BOS, eos_token=EOT, pad_token=PAD, model_max_length=131072)


CHATML_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# SmolLM2-135M-Instruct's template as shipped (a default system turn, no {% generation %} block).
CHATML_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _train_bpe(texts: Iterable[str], out_dir: str | os.PathLike, vocab_size: int, special_tokens: list[str],
               chat_template: str, **special_kwargs):
    """A byte-level BPE with the given special tokens and chat template, saved as an HF tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, **special_kwargs)
    fast.chat_template = chat_template
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    make_tokenizer_config_portable(out / "tokenizer_config.json")
    return load_tokenizer(out)


def make_tokenizer_config_portable(path: Path, model_max_length: int | None = None) -> None:
    """Make a saved ``tokenizer_config.json`` load the same under transformers 4.x and 5.x: name the class every
    release knows (5.x writes its own ``TokenizersBackend``, which 4.x cannot load), take ids and mask only (4.x
    would also emit ``token_type_ids``, which ``generate()`` rejects), drop where it was saved from, and optionally
    give the model's context length instead of transformers' 1e30 placeholder."""
    from findap_nemo.files import read_json, write_json_atomic

    if not path.is_file():
        return
    cfg = read_json(path)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg["model_input_names"] = ["input_ids", "attention_mask"]
    if model_max_length:
        cfg["model_max_length"] = int(model_max_length)
    for key in ("is_local", "local_files_only", "name_or_path"):
        cfg.pop(key, None)
    write_json_atomic(path, cfg)
