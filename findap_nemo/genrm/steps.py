"""Step-structured solutions: split a solution into "Step k:" steps and parse the GenRM's SCP critique.

Solutions keep their exact text: steps are character spans, so an SCP pair's chosen and rejected responses share
the original prefix before the erroneous step byte for byte. Parsing never raises on model output; it returns a
reason string that the run counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

STEP_RE = re.compile(r"(?im)^[ \t>*#-]*\**step[ \t]*(\d+)\**[ \t]*[:.)]\**")
"""A step marker at the start of a line: "Step 3:", "**Step 3:**", "step 3." (case-insensitive)."""


@dataclass
class Step:
    number: int  # as written by the model
    start: int  # character offset of the marker in the solution
    end: int  # end of the step's text (start of the next marker or end of solution)
    text: str  # the step's content without its marker, stripped


def split_steps(solution: str) -> list[Step]:
    """The solution's steps in order; text before the first marker (if any) is not a step.

    A solution without any marker is one step spanning the whole text, so a critique can still point at it.
    """
    marks = list(STEP_RE.finditer(solution))
    if not marks:
        text = solution.strip()
        return [Step(1, 0, len(solution), text)] if text else []
    steps = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(solution)
        steps.append(Step(int(m.group(1)), m.start(), end, solution[m.end():end].strip()))
    return steps


def format_steps(steps: list[Step]) -> str:
    """Steps renumbered 1..n as "Step k: ..." lines: what the GenRM is shown, whatever the policy wrote."""
    return "\n".join(f"Step {i}: {s.text}" for i, s in enumerate(steps, 1))


@dataclass
class Critique:
    step: Optional[int]  # 1-based index of the first erroneous step (in format_steps numbering); None = no error
    correction: str  # the corrected text of that step (without its marker)


_HEADER = r"first\s+(?:incorrect|erroneous|wrong|error(?:eous)?)\s+step"
_INDEX_RE = re.compile(
    rf"(?i){_HEADER}\b(?:\s*\(?\s*number\s*\)?)?[\s:=\-–—]*(?:is\b)?[\s:=\-–—>\[(#`]*"
    r"(?:(?:step|#)\s*)?(?:(?P<num>\d+)\b|(?P<none>none|n/?a\b|no\b|nil\b|-\s*$|–\s*$))")
_BLOCK_RE = re.compile(rf"(?i){_HEADER}")
_CORRECTION_RE = re.compile(r"(?im)corrected\s+step(?:\s*\(?\s*(?:step\s*)?\d+\s*\)?)?[ \t]*(?::|[-–—]|\n|$)[ \t]*")
_THINK_RE = re.compile(r"(?is)^\s*<think>.*?</think>")
_QUOTE = re.compile(r"(?m)^[ \t]*>[ \t]?")
_BULLET = re.compile(r"(?m)^[ \t]*[-*•+][ \t]+")
_COMMENT_RE = re.compile(r"(?im)^[ \t]*(?:explanation|reason(?:ing)?|justification|rationale|note|why)[ \t]*:")
_EMPHASIS = re.compile(r"\*\*|__")


def _clean(text: str) -> str:
    """Markdown instruct models add around the answer format, removed: bold markers, heading hashes, quote
    markers; a bullet becomes a paragraph break (each bullet is its own field); a leading <think>...</think>
    section is dropped (its drafts are not the answer)."""
    text = _THINK_RE.sub("", text or "")
    text = _EMPHASIS.sub("", text)
    text = re.sub(r"(?m)^[ \t]*#{1,6}[ \t]*", "", text)
    text = _QUOTE.sub("", text)
    return _BULLET.sub("\n", text)


def parse_critique(text: str, steps: list[Step]) -> tuple[Optional[Critique], str]:
    """Parse the first complete "First incorrect step: k / Corrected step: ..." block (configs/genrm/prompts/scp.txt).

    Markdown is tolerated ("**First incorrect step:** 2", "### Corrected step", bullets, quotes). Only the first
    block counts: a second "First incorrect step" block, a later "Corrected step", a blank line or the next step
    marker ends the correction, so nothing after it is glued onto the prefix the policy continues from.

    Returns (critique, "ok") or (None, reason) with reason one of: "no_error" (the GenRM found every step
    correct), "no_step_index", "step_out_of_range", "no_correction", "unchanged_correction".
    """
    text = _clean(text)
    m = _INDEX_RE.search(text)
    if not m:
        return None, "no_step_index"
    if m.group("none") is not None:
        return None, "no_error"
    k = int(m.group("num"))
    if not 1 <= k <= len(steps):
        return None, "step_out_of_range"
    nxt_block = _BLOCK_RE.search(text, m.end())
    block_end = nxt_block.start() if nxt_block else len(text)
    c = _CORRECTION_RE.search(text, m.end(), block_end)
    if not c:
        return None, "no_correction"
    body = text[c.end():block_end].lstrip()
    for end_re in (_CORRECTION_RE, _COMMENT_RE):  # a second "Corrected step", or "Explanation:", ends it
        later = end_re.search(body)
        if later:
            body = body[:later.start()]
    if STEP_RE.match(body):
        body = STEP_RE.sub("", body, count=1)
    # the correction is one step: stop at the next step marker or at a blank line
    nxt = STEP_RE.search(body)
    if nxt:
        body = body[:nxt.start()]
    body = body.split("\n\n")[0].strip()
    if len(body) >= 2 and body[0] == body[-1] and body[0] in "\"'`":
        body = body[1:-1].strip()
    if not body:
        return None, "no_correction"
    if " ".join(body.split()) == " ".join(steps[k - 1].text.split()):
        return None, "unchanged_correction"
    return Critique(k, body), "ok"


def corrected_prefix(solution: str, steps: list[Step], critique: Critique) -> str:
    """The original text before the erroneous step, then that step rewritten: where the policy continues."""
    bad = steps[critique.step - 1]
    prefix = solution[:bad.start]
    if prefix and not prefix.endswith("\n"):
        prefix += "\n"
    return f"{prefix}Step {bad.number}: {critique.correction}\n"
