"""One database file, many processes (docs/ARCHITECTURE.md §4): real `python -m iml_core` processes
and real DuckDB files. Two writers at once lose nothing, a reader never sees half a step, a kill -9
of either writer leaves the other going and the killed run's committed steps intact and resumable,
and the dashboard's store and the command line work on one file at once."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest
from streamlit.testing.v1 import AppTest

from iml_core.config import RunConfig
from iml_core.errors import UserError
from iml_core.status import GOING
from iml_core.store import Store
from studio.engine import engine
from test_dashboard import APP

# The command's run on Live: long enough to be seen at several steps between two renders of Live,
# which take seconds under load (with 30 steps, a loaded run was seen only at steps 0 and 20).
CLI_STEPS = 120


def iml(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iml_core", *args], capture_output=True, text=True, timeout=300,
                          **kwargs)


def start_run(db, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "iml_core", "run", "--eval-size", "20", "--db", str(db),
                             "--json", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out)


# A third process reading as the pages do, in bursts, until both runs are completed. In each burst
# it checks what a half-written step would break: a run's steps_done is its last step row, and each
# step row comes with its predictions (their count is compared with the final file afterwards).
READER = r"""
import json, sys, time
from iml_core.store import Store
store, seen, moving, broken = Store(sys.argv[1]), {}, 0, []
deadline = time.monotonic() + 240
while time.monotonic() < deadline:
    with store.held() as cursor:
        runs = cursor.execute("SELECT id, status, steps_done, steps_total FROM runs ORDER BY id").fetchall()
        steps = cursor.execute('''SELECT s.run_id, s.step, (SELECT count(*) FROM predictions p
                                  WHERE p.run_id = s.run_id AND p.step = s.step AND p.served = 'step')
                                  FROM steps s''').fetchall()
    frame = store.runs_frame()
    store.steps_frame(frame["id"])
    for run_id, step, predictions in steps:
        seen.setdefault(f"{run_id}/{step}", set()).add(predictions)
    for run_id, status, done, total in runs:
        last = max((step for r, step, _ in steps if r == run_id), default=None)
        if (last or 0) != done:
            broken.append([run_id, done, last])
    moving += any(0 < done < total for _, _, done, total in runs)
    if len(runs) == 2 and all(status == "completed" for _, status, _, _ in runs):
        break
print(json.dumps({"seen": {k: sorted(v) for k, v in seen.items()}, "moving": moving, "broken": broken}))
"""


def predictions_per_step(db) -> dict[str, int]:
    with Store(db) as store, store.held() as cursor:
        rows = cursor.execute("""SELECT run_id, step, count(*) FROM predictions WHERE served = 'step'
                                 GROUP BY ALL""").fetchall()
    return {f"{run_id}/{step}": n for run_id, step, n in rows}


def assert_whole(store: Store, run_id: int, steps: int) -> None:
    """Steps 0..steps, once each, every one with its predictions; the run's totals say the same."""
    assert [s["step"] for s in store.steps(run_id)] == list(range(steps + 1))
    assert store.run(run_id)["steps_done"] == steps
    with store.held() as cursor:
        assert cursor.execute("""SELECT count(*) FROM (SELECT run_id, step, phase, minibatch, sample_id
                                 FROM predictions GROUP BY ALL HAVING count(*) > 1)""").fetchone()[0] == 0
        bare = cursor.execute("""SELECT count(*) FROM steps s WHERE run_id = ? AND NOT EXISTS (SELECT 1 FROM
                                 predictions p WHERE p.run_id = s.run_id AND p.step = s.step)""", [run_id])
        assert bare.fetchone()[0] == 0


def test_two_writers_and_a_reader_at_once_lose_nothing(tmp_path):
    db = tmp_path / "shared.duckdb"  # new: the writers meet on its migrations too
    writers = [start_run(db, "--steps", "15", "--seed", str(seed)) for seed in (1, 2)]
    reader = subprocess.Popen([sys.executable, "-c", READER, str(db)], stdout=subprocess.PIPE, text=True)
    summaries = [finished(w) for w in writers]
    out, _ = reader.communicate(timeout=300)
    assert reader.returncode == 0
    read = json.loads(out)

    assert sorted(s["run_id"] for s in summaries) == [1, 2]
    assert all(s["status"] == "completed" and s["steps"] == 15 for s in summaries)
    with Store(db) as store:
        for run_id in (1, 2):
            assert_whole(store, run_id, 15)
    final = predictions_per_step(db)
    assert read["broken"] == []
    assert read["moving"] > 0, "the reader never read while the runs went"
    # Every step the reader saw, it saw whole: with the predictions it has now, never fewer.
    assert {key: counts for key, counts in read["seen"].items() if counts != [final[key]]} == {}


@pytest.mark.parametrize("victim", [1, 2])
def test_a_writer_killed_mid_run_leaves_the_other_going_and_its_steps_resumable(tmp_path, victim):
    db = tmp_path / "killed.duckdb"
    Store(db).close()
    writers = {seed: start_run(db, "--steps", "20", "--seed", str(seed)) for seed in (1, 2)}
    with Store(db) as store:
        deadline = time.monotonic() + 120
        while not (mine := [r for r in store.runs() if r["config"]["seed"] == victim and r["steps_done"] >= 3]):
            assert time.monotonic() < deadline and writers[victim].poll() is None, "the run to kill never got going"
            time.sleep(0.02)
    writers[victim].send_signal(signal.SIGKILL)
    writers[victim].communicate()
    survivor = finished(writers[3 - victim])
    assert survivor["status"] == "completed" and survivor["steps"] == 20
    run_id = mine[0]["id"]

    runs = iml("runs", "--db", str(db))  # any later process sees that the killed run's owner is gone
    assert runs.returncode == 0, runs.stderr
    with Store(db) as store:
        run = store.run(run_id)
        assert run["status"] == "interrupted"
        assert 3 <= run["steps_done"] < 20
        assert_whole(store, run_id, run["steps_done"])
    resumed = iml("resume", str(run_id), "--db", str(db), "--json")
    assert resumed.returncode == 0, resumed.stderr
    with Store(db) as store:
        assert store.run(run_id)["status"] == "completed"
        assert_whole(store, run_id, 20)


def command(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "iml_core", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_every_command_works_beside_the_dashboards_store_and_its_run_shows_there(tmp_path, monkeypatch):
    db = str(tmp_path / "dash.duckdb")
    monkeypatch.setenv("IML_DB", db)
    store, manager = engine(db)  # the dashboard's store and manager, as its server holds them
    try:
        [dashboard_run] = manager.submit([RunConfig(steps=60, eval_size=20)])  # writing beside the commands
        listed = iml("runs", "--db", db)
        assert listed.returncode == 0, listed.stderr
        assert f"{dashboard_run:>4}  " in listed.stdout

        cli = start_run(db, "--steps", str(CLI_STEPS), "--seed", "5")  # watched on Live below
        writers = [command("sweep", "--momentum", "0,0.5", "--steps", "3", "--eval-size", "20", "--db", db),
                   command("ladder", "--agent", "offline", "--steps", "2", "--eval-size", "20", "--db", db)]
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        at.switch_page("pages/live.py")
        at.run()
        seen, shown_on_live, elsewhere, deadline = [], [], [], time.monotonic() + 240
        while cli.poll() is None and time.monotonic() < deadline:
            runs = store.runs_frame()
            going = runs[runs["status"].isin(GOING) & (runs["steps_total"] == CLI_STEPS)]
            if not going.empty:  # the command's run, as Runs lists it
                run_id = int(going["id"].iloc[0])
                seen.append(int(going["steps_done"].iloc[0]))
                if len(seen) == 1:  # nobody deletes a run under the process running it
                    with pytest.raises(UserError, match=f"still going \\(process {cli.pid}\\)"):
                        store.delete_runs([run_id])
                at.run()  # Live lists it
                if at.selectbox(key="live_run").value != run_id:
                    at.selectbox(key="live_run").set_value(run_id)
                    at.run()
                assert not at.exception, at.exception
                shown_on_live += [p.proto.text for p in at.get("progress")]
                elsewhere += [c.value for c in at.caption if f"goes in process {cli.pid} " in c.value]
            time.sleep(0.2)
        summary = finished(cli)
        assert summary["status"] == "completed"
        moving = [done for done in seen if 0 < done < CLI_STEPS]
        assert len(set(moving)) >= 2, f"the command's run did not move on the dashboard's store: {seen}"
        progress = re.compile(rf"running: step (\d+) of {CLI_STEPS}")
        live = {int(m.group(1)) for text in shown_on_live if (m := progress.match(text))}
        assert len(live) >= 2, f"Live did not show the command's run moving: {shown_on_live}"
        assert elsewhere, "Live offered to cancel a run another process runs"
        for writer in writers:
            out, err = writer.communicate(timeout=300)
            assert writer.returncode == 0, err

        run_id = str(summary["run_id"])
        readers = [command("show", run_id, "--db", db),
                   command("report", run_id, "--db", db, "--out", str(tmp_path / "r.html")),
                   command("export", run_id, "--db", db, "--mlflow", f"sqlite:///{tmp_path / 'mlflow.db'}")]
        for reader in readers:
            out, err = reader.communicate(timeout=300)
            assert reader.returncode == 0, err
        assert (tmp_path / "r.html").stat().st_size > 0
    finally:
        manager.join(timeout=120)
    statuses = store.runs_frame().set_index("id")["status"]
    assert len(statuses) == 1 + 1 + 2 + 15 and set(statuses) == {"completed"}, statuses  # dashboard, run, sweep, ladder
