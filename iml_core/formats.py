"""How a share and a change of one read, wherever they are written (the command line, the pages,
the report, the exports); and the one blank for a value there is none of (not measured yet)."""

from __future__ import annotations

import math

BLANK = "–"


def _missing(value) -> bool:
    """None, NaN, or pandas' NA (which has no float: the engine's light commands import no pandas)."""
    try:
        return value is None or math.isnan(float(value))
    except TypeError:
        return True


def percent(share: float | None, width: int = 0) -> str:
    """0.875 -> "87.5%"; BLANK for None or NaN; right-aligned in `width` for a column of them."""
    text = BLANK if _missing(share) else f"{100 * share:.1f}%"
    return f"{text:>{width}}"


def points(change: float | None, signed: bool = False) -> str:
    """A difference or spread of shares in percentage points: 0.05 -> "5.0 points" ("+5.0 points"
    signed, for a change); BLANK for None or NaN."""
    if _missing(change):
        return BLANK
    return f"{100 * change:{'+' if signed else ''}.1f} points"


def counted(n: int, noun: str) -> str:
    """3, "example" -> "3 examples"; 1 -> "1 example"; 0 -> "no examples"."""
    if n == 0:
        return f"no {noun}s"
    return f"{n} {noun}" + ("" if n == 1 else "s")
