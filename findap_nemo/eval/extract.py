"""Reading answers out of generated text. Each extractor returns (value or None, how it was found).

None means "cannot be parsed": the caller scores it as wrong and counts it; nothing here raises on model output.
Normalisation follows FinEval's exact match: case and punctuation are ignored.
"""

from __future__ import annotations

import re
import string
from typing import NamedTuple, Optional

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


_BRACKET = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
_LABEL_WORDS = r"(?:option|choice|answer)"
# Words after a bare capital letter that still read as a selection ("A because ...", "B is correct"), not as the
# article in "A decline in rates ...".
_AFTER_LETTER_OK = {"because", "since", "as", "and", "or", "but", "which", "is", "was", "would", "seems", "for",
                    "with", "so", "here", "above", "below", "only"}
CHOICE_RULES = ("bracket", "answer_is", "option_named", "leading_letter", "option_text")


def _bracket_choice(inner: str, letters: list[str], choices: Optional[list[str]]) -> Optional[str]:
    """The option named inside one ``[[...]]``: "B", "b", "(B)", "Option B", "B) 5.2%", "B. text", or an option's text."""
    body = inner.strip()
    body = re.sub(rf"(?i)^{_LABEL_WORDS}\s*[:#]?\s*", "", body).strip()
    m = re.fullmatch(r"[\(\[]?\s*([A-Za-z])\s*[\)\]]?", body)
    if m and m.group(1).upper() in letters:  # a lone letter, either case: nothing else it could mean
        return m.group(1).upper()
    m = re.match(r"[\(\[]?([A-Z])(?:\s*[\)\]\.:]|\s*-\s)", body)
    if m and m.group(1) in letters:  # "B) 5.2%", "B. longest maturity", "(B) ..."
        return m.group(1)
    if choices:
        norm = normalize(body)
        hits = [l for l, c in zip(letters, choices) if norm and norm == normalize(c)]
        if len(hits) == 1:
            return hits[0]
    return None


def _is_article(text: str, end: int) -> bool:
    """A bare "A"/"I" followed by a lowercase word (not one of _AFTER_LETTER_OK) is English, not a selection."""
    m = re.match(r"[ \t]+([a-z][a-z'-]*)", text[end:])
    return bool(m) and m.group(1) not in _AFTER_LETTER_OK


def _letter_at(text: str, m: re.Match, letters: list[str]) -> Optional[str]:
    """The letter of a ``_LETTER`` match if it is a selection: an upper-case valid letter, or an enclosed
    lower-case one "(b)"; a bare capital read as an article ("A decline") is not."""
    enclosed, bare = m.group("enc"), m.group("bare")
    if enclosed:
        return enclosed.upper() if enclosed.upper() in letters else None
    if bare not in letters:
        return None
    if bare in ("A", "I") and _is_article(text, m.end()):
        return None
    return bare


_LETTER = r"(?:[\(\[](?P<enc>[A-Za-z])[\)\]]|(?P<bare>[A-Z])(?![\w'’-]))"
_SEP = r"(?:\s+(?:is|would\s+be|should\s+be|=))?[\s*]*[:\-]?[\s*]*"
_ANSWER_IS = re.compile(
    rf"(?i:(?:\banswer\b|\b(?:correct|right|best|final)\s+(?:option|choice)\b){_SEP}(?:(?:option|choice)\s+)?)"
    rf"{_LETTER}")
_OPTION = re.compile(rf"(?i:\b(?:option|choice)\b[\s*]*[:\-]?[\s*]*){_LETTER}")
_LEADING = re.compile(rf"^[\s*#>]*(?:{_LETTER})")
_LISTED = re.compile(r"(?m)^[ \t*#>-]*[\(\[]?([A-Z])[\)\]\.:]")


def extract_choice(output: str, letters: list[str], choices: Optional[list[str]] = None,
                   bracket_only: bool = False) -> tuple[Optional[str], str]:
    """The selected option letter, and the rule that found it (one of ``CHOICE_RULES``, else why not).

    1. ``bracket`` (FinDAP/FinEval's CFA convention): the last ``[[...]]`` that names an option wins. Inside the
       brackets a lone letter of either case counts ("[[b]]"), as do "[[Option B]]", "[[B) 5.2%]]", "[[(B)]]" and
       an option's exact text; brackets naming nothing ("[[X]]", "[[maybe]]") are skipped.
    2. ``answer_is``: the last "answer is B", "Answer: (B)", "the correct option is C", "final choice: B".
    3. ``option_named``: the last "option C" / "choice B" anywhere (after "answer is" found nothing).
    4. ``leading_letter``: the output starts with "B", "(B)", "B.", "B)" or "B:", unless lines start with two or
       more option letters ("A. ...\nB. ...": the options echoed as a list, which selects none of them).
    5. ``option_text``: the whole output equals one option's text (case and punctuation ignored).

    In rules 2-4 a letter counts only when it is upper case, or lower case in parentheses/brackets ("(b)"): a
    lower-case word never does ("the answer is a decline ..."). A bare "A" (or "I") followed by a lower-case word is
    the English article ("A decline in rates ...") unless that word is a connective such as "because" or "is".
    With ``bracket_only`` only rule 1 applies. Letters outside ``letters`` never count.
    """
    if not output:
        return None, "empty"
    picks = [_bracket_choice(m.group(1), letters, choices) for m in _BRACKET.finditer(output)]
    picks = [p for p in picks if p is not None]
    if picks:
        return picks[-1], "bracket"
    if bracket_only:
        return None, "no_bracket"
    for rule, pattern in (("answer_is", _ANSWER_IS), ("option_named", _OPTION)):
        found = [l for l in (_letter_at(output, m, letters) for m in pattern.finditer(output)) if l]
        if found:
            return found[-1], rule
    listed = {x for x in _LISTED.findall(output) if x in letters}
    m = _LEADING.match(output) if len(listed) < 2 else None  # "A. ...\nB. ...": the options echoed, no choice
    if m:
        letter = _letter_at(output, m, letters)
        if letter and (m.group("enc") or re.match(r"\s*(?:[\.\):,]|$|\n|[ \t]+\S)", output[m.end():])):
            return letter, "leading_letter"
    if choices:
        norm = normalize(output)
        hits = [l for l, c in zip(letters, choices) if norm and norm == normalize(c)]
        if len(hits) == 1:
            return hits[0], "option_text"
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

SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "mn": 1e6, "m": 1e6, "mm": 1e6, "billion": 1e9, "bn": 1e9,
          "b": 1e9, "trillion": 1e12, "tn": 1e12, "t": 1e12}
"""Scale words after a number. Whole words may follow after a space ("1.2 million"); the abbreviations
(k, m, mm, mn, b, bn, t, tn, any case) only when nothing but a space separates them and no letter follows, so
"12 months", "5 km" and "3 mb" are not scaled."""

_NUM = re.compile(
    r"(?<![\w.])(?P<open>\()?\s*(?P<sign>[-+−–])?\s*(?P<cur>[$€£¥])?\s*(?P<sign2>[-+−–])?"
    r"(?P<digits>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?P<exp>[eE][-+]?\d+)?(?![\w.]*\d)"
    r"(?:\s?(?P<scale>(?i:thousand|million|billion|trillion)|(?i:bn|mn|mm|tn|k|m|b|t))(?![A-Za-z&]))?"
    r"\s*(?P<pct>%|(?i:\s?per\s?cent\b|\s?percent\b))?\s*(?P<close>\))?"
    r"(?:\s*(?P<pct2>%))?")


class Number(NamedTuple):
    """A number read from text. ``value`` includes the scale ("$1.2 million" -> 1.2e6); ``percent``: a % sign or
    the word percent follows it; ``unit``: the scale word as written, kept apart from the digits."""

    value: float
    percent: bool = False
    unit: str = ""


def parse_number(text: str) -> Number | tuple[None, bool]:
    """First number in ``text``. Reads 1,234.5 / -3 / −3 / $4.2 / 12% / 12 percent / 1.2e3 / "$1.2 million" /
    "4bn" and accounting negatives "(3)" and "(4.5%)". (None, False) when there is none."""
    m = _NUM.search(str(text))
    if not m:
        return None, False
    return _number_from_match(m)


def _number_from_match(m: re.Match) -> Number:
    value = float(m.group("digits").replace(",", "") + (m.group("exp") or ""))
    scale = m.group("scale") or ""
    value *= SCALES[scale.lower()] if scale else 1.0
    if (m.group("sign") or m.group("sign2") or "") in ("-", "−", "–") or (m.group("open") and m.group("close")):
        value = -value
    return Number(value, bool(m.group("pct") or m.group("pct2")), scale)


def extract_number(output: str) -> tuple[Optional[Number], str]:
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
