"""Regenerate the shipped demo tokenizer (samples/tokenizer/): python samples/make_tokenizer.py

A 2048-token byte-level BPE with Llama 3's special tokens and chat template, trained on every string of the shipped
samples (FinTrain, GenRM prompts, FinEval), so the demo's texts tokenize compactly and Yes/No are single tokens.
"""

import glob
import json
from pathlib import Path

from findap_nemo.tokenizer import train_tokenizer

ROOT = Path(__file__).resolve().parent


def strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)


def corpus():
    for path in sorted(glob.glob(str(ROOT / "*" / "*.jsonl"))):
        for line in open(path, encoding="utf-8"):
            if line.strip():
                yield from strings(json.loads(line))
    # answers the GenRM and FinEval prompts ask for, so they are single tokens
    yield from ["Yes", "No", " Yes", " No", "Yes.", "No.", "[[A]]", "[[B]]", "[[C]]", "[[D]]", "Step 1:", "Step 2:"] * 200


if __name__ == "__main__":
    tok = train_tokenizer(corpus(), ROOT / "tokenizer", vocab_size=2048)
    print("vocab", len(tok), "->", ROOT / "tokenizer")
