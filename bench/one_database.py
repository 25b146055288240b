"""Figure 13: what taking turns on the DuckDB file costs (docs/ARCHITECTURE.md §4). Each process holds
the file only for a burst; the alternative, measured here in the same process run, is the file held
open all along (one connection for the process's life, as before). Two bursts: a step's commit
(Store.save_step) and a page's read (Live's tick: runs_frame, then steps_frame of one run).

- cold: the file closed before each burst (the linger after the last burst has run out), as a real
  run's commits are, seconds apart, and a Live tick a second after the last: open, work, close.
- warm: bursts back to back, within the linger, as a page's reads are: one open for all of them.
- beside a reader: the commits while another process reads as a Live tab does, every second.

Targets: a cold commit or read costs at most 50 ms more than with the file held open (opening a
DuckDB file builds its catalog: about 15 ms on these machines, whatever the file's size), a warm one
at most 1.5x, and beside the reader the slowest commit stays under half a second."""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, report

from iml_core.builders import build_agent, build_task
from iml_core.config import RunConfig
from iml_core.learner import learning_steps
from iml_core.store import Store
from iml_core.store.turns import LINGER_SECONDS

RUNS, STEPS, TRIES = 40, 20, 30

READER = r"""
import sys, time
from iml_core.store import Store
store = Store(sys.argv[1])
print("ready", flush=True)
while True:
    runs = store.runs_frame()
    store.steps_frame([int(runs["id"].max())])
    time.sleep(1.0)
"""


def median_ms(times: list[float]) -> float:
    return sorted(times)[len(times) // 2] * 1000


def timed(work, *, cold: bool, store: Store) -> float:
    if cold:
        store.let_go()  # what the linger does LINGER_SECONDS after a burst
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


if __name__ == "__main__":
    config = RunConfig(steps=STEPS, batch_size=16, eval_size=50)
    task = build_task(config)
    records = list(learning_steps(task, build_agent(config, task), config))
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        store = Store(db)
        with store.held():  # filled as before: one connection for all of it
            for _ in range(RUNS):
                run_id = store.create_run(config, task_name=task.name, task_source=task.source,
                                          agent_description="rule learner (no LLM)")
                for record in records:
                    store.save_step(run_id, record)
                store.set_status(run_id, "completed")
        store.let_go()  # checkpointed: every mode starts from the same file
        size_mb = db.stat().st_size / 1e6

        def commits():
            """Each next step of a run, as a commit to time; a new run after the last."""
            while True:
                run_id = store.create_run(config, task_name=task.name, task_source=task.source,
                                          agent_description="rule learner (no LLM)")
                for record in records:
                    yield lambda r=record, i=run_id: store.save_step(i, r)

        def live_read():
            runs = store.runs_frame()
            store.steps_frame([int(runs["id"].max())])

        # The three modes in turn within each try, so that the machine's other load falls on all alike.
        times = {(burst, mode): [] for burst in ("commit", "read") for mode in ("open", "cold", "warm")}
        for burst in ("commit", "read"):
            steps = commits()
            for _ in range(TRIES):
                work = (lambda s=steps: next(s)()) if burst == "commit" else live_read
                with store.held():
                    times[burst, "open"].append(timed(work, cold=False, store=store))
                times[burst, "cold"].append(timed(work, cold=True, store=store))
                times[burst, "warm"].append(timed(work, cold=False, store=store))
        figures = {key: median_ms(values) for key, values in times.items()}
        ok = True
        for burst, what in (("commit", "a step's commit (save_step)"), ("read", "a Live tick's read")):
            held_open = figures[burst, "open"]
            ok &= report(f"shared_file_{burst}_cold", figures[burst, "cold"], "ms median", held_open,
                         "at most 50 ms more than with the file held open",
                         figures[burst, "cold"] - held_open <= 50, what=what, db_mb=round(size_mb, 1),
                         linger_s=LINGER_SECONDS)
            ok &= report(f"shared_file_{burst}_warm", figures[burst, "warm"], "ms median", held_open,
                         "at most 1.5x the file held open", figures[burst, "warm"] <= 1.5 * held_open, what=what)

        reader = subprocess.Popen([sys.executable, "-c", READER, str(db)], stdout=subprocess.PIPE, text=True,
                                  cwd=ROOT)
        try:
            assert reader.stdout.readline().strip() == "ready"
            steps, times = commits(), []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # ten Live ticks of the other process
                times.append(timed(next(steps), cold=False, store=store))
                time.sleep(0.05)
        finally:
            reader.kill()
            reader.wait()
        worst = max(times)
        ok &= report("shared_file_commit_beside_a_reader", worst * 1000, "ms max", figures["commit", "open"],
                     "slowest commit < 500 ms while another process reads every second", worst < 0.5,
                     commits=len(times), median_ms=round(median_ms(times), 2))
        store.close()
    sys.exit(0 if ok else 1)
