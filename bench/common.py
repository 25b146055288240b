"""What every benchmark shares: one JSON line per figure, and an exit code that says whether the
target held. Figures are ratios measured side by side in one run (this machine is shared)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def report(name: str, value: float, unit: str, baseline: float, target: str, ok: bool, **extra) -> bool:
    ratio = baseline / value if value else float("inf")
    print(json.dumps({"name": name, "value": round(value, 4), "unit": unit, "baseline": round(baseline, 4),
                      "ratio": round(ratio, 2), "target": target, "ok": bool(ok), **extra}), flush=True)
    return bool(ok)


def best_of(n: int, work) -> float:
    """The fastest of n timings: the least disturbed by whatever else the machine is doing."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)
