"""Figure 3: an offline run (paper, 100 steps, batch 16, accumulation 2, eval of 200 every step)
with the DuckDB store against the same loop with storage switched off."""

import sys
import tempfile
from pathlib import Path

from common import best_of, report

from iml_core.config import RunConfig
from iml_core.runner import build_agent, build_task, create_run, execute_run
from iml_core.learner import learning_steps
from iml_core.store import Store

CONFIG = RunConfig(task="paper", steps=100, batch_size=16, accumulation=2, eval_size=200, eval_every=1)


def without_store():
    task = build_task(CONFIG)
    for _ in learning_steps(task, build_agent(CONFIG, task), CONFIG):
        pass


def with_store():
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb") as store:
        execute_run(store, create_run(store, CONFIG))


if __name__ == "__main__":
    bare = best_of(3, without_store)
    stored = best_of(3, with_store)
    ok = report("engine_overhead", stored, "s", bare, "stored <= 1.5x bare and < 10 s",
                stored <= 1.5 * bare and stored < 10, stored_over_bare=round(stored / bare, 3))
    sys.exit(0 if ok else 1)
