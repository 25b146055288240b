"""Model backends behind one small interface: a chat that must answer with one of some labels,
and a chat that answers with text (optionally forced to begin with a given prefix)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from iml_core.errors import UserError

Messages = list[dict[str, str]]


class BackendError(UserError):
    """The model server or file failed in a way retries did not fix; the run stops `failed`."""


@dataclass(frozen=True)
class Completion:
    raw: str  # exactly what the model returned
    text: str  # the usable answer: the label, or the text (with a forced prefix in front)
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0  # prompt tokens the server did not have to evaluate again
    line: int | None = None  # for labels asked with `lines`: the notes unit the model named


LINE_SEPARATOR = " | line "  # a plain-text answer naming its notes unit: "Florp | line 2"


def split_label_line(text: str, labels: Sequence[str], lines: int) -> tuple[str, int | None]:
    """The label ('' when it is none of `labels`) and the unit number (None when absent or out of
    range) of a plain-text answer."""
    text = text.strip()
    label, separator, number = text.rpartition(LINE_SEPARATOR)
    if not separator:
        label, number = text, ""
    line = int(number) if number.strip().isdigit() and 1 <= int(number) <= lines else None
    return (label.strip() if label.strip() in labels else ""), line


class Backend(Protocol):
    # Everything besides the request that decides the output; part of the response-cache key.
    identity: dict
    description: str
    max_parallel: int  # requests worth sending at once
    forces_prefix: bool  # True when `text(prefix=...)` guarantees the prefix

    def label(self, messages: Messages, labels: Sequence[str], *, temperature: float, seed: int,
              max_tokens: int, lines: int = 0) -> Completion:
        """One of `labels`; with `lines` > 0, also the number (1..lines) of the notes unit relied on."""

    def text(self, messages: Messages, *, temperature: float, seed: int, max_tokens: int,
             prefix: str = "") -> Completion: ...

    def cost(self, tokens_in: int, tokens_out: int) -> float: ...
