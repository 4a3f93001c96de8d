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


_NO_ERROR_RE = re.compile(r"(?i)first\s+(?:incorrect|erroneous|wrong)\s+step\s*(?:is|:)?\s*:?\s*(?:none|n/?a|no\b)")
_INDEX_RE = re.compile(r"(?i)first\s+(?:incorrect|erroneous|wrong)\s+step\s*(?:is|:)?\s*:?\s*(?:step\s*)?(\d+)")
_CORRECTION_RE = re.compile(r"(?is)corrected\s+step(?:\s*\d+)?\s*:\s*(.*)")


def parse_critique(text: str, steps: list[Step]) -> tuple[Optional[Critique], str]:
    """Parse "First incorrect step: k / Corrected step: ..." (see configs/genrm/prompts/scp.txt).

    Returns (critique, "ok") or (None, reason) with reason one of: "no_error" (the GenRM found every step
    correct), "no_step_index", "step_out_of_range", "no_correction", "unchanged_correction".
    """
    if _NO_ERROR_RE.search(text) and not _INDEX_RE.search(text):
        return None, "no_error"
    m = _INDEX_RE.search(text)
    if not m:
        return None, "no_step_index"
    k = int(m.group(1))
    if not 1 <= k <= len(steps):
        return None, "step_out_of_range"
    c = _CORRECTION_RE.search(text, m.end())
    if not c:
        return None, "no_correction"
    body = c.group(1)
    body = STEP_RE.sub("", body, count=1) if STEP_RE.match(body.lstrip()) else body
    # the correction is one step: stop at the next step marker or at a blank line
    nxt = STEP_RE.search(body)
    if nxt:
        body = body[:nxt.start()]
    body = body.split("\n\n")[0].strip()
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
