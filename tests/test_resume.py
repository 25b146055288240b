"""A run killed with SIGKILL loses at most the step in flight and, resumed, ends exactly as a run
that was never stopped."""

import json
import signal
import subprocess
import sys
from pathlib import Path

from iml_core.store import Store

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = dict(steps=30, batch_size=8, eval_size=100, seed=7, momentum=0.5)

# A real process running a real run, printing each committed step so the test knows when to kill it.
RUNNER = """
import sys
from iml_core.config import RunConfig
from iml_core.runner import create_run, execute_run
from iml_core.store import Store
with Store(sys.argv[1]) as store:
    run_id = create_run(store, RunConfig(**{settings}))
    execute_run(store, run_id, on_step=lambda r: print(r.step, flush=True))
"""


def iml(*args):
    return subprocess.run([sys.executable, "-m", "iml_core", *args], capture_output=True, text=True, cwd=ROOT)


def history(db, run_id):
    with Store(db) as store:
        return [(s["step"], s["notes"], s["eval_accuracy"], s["train_accuracy"]) for s in store.steps(run_id)]


def test_kill_9_after_step_12_then_resume_matches_an_uninterrupted_run(tmp_path):
    killed_db, whole_db = tmp_path / "killed.duckdb", tmp_path / "whole.duckdb"
    process = subprocess.Popen([sys.executable, "-c", RUNNER.format(settings=SETTINGS), str(killed_db)],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT)
    for line in process.stdout:
        if int(line) == 12:
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    assert process.returncode == -signal.SIGKILL

    runs = iml("runs", "--db", str(killed_db))  # any command that opens the file finds the dead run
    assert runs.returncode == 0 and "interrupted" in runs.stdout, runs.stdout
    with Store(killed_db) as store:
        kept = len(store.steps(1)) - 1
    assert 12 <= kept < 30, kept  # at most the step in flight was lost

    resumed = iml("resume", "1", "--db", str(killed_db), "--json")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "completed" and summary["steps"] == 30

    whole = iml("run", *[f"--{k.replace('_', '-')}={v}" for k, v in SETTINGS.items()], "--db", str(whole_db), "--json")
    assert whole.returncode == 0, whole.stderr
    assert history(killed_db, 1) == history(whole_db, 1)
    assert json.loads(whole.stdout)["final_eval_accuracy"] == summary["final_eval_accuracy"]


def test_only_stopped_runs_resume(tmp_path):
    db = tmp_path / "done.duckdb"
    assert iml("run", "--steps", "2", "--eval-size", "20", "--db", str(db)).returncode == 0
    result = iml("resume", "1", "--db", str(db))
    assert result.returncode == 2 and "run 1 is completed; only interrupted, cancelled, failed" in result.stderr
    assert iml("resume", "5", "--db", str(db)).returncode == 2


def test_fork_starts_from_the_notes_at_a_step_and_remembers_its_parent(tmp_path):
    db = tmp_path / "fork.duckdb"
    assert iml("run", "--steps", "6", "--eval-size", "40", "--momentum", "0", "--db", str(db)).returncode == 0
    forked = iml("fork", "1", "--step", "3", "--momentum", "0.9", "--steps", "4", "--db", str(db), "--json")
    assert forked.returncode == 0, forked.stderr
    assert json.loads(forked.stdout)["run_id"] == 2
    with Store(db) as store:
        child = store.run(2)
        assert (child["parent_run_id"], child["parent_step"]) == (1, 3)
        assert child["config"]["momentum"] == 0.9 and child["config"]["steps"] == 4
        assert child["config"]["seed"] == store.run(1)["config"]["seed"]
        assert store.notes_at(2, 0) == store.notes_at(1, 3)
    bad = iml("fork", "1", "--step", "9", "--db", str(db))
    assert bad.returncode == 2 and "run 1 has no step 9" in bad.stderr


def test_an_llm_run_killed_mid_step_resumes_without_repeating_a_completed_call(tmp_path):
    import os

    from fault_server import FaultServer

    db = tmp_path / "llm.duckdb"
    process = None

    def kill_mid_step(number):
        if number == 9:  # step 2's second training answer: its first one (request 8) has completed
            process.send_signal(signal.SIGKILL)

    with FaultServer([], on_request=kill_mid_step) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "iml_core", "run", "--agent", "llm", "--backend", "openai", "--base-url",
             server.url, "--model", "m", "--steps", "2", "--eval-size", "2", "--batch-size", "2", "--max-parallel",
             "1", "--max-note-words", "40", "--structured-output", "json_object", "--db", str(db)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
        process.wait(timeout=120)
        assert process.returncode == -signal.SIGKILL
        resumed = iml("resume", "1", "--db", str(db), "--json")
        assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "completed"
    # 14 calls in all; the resumed run asked only the one in flight again, the cache answered the rest.
    assert len(server.requests) == 15
    with Store(db) as store:
        assert [c["cached"] for c in store.model_calls(1) if c["step"] == 2] == [True] + [False] * 5


def test_a_run_whose_task_is_no_longer_its_data_is_refused_a_resume_and_new_baselines(tmp_path):
    import threading

    import pytest

    from iml_core.config import RunConfig
    from iml_core.errors import UserError
    from iml_core.evaluation import compute_baselines
    from iml_core.runner import check_resumable, create_run, execute_run

    with Store(tmp_path / "runs.duckdb") as store:
        stop = threading.Event()
        stop.set()
        run_id = create_run(store, RunConfig(task="noisy", steps=3, eval_size=20))
        execute_run(store, run_id, cancel=stop)
        check_resumable(store, run_id)  # made now: its data is what `noisy` builds
        # As an earlier release stored it: `noisy` drew its own rule, and its wrong labels from the
        # feature stream.
        with store.held() as cursor:
            cursor.execute("UPDATE runs SET task_source = ? WHERE id = ?",
                           [json.dumps({"preset": "noisy", "seed": 0, "label_noise": 0.1}), run_id])
        with pytest.raises(UserError, match=r"is no longer the data it learned from .* start a new run"):
            check_resumable(store, run_id)
        with pytest.raises(UserError, match="baselines on what it is now would mix two data sets"):
            compute_baselines(store, run_id)
