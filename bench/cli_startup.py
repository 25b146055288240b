"""The command line's start-up: `python -m iml_core doctor` (the command a new machine runs first)
against a bare `python -c pass` in the same run, each the fastest of 7 child processes. The CLI
imports what a command needs when it runs (no plotly or pandas for doctor, build and data), so
start-up is the interpreter plus the engine's own modules, duckdb and pyarrow among them."""

import os
import subprocess
import sys

from common import ROOT, best_of, report

RUNS = 7
# Seconds beyond a bare interpreter. On the shared 2-core machine the target was set on, doctor took
# 3.61 s while every command imported plotly and pandas, 0.82 s after (a bare python: 0.05 s).
MOST_EXTRA = 1.5


def child(*args: str):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run() -> None:
        subprocess.run([sys.executable, *args], check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return run


bare = best_of(RUNS, child("-c", "pass"))
doctor = best_of(RUNS, child("-m", "iml_core", "doctor"))
sys.exit(0 if report("cli start-up (iml doctor)", doctor, "s", bare, f"at most {MOST_EXTRA} s more than a bare "
                     "python -c pass", doctor - bare <= MOST_EXTRA, extra_seconds=round(doctor - bare, 3)) else 1)
