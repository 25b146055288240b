"""A store that lost committed work says so (issue 34, docs/ARCHITECTURE.md §4): a run is never
`completed` with a hole, a step is never written past one, a resumed run goes on from its first
missing step, `iml check` names every hole, and no two processes ever have the file open at once,
whatever else of the process opens and closes the file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iml_core.config import RunConfig
from iml_core.errors import DatabaseLocked
from iml_core.runner import check_resumable, create_run, execute_run
from iml_core.store import Store
from iml_core.store.integrity import LostSteps, ranges
from kill_trials import contents, differences

CONFIG = RunConfig(steps=10, eval_size=20, batch_size=8, seed=4)


def iml(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iml_core", *args], capture_output=True, text=True, timeout=300)


def remove_step(store: Store, run_id: int, step: int) -> None:
    """What a store that loses a commit leaves: the step and its predictions gone."""
    with store.held() as cursor:
        cursor.execute("DELETE FROM predictions WHERE run_id = ? AND step = ?", [run_id, step])
        cursor.execute("DELETE FROM steps WHERE run_id = ? AND step = ?", [run_id, step])


def run_losing(store: Store, *, after_step: int, lost: int) -> int:
    """A run whose step `lost` vanishes from the store once step `after_step` is committed; the
    run's id, after execute_run raised LostSteps (left to the caller's pytest.raises)."""
    run_id = create_run(store, CONFIG)

    def lose(record):
        if record.step == after_step:
            remove_step(store, run_id, lost)

    execute_run(store, run_id, on_step=lose)
    return run_id


def made_alone(tmp_path: Path) -> dict:
    with Store(tmp_path / "alone.duckdb") as store:
        run_id = create_run(store, CONFIG)
        execute_run(store, run_id)
    return contents(tmp_path / "alone.duckdb", run_id)


def test_a_run_that_lost_a_committed_step_is_not_completed_and_resumes_from_the_hole(tmp_path):
    db = tmp_path / "holed.duckdb"
    with Store(db) as store:
        with pytest.raises(LostSteps, match="run 1 lacks step 3 .*iml resume 1.*from step 3"):
            run_losing(store, after_step=6, lost=3)
        run_id = 1
        run = store.run(run_id)
        assert run["status"] == "failed" and "lacks step 3" in run["error"]
        check_resumable(store, run_id)  # failed, so resumable
    checked = iml("check", "--db", str(db), "--json")
    assert checked.returncode == 1, checked.stderr
    [hole] = json.loads(checked.stdout)["holes"]
    assert hole["first_missing"] == 3 and hole["missing"] == "3" and hole["run_id"] == run_id

    with Store(db) as store:
        summary = execute_run(store, run_id)
        assert summary["status"] == "completed" and summary["steps"] == 10
        assert store.hole(run_id) is None
    assert differences(made_alone(tmp_path), contents(db, run_id)) == {}
    assert iml("check", "--db", str(db)).returncode == 0


def test_a_step_is_never_written_past_a_lost_one(tmp_path):
    with Store(tmp_path / "tail.duckdb") as store:
        with pytest.raises(LostSteps, match=r"found step\(s\) 4: .*not what the store"):
            run_losing(store, after_step=4, lost=4)  # the step just committed
        run_id = 1
        assert [s["step"] for s in store.steps(run_id)] == [0, 1, 2, 3]  # step 5 was not written
        assert store.run(run_id)["status"] == "failed"


def test_a_completed_run_stored_with_a_hole_is_named_and_can_be_resumed(tmp_path):
    """A file written before the runner checked: `iml check` finds the hole, `iml resume` mends it."""
    db = tmp_path / "old.duckdb"
    with Store(db) as store:
        run_id = create_run(store, CONFIG)
        execute_run(store, run_id)
        for step in (5, 6, 8):
            remove_step(store, run_id, step)
    checked = iml("check", "--db", str(db))
    assert checked.returncode == 1
    assert f"run {run_id} lacks steps 5-6, 8; `iml resume {run_id}` computes it again from step 5" in checked.stdout
    resumed = iml("resume", str(run_id), "--db", str(db), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "completed"
    assert differences(made_alone(tmp_path), contents(db, run_id)) == {}


def test_check_names_a_missing_file_and_creates_nothing(tmp_path):
    missing = tmp_path / "nothing.duckdb"
    checked = iml("check", "--db", str(missing))
    assert checked.returncode == 2 and f"there is no database at {missing}" in checked.stderr
    assert not missing.exists()


def test_ranges_reads_as_a_person_writes_them():
    assert ranges([116, 117, 118, 200, 3]) == "3, 116-118, 200"
    assert ranges([]) == "none"


# A process holding the file in a burst closes a descriptor of its own on the file, as a header
# check, a size read or DuckDB's own header probes do: POSIX then drops DuckDB's lock for the whole
# process, and before our own lock another process opened the file beside it.
HOLDER = r"""
import os, sys, time
from iml_core.store import Store
store = Store(sys.argv[1])
with store.held() as cursor:
    cursor.execute("CREATE TABLE mine (i INTEGER)")
    os.close(os.open(sys.argv[1], os.O_RDONLY))
    print("holding", flush=True)
    time.sleep(30)
"""


def test_no_second_process_opens_the_file_while_the_holder_has_it_whatever_it_closes(tmp_path):
    db = tmp_path / "held.duckdb"
    Store(db).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(DatabaseLocked, match=f"in use by process {holder.pid}"):
            Store(db, wait=1.0)
    finally:
        holder.kill()
        holder.wait()
    with Store(db) as store:  # the holder died mid-burst: the next process opens the file as usual
        assert store.schema_version() > 0
