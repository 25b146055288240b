import json
import subprocess
import sys
import threading
import time

import duckdb
import pytest

from iml_core.config import RunConfig
from iml_core.errors import DatabaseLocked, UserError
from iml_core.learner import PredictionRecord
from iml_core.runner import create_run, execute_run
from iml_core.store import SCHEMA_VERSION, Store

from conftest import offline_history


def test_a_run_is_written_and_read_back(store):
    config = RunConfig(steps=4, eval_every=2, eval_size=40)
    run_id = create_run(store, config)
    summary = execute_run(store, run_id)
    run = store.run(run_id)
    assert run["status"] == summary["status"] == "completed"
    assert run["config"] == config.to_dict()
    assert run["agent_description"] == "rule learner (no LLM)"
    assert run["task_source"] == {"preset": "paper", "seed": 0, "label_noise": 0.0}
    steps = store.steps(run_id)
    expected = offline_history(steps=4, eval_every=2, eval_size=40)
    assert [s["notes"] for s in steps] == [r.notes for r in expected]
    assert [s["eval_accuracy"] for s in steps] == [r.eval_accuracy for r in expected]
    assert run["steps_done"] == 4
    assert run["final_eval_accuracy"] == expected[-1].eval_accuracy
    assert run["best_eval_accuracy"] == max(r.eval_accuracy for r in expected if r.eval_accuracy is not None)
    assert store.notes_at(run_id, 3) == expected[3].notes
    assert store.batch_notes(run_id, 2) == expected[2].batch_notes
    train = [p for p in store.predictions(run_id, 1) if p["phase"] == "infer"]
    assert len(train) == 16 and sum(p["correct"] for p in train) == round(16 * expected[1].train_accuracy)
    assert json.loads(steps[1]["per_class"])["train"] == {k: list(v) for k, v in expected[1].per_class["train"].items()}
    assert store.model_calls(run_id) == []  # the rule learner calls no model


def test_unknown_run_and_step_name_the_way_out(store):
    with pytest.raises(UserError, match="no run 42.*runs"):
        store.run(42)
    run_id = create_run(store, RunConfig(steps=2, eval_size=20))
    execute_run(store, run_id)
    with pytest.raises(UserError, match="no step 9; its steps go from 0 to 2"):
        store.notes_at(run_id, 9)


def test_migrations_apply_to_an_empty_file(tmp_path):
    with Store(tmp_path / "new.duckdb") as store:
        assert store.schema_version() == SCHEMA_VERSION
        with store.held() as cursor:
            versions = [r[0] for r in cursor.execute("SELECT version FROM schema_migrations ORDER BY version")
                        .fetchall()]
        assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_migrations_upgrade_an_older_file_and_keep_its_runs(tmp_path):
    path = tmp_path / "old.duckdb"
    with Store(path, migrate_to=1) as old:
        assert old.schema_version() == 1
        # A run as version 1 wrote it (create_run today writes columns version 1 lacks).
        with old.held() as cursor:
            run_id = cursor.execute(
                """INSERT INTO runs (task, task_source, agent, agent_description, config, status, steps_total)
                   VALUES ('paper', '{}', 'offline', 'x', ?, 'completed', 30) RETURNING id""",
                [json.dumps(RunConfig().to_dict())]).fetchone()[0]
            with pytest.raises(duckdb.CatalogException):
                cursor.execute("SELECT * FROM model_calls")
    with Store(path) as upgraded:
        assert upgraded.schema_version() == SCHEMA_VERSION
        assert upgraded.run(run_id)["tokens_in"] == 0 and upgraded.run(run_id)["cost"] == 0
        assert upgraded.run(run_id)["prompts"] is None
        assert upgraded.model_calls(run_id) == []


def test_a_step_is_all_or_nothing(store):
    run_id = create_run(store, RunConfig(steps=1, eval_size=20))
    start, record = offline_history(steps=1, eval_size=20)
    store.save_step(run_id, start)
    # A prediction without a label violates the schema after the step row is already inserted.
    record.predictions.append(PredictionRecord("infer", 0, 1, "Florp", None, False, "Florp"))
    with pytest.raises(duckdb.ConstraintException):
        store.save_step(run_id, record)
    assert [s["step"] for s in store.steps(run_id)] == [0]
    assert store.batch_notes(run_id, 1) == []
    assert store.predictions(run_id, 1) == []
    assert store.run(run_id)["steps_done"] == 0


def test_interrupted_runs_are_marked_at_start_up(tmp_path):
    path = tmp_path / "crash.duckdb"
    with Store(path) as store:
        run_id = create_run(store, RunConfig(steps=2, eval_size=20))
        store.set_status(run_id, "running")
    with Store(path) as store:
        assert store.mark_interrupted() == 1
        assert store.run(run_id)["status"] == "interrupted"


def hold_lock(path, seconds: float = 60):
    """Another process that opens the file and keeps it for `seconds` (not one of ours: ours take turns)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); "
                               f"print('ready', flush=True); time.sleep({seconds}); c.close(); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    return holder


def test_a_file_held_past_the_wait_is_refused_with_its_holder_named(tmp_path):
    path = tmp_path / "busy.duckdb"
    holder = hold_lock(path)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseLocked) as caught:
            Store(path, wait=0.5)
        waited = time.monotonic() - started
        message = str(caught.value)
        assert f"process {holder.pid} (" in message and "over 0.5 s" in message
        assert "IML_DB_WAIT" in message and "--db" in message
        assert 0.5 <= waited < 5
    finally:
        holder.kill()
        holder.wait()


def test_a_store_waits_its_turn_while_another_process_holds_the_file(tmp_path):
    path = tmp_path / "turns.duckdb"
    holder = hold_lock(path, seconds=1.0)
    try:
        started = time.monotonic()
        with Store(path, wait=20) as store:
            waited = time.monotonic() - started
            assert store.runs() == []
        assert 0.5 < waited < 20
    finally:
        holder.kill()
        holder.wait()


def test_a_choice_outlives_the_process_and_never_holds_a_key(tmp_path):
    path = tmp_path / "choices.duckdb"
    with Store(path) as store:
        assert store.choice("model") is None
        store.save_choice("model", {"backend": "openai", "model": "gpt-4o-mini", "base_url": ""})
        store.save_choice("model", {"backend": "llama-server", "model": "starter"})  # the latest wins
        with pytest.raises(ValueError, match="never holds a key"):
            store.save_choice("model", {"backend": "openai", "api_key": "sk-secret"})
    with Store(path) as store:
        assert store.choice("model") == {"backend": "llama-server", "model": "starter"}
    assert b"sk-secret" not in path.read_bytes()


def test_studies_are_numbered_per_label_and_a_deleted_ones_name_is_not_given_again(store):
    assert store.new_study("sweep") == "sweep 1"
    assert store.new_study("paper view") == "paper view 1"  # a sweep before it takes none of its numbers
    run_id = create_run(store, RunConfig(steps=1, eval_size=20), study="sweep 2")  # a name of old, taken
    assert store.new_study("sweep") == "sweep 3"
    store.delete_runs([run_id])
    assert store.new_study("sweep") == "sweep 4"


def test_each_phase_s_seconds_land_in_its_own_column_whatever_the_enum_s_order(store):
    from iml_core.agents import PhaseName
    from iml_core.store.writes import SECONDS_COLUMNS

    assert set(SECONDS_COLUMNS) == set(PhaseName)
    run_id = create_run(store, RunConfig(steps=1, eval_size=20))
    record = offline_history(steps=1, eval_size=20)[0]
    record.seconds.clear()
    record.seconds.update({PhaseName.EVAL: 4.0, PhaseName.INFER: 1.0, PhaseName.REVISE: 3.0, PhaseName.INDUCE: 2.0})
    store.save_step(run_id, record)
    step = store.steps(run_id)[0]
    assert [step[c] for c in ("seconds_infer", "seconds_induce", "seconds_revise", "seconds_eval")] == [1, 2, 3, 4]
    costs = store.phase_costs([run_id])
    assert dict(zip(costs["phase"], costs["seconds"], strict=True)) == {"infer": 1, "induce": 2, "revise": 3, "eval": 4}
    assert store.run_spent(run_id).seconds == 10


def test_the_database_is_the_one_given_else_iml_db_else_the_default(monkeypatch, tmp_path):
    from iml_core.store import DEFAULT_DB, database_path

    monkeypatch.delenv("IML_DB", raising=False)
    assert database_path() == DEFAULT_DB
    monkeypatch.setenv("IML_DB", str(tmp_path / "env.duckdb"))
    assert database_path() == tmp_path / "env.duckdb"
    assert database_path(tmp_path / "flag.duckdb") == tmp_path / "flag.duckdb"


def test_run_ids_are_never_drawn_twice_even_after_a_kill_9(tmp_path):
    """Each process draws a run's id and writes its row in one transaction: one killed right after
    creating a run (its file not yet closed) leaves no id for the next process to draw again."""
    db = tmp_path / "ids.duckdb"
    code = ("import os, sys; from iml_core.config import RunConfig; from iml_core.store import Store; "
            "store = Store(sys.argv[1]); "
            "print(store.create_run(RunConfig(), task_name='paper', task_source={}, agent_description='x'), "
            "flush=True); sys.argv[2:] and os.kill(os.getpid(), 9)")
    ids = [subprocess.run([sys.executable, "-c", code, str(db), *kill], capture_output=True, text=True).stdout
           for kill in (["kill"], ["kill"], [])]
    assert [int(i) for i in ids] == [1, 2, 3]
    with Store(db) as store:
        assert [r["id"] for r in store.runs()] == [1, 2, 3]


def test_a_run_that_ends_while_interrupted_runs_are_marked_keeps_its_status(tmp_path):
    """The Live page marks interrupted runs every second while the dashboard's own runs end: one
    that ends between the page's read of statuses and its read of owners is neither marked nor a
    crash of the page (DuckDB refuses the stale update as a conflict)."""
    with Store(tmp_path / "race.duckdb") as store:
        run_id = create_run(store, RunConfig(steps=2, eval_size=20))
        store.set_status(run_id, "running")
        read_owners = store.owners.going

        def run_ends_meanwhile():
            ender = threading.Thread(target=store.set_status, args=(run_id, "completed"))
            ender.start()
            ender.join()
            return read_owners()

        store.owners.going = run_ends_meanwhile
        assert store.mark_interrupted() == 0
        assert store.run(run_id)["status"] == "completed"
