"""Decontamination: training documents sharing a long word n-gram with any evaluation example are dropped."""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Iterable, Iterator

from findap_nemo.files import BadLine, jsonl_lines

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words: punctuation and whitespace differences do not hide an overlap."""
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> Iterator[int]:
    w = words(text)
    for i in range(len(w) - n + 1):
        yield hash(" ".join(w[i:i + n]))


def _strings(obj) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if not str(k).startswith("_"):
                yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def eval_texts(patterns: Iterable[str], tasks: Iterable[str] = ()) -> Iterator[tuple[str, str]]:
    """(file, text) for every string field of every example of the given eval JSONL files/globs and registry tasks."""
    for pattern in patterns:
        paths = sorted(glob.glob(pattern)) or [pattern]
        for path in paths:
            if not Path(path).is_file():
                raise FileNotFoundError(f"decontamination.eval_sets: {path} not found")
            for _, _, row in jsonl_lines(path, objects=False):
                if isinstance(row, BadLine):
                    raise ValueError(f"decontamination.eval_sets: {row}")
                yield path, "\n".join(_strings(row))
    tasks = list(tasks)
    if tasks:
        from findap_nemo.eval.registry import iter_eval_texts

        for t in tasks:
            for text in iter_eval_texts(t):
                yield f"task:{t}", text


class Decontaminator:
    def __init__(self, texts: Iterable[tuple[str, str]], n: int = 13):
        self.n = n
        self.index: set[int] = set()
        self.files: set[str] = set()
        for path, text in texts:
            self.files.add(path)
            self.index.update(ngrams(text, n))

    def contaminated(self, text: str) -> bool:
        return bool(self.index) and any(g in self.index for g in ngrams(text, self.n))
