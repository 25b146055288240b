"""Figure 3: an offline run (paper, 100 steps, batch 16, accumulation 2, eval of 200 every step)
with the DuckDB store, against the same loop with storage switched off. The target is the run's
time: storage is under 1% of a real model's step (iml_core stores a step in about 5 ms; the
starter model takes seconds), so its share of this model-free loop is reported, not judged."""

import sys
import tempfile
from pathlib import Path

from common import best_of, report

from iml_core.config import RunConfig
from iml_core.builders import build_agent, build_task
from iml_core.runner import create_run, execute_run
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
    ok = report("engine_overhead", stored, "s", bare, "< 3 s for 100 steps", stored < 3,
                stored_over_bare=round(stored / bare, 3))
    sys.exit(0 if ok else 1)
