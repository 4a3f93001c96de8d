"""Turning an example into chat messages and token ids: zero/few-shot, with the model's chat template.

The user turn is the task's Jinja2 ``prompt`` rendered with the example's fields plus a few extra variables:
``letters`` (A, B, ...), ``choices_block`` ("A. ...\\nB. ..."), ``choice_list`` (option texts) and ``labels``.
An example that lacks a field the template uses raises :class:`ExampleError`, which the runner records as an
invalid input (scored wrong, counted) instead of a crash.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import jinja2

from findap_nemo.eval.extract import choice_letters
from findap_nemo.eval.registry import ERROR_KEY, TaskSpec
from findap_nemo.tokenizer import require_chat_template


class ExampleError(ValueError):
    """This example cannot be turned into a prompt or has no usable gold answer."""


@functools.lru_cache(maxsize=256)
def _template(source: str) -> jinja2.Template:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                             autoescape=False)
    return env.from_string(source)


def choice_texts(task: TaskSpec, example: dict) -> list[str]:
    """The options of a multiple-choice example as a list of texts (from a list or a letter->text mapping)."""
    if task.choices_field not in example:
        raise ExampleError(f"missing field {task.choices_field!r} (the options)")
    raw = example[task.choices_field]
    if isinstance(raw, dict):
        keys = sorted(raw, key=lambda k: str(k))
        texts = [str(raw[k]) for k in keys]
    elif isinstance(raw, (list, tuple)):
        texts = [str(x) for x in raw]
    else:
        raise ExampleError(f"field {task.choices_field!r} must be a list of options or a letter->text mapping, "
                           f"got {type(raw).__name__}")
    if len(texts) < 2 or len(texts) > 26:
        raise ExampleError(f"field {task.choices_field!r} has {len(texts)} options; expected 2-26")
    return texts


def template_vars(task: TaskSpec, example: dict) -> dict[str, Any]:
    if ERROR_KEY in example:
        raise ExampleError(example[ERROR_KEY])
    vars_ = {k: v for k, v in example.items() if not k.startswith("_")}
    vars_["labels"] = list(task.labels)
    if task.type == "multiple_choice":
        texts = choice_texts(task, example)
        letters = choice_letters(len(texts))
        vars_.update(letters=letters, choice_list=texts,
                     choices_block="\n".join(f"{l}. {t}" for l, t in zip(letters, texts)))
    return vars_


def render(source: str, vars_: dict[str, Any], what: str) -> str:
    try:
        return _template(source).render(**vars_).strip()
    except jinja2.UndefinedError as err:
        raise ExampleError(f"{what}: {err.message} (a field the template uses is missing)") from err
    except jinja2.TemplateError as err:
        raise ExampleError(f"{what}: template error: {err}") from err


def build_messages(task: TaskSpec, example: dict, shots: list[dict]) -> list[dict[str, str]]:
    """System turn (optional), each demonstration as a user/assistant pair, then the example's user turn."""
    messages: list[dict[str, str]] = []
    if task.system:
        messages.append({"role": "system", "content": task.system})
    for i, shot in enumerate(shots):
        v = template_vars(task, shot)
        messages.append({"role": "user", "content": render(task.prompt, v, f"few-shot example {i} prompt")})
        messages.append({"role": "assistant", "content": render(task.answer_template, v, f"few-shot example {i} answer")})
    messages.append({"role": "user", "content": render(task.prompt, template_vars(task, example), "prompt")})
    return messages


def encode_messages(tokenizer, messages: list[dict[str, str]], chat_template: bool) -> list[int]:
    """Token ids of the prompt: the chat template with the assistant header, or plain text after BOS."""
    if chat_template:
        require_chat_template(tokenizer, "generation.chat_template=true")
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    text = "\n\n".join(m["content"] for m in messages) + "\n\n"
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None and (not ids or ids[0] != bos):  # not every tokenizer adds BOS itself
        ids = [bos] + ids
    return ids


def encode_continuation(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def example_id(task: TaskSpec, example: dict, index: int) -> Optional[str]:
    if task.id_field and task.id_field in example:
        return str(example[task.id_field])
    return f"{task.name}-{index}"
