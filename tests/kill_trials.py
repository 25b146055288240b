"""Seeded kill trials on one shared DuckDB file (issue 34, docs/ARCHITECTURE.md §4).

Two writers (real `python -m iml_core run` processes) and readers share one file while a victim is
killed with SIGKILL at seeded moments and, if it is a writer, resumed each time. Afterwards every
run is compared, table by table, with the same run made alone in a file of its own. Used by
tests/test_kill_trials.py (a few trials in `make test`, `IML_SOAK_TRIALS=N` for many) and runnable
as `python tests/kill_trials.py TRIALS [VICTIM]` to print one JSON line per trial.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from iml_core.store.integrity import ranges

ROOT = Path(__file__).resolve().parents[1]

# The runs of the report in issue 34: one left alone, one killed and resumed.
STEADY = ["--task", "rules:classes=3,attributes=8,relevant=2,noise=0.05,seed=9", "--agent", "offline",
          "--batch-size", "16", "--momentum", "0.3", "--seed", "5", "--eval-size", "200", "--eval-every", "2"]
KILLED = ["--task", "noisy", "--agent", "offline", "--batch-size", "8", "--accumulation", "2",
          "--momentum", "0.7", "--seed", "11", "--eval-size", "200", "--eval-every", "3"]

# What a run is, table by table: every column that a rerun reproduces (no ids, times or durations).
CONTENT = {
    "steps": """SELECT step, notes, train_accuracy, train_invalid, eval_accuracy, eval_invalid, per_class,
                       notes_words, words_changed, prefix_words, learner_state FROM steps
                WHERE run_id = ? ORDER BY step""",
    "predictions": """SELECT step, phase, minibatch, sample_id, predicted, label, correct, raw FROM predictions
                      WHERE run_id = ? ORDER BY ALL""",
    "batch_notes": "SELECT step, minibatch, text FROM batch_notes WHERE run_id = ? ORDER BY ALL",
    "model_calls": "SELECT step, phase, prompt, response FROM model_calls WHERE run_id = ? ORDER BY ALL",
    "candidates": """SELECT step, position, origin, minibatch, text, "right", scored, decision FROM candidates
                     WHERE run_id = ? ORDER BY ALL""",
}

# A user listing the runs once a second, each time a new `iml runs` process (as in issue 34).
LISTER = r"""
import subprocess, sys, time
while True:
    subprocess.run([sys.executable, "-m", "iml_core", "runs", "--db", sys.argv[1]], capture_output=True)
    time.sleep(float(sys.argv[2]))
"""

READER = r"""
import sys, time
from iml_core.store import Store
store = Store(sys.argv[1])
while True:
    store.runs_frame()
    frame = store.runs_frame()
    if len(frame):
        store.steps_frame(frame["id"])
    time.sleep(float(sys.argv[2]))
"""


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "iml_core", *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def contents(db: Path, run_id: int) -> dict[str, list]:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as connection:
        return {table: connection.execute(sql, [run_id]).fetchall() for table, sql in CONTENT.items()}


def run_alone(folder: Path, args: list[str], steps: int) -> dict[str, list]:
    db = folder / f"alone-{abs(hash(tuple(args))) % 10**8}-{steps}.duckdb"
    if not db.exists():
        done = subprocess.run(_command("run", "--db", str(db), "--steps", str(steps), "--json", *args),
                              capture_output=True, text=True, timeout=600, env=_env())
        assert done.returncode == 0, done.stderr
    return contents(db, 1)


def differences(alone: dict[str, list], shared: dict[str, list]) -> dict[str, str]:
    """Table -> what differs, in words: the first missing or extra row's step, and the counts."""
    found = {}
    for table, rows in alone.items():
        theirs = shared[table]
        if rows == theirs:
            continue
        missing = sorted(set(rows) - set(theirs), key=lambda r: r[0])
        extra = sorted(set(theirs) - set(rows), key=lambda r: r[0])
        steps_missing = sorted({r[0] for r in missing})
        found[table] = (f"{len(theirs)} rows against {len(rows)} alone; missing steps "
                        f"{ranges(steps_missing)}; {len(extra)} rows not in the run made alone")
    return found


def trial(seed: int, folder: Path, *, victim: str = "writer", steps: int = 300, kills: int = 6,
          reader_every: float = 1.0) -> dict:
    """One seeded trial: the file shared, the victim killed `kills` times, both runs compared with
    the same runs made alone. victim is `writer` (a run, resumed each time), `reader` (a process
    listing runs as `iml runs` and the pages do) or `dashboard` (the dashboard's own store, running a
    run of its own in a RunManager thread)."""
    rng = random.Random(seed)
    db = folder / f"trial-{victim}-{seed}.duckdb"
    db.unlink(missing_ok=True)
    start = time.monotonic()
    steady = subprocess.Popen(_command("run", "--db", str(db), "--steps", str(steps), "--json", *STEADY),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    readers = [subprocess.Popen([sys.executable, "-c", LISTER, str(db), str(reader_every)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(),
                                start_new_session=True)]
    killed = 0
    run_id_of_killed = None
    try:
        if victim == "writer":
            process = subprocess.Popen(_command("run", "--db", str(db), "--steps", str(steps), "--json", *KILLED),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
            for _ in range(kills):
                time.sleep(rng.uniform(0.5, 3.0))
                if process.poll() is not None:
                    break
                process.send_signal(signal.SIGKILL)
                process.wait()
                killed += 1
                run_id_of_killed = run_id_of_killed or _run_id_with(db, "noisy", wait=5)
                # Killed before its run existed: it starts again, as a user would start it.
                again = (["resume", str(run_id_of_killed)] if run_id_of_killed else
                         ["run", "--steps", str(steps), *KILLED])
                process = subprocess.Popen(_command(*again, "--db", str(db), "--json"),
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
            out, err = process.communicate(timeout=600)
            assert process.returncode == 0, f"the killed run's last resume failed: {err[-2000:]}"
        else:
            process = _victim_process(db, victim, steps)
            # The dashboard's imports take seconds: its kills come later, so that its runs get going.
            window = (4.0, 10.0) if victim == "dashboard" else (0.5, 3.0)
            for _ in range(kills):
                time.sleep(rng.uniform(*window))
                process.send_signal(signal.SIGKILL)
                process.wait()
                killed += 1
                process = _victim_process(db, victim, steps)
            process.send_signal(signal.SIGKILL)
            process.wait()
        out, err = steady.communicate(timeout=600)
        assert steady.returncode == 0, f"the steady run failed: {err[-2000:]}"
    finally:
        for reader in readers:
            os.killpg(reader.pid, signal.SIGKILL)
            reader.wait()
        if steady.poll() is None:
            steady.kill()
    # The whole file checked, as a user would check it after such a day.
    check = subprocess.run(_command("check", "--db", str(db), "--json"), capture_output=True, text=True,
                           timeout=300, env=_env())
    compared, diffs = 0, {}
    runs = [("steady", STEADY, _run_id_with(db, "rules:"))]
    if victim == "writer":
        runs.append(("killed", KILLED, _run_id_with(db, "noisy")))
    elif victim == "dashboard":
        runs += [(f"dashboard-{i}", DASHBOARD_ARGS, run_id) for i, run_id in enumerate(_dashboard_runs(db))]
    for name, args, run_id in runs:
        alone = run_alone(folder, args, steps if name != "dashboard" else DASHBOARD_STEPS)
        shared = contents(db, run_id)
        compared += len(shared["steps"])
        if name.startswith("dashboard"):
            # A killed dashboard's run is interrupted, not finished: what it stored is the run alone up
            # to its last stored step, with nothing missing before it.
            last = max((r[0] for r in shared["steps"]), default=-1)
            alone = {t: [r for r in rows if r[0] <= last] for t, rows in alone.items()}
        found = differences(alone, shared)
        if found:
            diffs[f"{name} (run {run_id})"] = found
    return {"seed": seed, "victim": victim, "kills": killed, "steps_compared": compared,
            "seconds": round(time.monotonic() - start, 1), "lost": diffs,
            "check_rc": check.returncode, "check": check.stdout.strip()[-2000:] or check.stderr.strip()[-2000:]}


DASHBOARD_STEPS = 40
DASHBOARD_ARGS = ["--task", "paper", "--agent", "offline", "--batch-size", "8", "--seed", "3", "--eval-size", "100"]
DASHBOARD = r"""
import sys, time
from iml_core.config import RunConfig
from studio.engine import engine
store, manager = engine(sys.argv[1])  # the dashboard server's own store and run manager
manager.submit([RunConfig(task="paper", agent="offline", batch_size=8, seed=3, eval_size=100, steps=int(sys.argv[2]))])
while True:  # a tab reading as Live does, beside the run, and after it
    store.runs_frame()
    time.sleep(0.2)
"""


def _victim_process(db: Path, victim: str, steps: int) -> subprocess.Popen:
    if victim == "reader":
        return subprocess.Popen([sys.executable, "-c", READER, str(db), "0.01"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=_env())
    return subprocess.Popen([sys.executable, "-c", DASHBOARD, str(db), str(DASHBOARD_STEPS)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())


def _run_id_with(db: Path, task: str, wait: float = 60) -> int | None:
    """The first run of `task` in the file, read taking turns with the others as every IML process does."""
    from iml_core.store import Store

    deadline = time.monotonic() + wait
    while True:
        with Store(db) as store:
            ids = [r["id"] for r in store.runs() if r["task"].startswith(task)]
        if ids:
            return min(ids)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def _dashboard_runs(db: Path) -> list[int]:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as connection:
        return [r[0] for r in connection.execute("SELECT id FROM runs WHERE task = 'paper' ORDER BY id").fetchall()]


if __name__ == "__main__":
    import tempfile

    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    victim = sys.argv[2] if len(sys.argv) > 2 else "writer"
    first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(first, first + trials):
            print(json.dumps(trial(seed, Path(folder), victim=victim)), flush=True)
