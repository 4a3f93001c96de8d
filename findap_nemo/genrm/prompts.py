"""Reasoning prompts (JSONL) and the prompt templates of configs/genrm/prompts/ (solve, FAP, SCP).

Templates are plain text with ``{question}``, ``{solution}`` and ``{reference_block}`` placeholders, filled by
substitution (not ``str.format``), so braces in questions, solutions and templates need no escaping. Every model
input is then rendered with the tokenizer's own chat template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from findap_nemo.config import ConfigError
from findap_nemo.files import BadLine, jsonl_lines

REFERENCE_KEYS = ("reference", "reference_answer", "answer")


@dataclass
class PromptRecord:
    id: str
    question: str
    reference: Optional[str] = None
    system: Optional[str] = None


def read_prompts(path: str | Path, limit: Optional[int] = None) -> list[PromptRecord]:
    """Read ``{"id"?, "prompt", "reference"?, "system"?}`` lines; any bad line is an error naming file:line."""
    path = Path(path)
    out: list[PromptRecord] = []
    seen: dict[str, int] = {}
    for lineno, where, rec in jsonl_lines(path):
        if isinstance(rec, BadLine):
            raise ConfigError(rec)
        q = rec.get("prompt", rec.get("question"))
        if not isinstance(q, str) or not q.strip():
            raise ConfigError(f"{where}: 'prompt' must be a non-empty string (the question to solve)")
        ref = next((rec[k] for k in REFERENCE_KEYS if k in rec), None)
        if ref is not None and not isinstance(ref, (str, int, float)):
            raise ConfigError(f"{where}: 'reference' must be a string or a number")
        sys_msg = rec.get("system")
        if sys_msg is not None and not isinstance(sys_msg, str):
            raise ConfigError(f"{where}: 'system' must be a string")
        pid = str(rec.get("id", f"{path.stem}-{lineno}"))
        if pid in seen:
            raise ConfigError(f"{where}: duplicate id {pid!r} (first on line {seen[pid]}); ids key resumption")
        seen[pid] = lineno
        out.append(PromptRecord(pid, q.strip(), None if ref is None else str(ref), sys_msg))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise ConfigError(f"{path}: no prompts")
    return out


class Templates:
    """The three prompt templates, read once."""

    def __init__(self, solve: str | Path, fap: str | Path, scp: str | Path):
        self.solve = Path(solve).read_text(encoding="utf-8")
        self.fap = Path(fap).read_text(encoding="utf-8")
        self.scp = Path(scp).read_text(encoding="utf-8")

    @staticmethod
    def fill(template: str, question: str, solution: str = "", reference: Optional[str] = None) -> str:
        block = f"Reference answer: {reference}" if reference else ""
        text = (template.replace("{question}", question).replace("{solution}", solution)
                .replace("{reference_block}", block))
        return re.sub(r"\n{3,}", "\n\n", text).strip()  # an empty reference block leaves no gap

    def policy_messages(self, rec: PromptRecord, system: Optional[str]) -> list[dict]:
        """The conversation the policy answers; it is also the "prompt" of every pair built from its answers."""
        msgs = []
        sys_msg = rec.system if rec.system is not None else system
        if sys_msg:
            msgs.append({"role": "system", "content": sys_msg})
        msgs.append({"role": "user", "content": self.fill(self.solve, rec.question)})
        return msgs


def encode_chat(tok, messages: list[dict]) -> list[int]:
    """Chat template with the assistant header appended, as token ids (the template carries BOS itself)."""
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok.encode(text, add_special_tokens=False)


def answer_token_ids(tok, spellings: list[str], what: str) -> list[int]:
    """Single-token ids of an answer's spellings (e.g. "Yes" and " Yes"); spellings that split are ignored, but at
    least one must be a single token or P(Yes) would not be one next-token probability."""
    ids, split = [], []
    for s in spellings:
        enc = tok.encode(s, add_special_tokens=False)
        if len(enc) == 1:
            if enc[0] not in ids:
                ids.append(enc[0])
        else:
            split.append(f"{s!r} -> {enc}")
    if not ids:
        raise ConfigError(f"fap.{what}_tokens={spellings!r}: the GenRM tokenizer splits every spelling into several "
                          f"tokens ({'; '.join(split)}); list a spelling that is a single token")
    return ids
