"""Figure 5: the dashboard over 1,000 runs of 100 steps each, written through the engine's store.
The queries behind Runs (alarms included), Live (alarms, cost by phase) and Compare must answer in
under 100 ms at the 95th percentile, and AppTest must render each page in under 2 s.

Writing 100,000 steps takes minutes, so the database is kept in ~/.cache/iml-studio/ for the next
run of this benchmark (its name carries the schema version, so a new migration rebuilds it)."""

import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from common import ROOT, report

from iml_core import analysis, comparing
from iml_core.config import RunConfig
from iml_core.learner import learning_steps
from iml_core.builders import build_agent, build_task
from iml_core.store import SCHEMA_VERSION, Store

RUNS, STEPS = 1000, 100
CACHE = Path.home() / ".cache" / "iml-studio" / f"bench-dashboard-{RUNS}x{STEPS}-v{SCHEMA_VERSION}.duckdb"
# One long run, as a newcomer's overnight run: Notes must open it in under 2 s too.
LONG_STEPS = 1250
LONG = Path.home() / ".cache" / "iml-studio" / f"bench-dashboard-long-{LONG_STEPS}-v{SCHEMA_VERSION}.duckdb"


def build(path: Path) -> None:
    config = RunConfig(steps=STEPS, batch_size=16, eval_size=50)
    task = build_task(config)
    records = list(learning_steps(task, build_agent(config, task), config))
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with Store(partial) as store:
        for i in range(RUNS):
            run_config = config.replace(momentum=[0.0, 0.5, 0.9][i % 3], accumulation=[1, 4][(i // 3) % 2], seed=i)
            run_id = store.create_run(run_config, task_name=task.name, task_source=task.source,
                                      agent_description="rule learner (no LLM)")
            store.set_status(run_id, "running")
            for record in records:
                store.save_step(run_id, record)
            store.set_status(run_id, "completed")
    partial.rename(path)


def build_long(path: Path) -> None:
    from iml_core.runner import create_run, execute_run

    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with Store(partial) as store:
        execute_run(store, create_run(store, RunConfig(steps=LONG_STEPS, batch_size=16, eval_size=50,
                                                       momentum=0.5)))
    partial.rename(path)


def p95(work, n=40) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.quantiles(times, n=20)[-1]


if __name__ == "__main__":
    if not CACHE.exists():
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        build(CACHE)
        print(f"built {CACHE} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"iml-bench-{os.getpid()}.duckdb"
    shutil.copy(CACHE, work)
    ok = True
    with Store(work) as store:
        newest = int(store.runs_frame()["id"].max())
        picked = list(range(newest - 17, newest + 1))

        def runs_table():
            store.runs_frame()
            analysis.alarm_counts(store.churn_frame())

        def live():
            run = store.run(newest)
            steps = store.steps_frame([newest])
            store.confusion(newest, int(steps["step"].max()))
            analysis.seconds_left(run, steps)
            analysis.alarms(steps)
            store.phase_costs([newest])

        def compare():
            runs = store.runs_frame()
            selected = runs[runs["id"].isin(picked)]
            steps = store.steps_frame(picked)
            comparing.grouped_curves(selected, steps, "momentum")
            analysis.heatmaps(selected, steps)
            store.phase_costs(picked)

        for name, query in (("runs", runs_table), ("live", live), ("compare", compare)):
            seconds = p95(query)
            ok &= report(f"dashboard_query_{name}", seconds * 1000, "ms p95", None, "< 100 ms at p95",
                         seconds < 0.1, runs=RUNS, steps_per_run=STEPS)
    os.environ["IML_DB"] = str(work)
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    for page in ("pages/new_run.py", "pages/live.py", "pages/runs.py", "pages/notes.py", "pages/compare.py",
                 "pages/paper.py", "pages/data.py", "pages/models.py"):
        start = time.perf_counter()
        at.switch_page(page)
        at.run()
        seconds = time.perf_counter() - start
        ok &= report(f"dashboard_render_{Path(page).stem}", seconds, "s", None, "AppTest render < 2 s",
                     seconds < 2 and not at.exception)
    work.unlink(missing_ok=True)

    if not LONG.exists():
        build_long(LONG)
    long_work = work.with_name(f"iml-bench-long-{os.getpid()}.duckdb")
    shutil.copy(LONG, long_work)
    os.environ["IML_DB"] = str(long_work)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    start = time.perf_counter()
    at.switch_page("pages/notes.py")
    at.run()
    seconds = time.perf_counter() - start
    ok &= report("dashboard_render_notes_long_run", seconds, "s", None, "AppTest render < 2 s", seconds < 2
                 and not at.exception, steps=LONG_STEPS)
    long_work.unlink(missing_ok=True)
    sys.exit(0 if ok else 1)
