"""Reading answers out of generated text. Each extractor returns (value or None, how it was found).

None means "cannot be parsed": the caller scores it as wrong and counts it; nothing here raises on model output.
Normalisation follows FinEval's exact match: case and punctuation are ignored.
"""

from __future__ import annotations

import re
import string
from typing import Optional

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}‘’“”–—…]")
_SPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed (FinEval's exact-match normalisation)."""
    return _SPACE.sub(" ", _PUNCT.sub(" ", str(text).lower())).strip()


def strip_articles(text: str) -> str:
    return " ".join(w for w in normalize(text).split() if w not in ("a", "an", "the"))


# --- multiple choice -------------------------------------------------------------------------------------------

def choice_letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def extract_choice(output: str, letters: list[str], choices: Optional[list[str]] = None,
                   bracket_only: bool = False) -> tuple[Optional[str], str]:
    """The selected option letter.

    Tried in order: the last ``[[X]]`` selection (FinEval's CFA protocol), "answer is X" / "Answer: X",
    a leading "X", "(X)" or "X." and, last, an output equal to one option's text. With ``bracket_only`` only the
    first rule applies. Letters outside ``letters`` never count.
    """
    if not output:
        return None, "empty"
    valid = "".join(letters)
    cls = f"[{re.escape(valid)}{re.escape(valid.lower())}]"
    hits = re.findall(rf"\[\[\s*({cls})\s*\]\]", output)
    if hits:
        return hits[-1].upper(), "bracket"
    if bracket_only:
        return None, "no_bracket"
    m = re.findall(rf"answer\s*(?:is|:)?\s*(?:option\s*)?[\(\[]?\s*({cls})\b", output, flags=re.IGNORECASE)
    if m:
        return m[-1].upper(), "answer_is"
    m = re.match(rf"^\s*[\(\[]?({'|'.join(map(re.escape, letters))})(?:[\)\]\.:,]|\s|$)", output)
    if m:
        return m.group(1).upper(), "leading_letter"
    if choices:
        norm = normalize(output)
        for letter, text in zip(letters, choices):
            if norm and norm == normalize(text):
                return letter, "option_text"
    return None, "none"


# --- classification --------------------------------------------------------------------------------------------

def extract_label(output: str, labels: list[str], aliases: Optional[dict[str, str]] = None) -> tuple[Optional[str], str]:
    """The class label in the output: an exact (normalised) match, else the label or alias mentioned first."""
    norm = normalize(output)
    if not norm:
        return None, "empty"
    table = {normalize(l): l for l in labels}
    for alias, label in (aliases or {}).items():
        table.setdefault(normalize(alias), label)
    if norm in table:
        return table[norm], "exact"
    best: tuple[int, Optional[str]] = (len(norm) + 1, None)
    for key, label in table.items():
        if not key:
            continue
        m = re.search(rf"(?<!\w){re.escape(key)}(?!\w)", norm)
        if m and m.start() < best[0]:
            best = (m.start(), label)
    if best[1] is not None:
        return best[1], "first_mention"
    return None, "none"


# --- numbers ---------------------------------------------------------------------------------------------------

_NUM = re.compile(r"(?<![\w.])(\()?\s*([-+−]?)\s*\$?\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)\s*(\))?\s*(%)?")


def parse_number(text: str) -> tuple[Optional[float], bool]:
    """First number in ``text`` as (value, is_percent). Accepts 1,234.5, -3, −3, (3) (negative), $4.2, 12%."""
    m = _NUM.search(str(text))
    if not m:
        return None, False
    return _number_from_match(m)


def _number_from_match(m: re.Match) -> tuple[float, bool]:
    paren_open, sign, digits, paren_close, pct = m.groups()
    value = float(digits.replace(",", ""))
    if sign in ("-", "−") or (paren_open and paren_close):
        value = -value
    return value, bool(pct)


def extract_number(output: str) -> tuple[Optional[tuple[float, bool]], str]:
    """The answer number: the one after "answer" if the output says so, else the last number in the output."""
    if not output:
        return None, "empty"
    tail = re.split(r"answer\s*(?:is|:)", output, flags=re.IGNORECASE)
    if len(tail) > 1:
        m = _NUM.search(tail[-1])
        if m:
            return _number_from_match(m), "answer_is"
    matches = list(_NUM.finditer(output))
    if matches:
        return _number_from_match(matches[-1]), "last_number"
    return None, "none"


# --- named entities --------------------------------------------------------------------------------------------

_IS_A = re.compile(r"^(.+?)\s+is\s+(?:an?|the)\s+([A-Za-z]+)\s*$", re.IGNORECASE)
_PAREN = re.compile(r"^(.+?)\s*\(([A-Za-z]+)\)\s*$")
_SEP = re.compile(r"^(.+?)\s*[,:\t|]\s*([A-Za-z]+)\s*$")


def extract_entities(output: str, types: dict[str, str]) -> tuple[list[tuple[str, str]], int]:
    """Entities as (normalised text, TYPE) pairs, and the number of parts that could not be read.

    One entity per line or per ";"-separated part, written "name, TYPE", "name: TYPE", "name (TYPE)" or
    "name is a/an TYPE" (FinGPT's NER answer style). Type words go through ``types`` (e.g. person -> PER);
    a type that maps to nothing known is unreadable.
    """
    known = {k.lower(): v for k, v in types.items()}
    known.update({v.lower(): v for v in types.values()})
    entities: list[tuple[str, str]] = []
    bad = 0
    parts = [p.strip(" -*•\t.") for p in re.split(r"[\n;]+", output or "")]
    for part in parts:
        if not part or normalize(part) in ("none", "no entities", "n a"):
            continue
        m = _IS_A.match(part) or _PAREN.match(part) or _SEP.match(part)
        if not m:
            bad += 1
            continue
        name, typ = m.group(1).strip(), m.group(2).lower()
        if typ not in known or not normalize(name):
            bad += 1
            continue
        entities.append((normalize(name), known[typ]))
    return entities, bad


def gold_entities(value, types: dict[str, str]) -> Optional[list[tuple[str, str]]]:
    """Gold entities from [{"text", "type"}], [[text, type]] or the answer-string format; None if unreadable."""
    if isinstance(value, str):
        ents, bad = extract_entities(value, types)
        return None if bad else ents
    if not isinstance(value, list):
        return None
    known = {k.lower(): v for k, v in types.items()}
    known.update({v.lower(): v for v in types.values()})
    out = []
    for item in value:
        if isinstance(item, dict) and "text" in item and "type" in item:
            text, typ = item["text"], item["type"]
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            text, typ = item
        else:
            return None
        typ = known.get(str(typ).lower())
        if typ is None:
            return None
        out.append((normalize(text), typ))
    return out
