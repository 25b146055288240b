"""What every benchmark shares: one JSON line per figure, and an exit code that says whether the
target held. A figure's baseline is a measured run of the alternative in the same process run (this
machine is shared), and its ratio is baseline / value; a figure with no alternative has baseline
null and no ratio, never its target dressed as one."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def report(name: str, value: float, unit: str, baseline: float | None, target: str, ok: bool, **extra) -> bool:
    ratio = None if baseline is None else round(baseline / value if value else float("inf"), 3)
    print(json.dumps({"name": name, "value": round(value, 4), "unit": unit,
                      "baseline": None if baseline is None else round(baseline, 4), "ratio": ratio,
                      "target": target, "ok": bool(ok), **extra}), flush=True)
    return bool(ok)


def best_of(n: int, work) -> float:
    """The fastest of n timings: the least disturbed by whatever else the machine is doing."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)
