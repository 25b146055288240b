"""Which sentence of the notes an answer relied on, and how often each sentence helped.

The notes are cut into numbered units, one per sentence; an agent names the unit behind each
answer (the LLM in its structured answer, the rule learner by the rule it matched), and every
prediction is stored with it. Notes after step s are used by the eval at step s and by the
training answers of step s + 1: together, each unit's record of right and wrong answers.
"""

from __future__ import annotations

import re

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=\S)")


def note_units(notes: str) -> list[str]:
    """The notes' sentences in order (a line may hold several; none spans two lines)."""
    return [unit.strip() for line in notes.splitlines() for unit in _SENTENCE_BREAK.split(line) if unit.strip()]


def numbered(units: list[str]) -> str:
    """How units appear in a prompt, so that an answer can name one: "[1] ...", one per line."""
    return "\n".join(f"[{i}] {unit}" for i, unit in enumerate(units, start=1))
