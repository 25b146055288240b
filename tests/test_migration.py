"""Migrations 13 and 14: one table of model calls and one of predictions for steps and evaluations
alike, the inference phase's answers named `infer`, and a numbered unit of the notes called a
sentence. A database written before them keeps every row, and a run the previous release started
resumes on this one with its answers from the response cache."""

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from iml_core.agents import ModelCall, PhaseName
from iml_core.config import RunConfig
from iml_core.learner import PredictionRecord, StepRecord
from iml_core.store import BASELINE_KINDS, SCHEMA_VERSION, Store

ROOT = Path(__file__).resolve().parent.parent
# The release before migration 13: the previous code that wrote these databases, run as it shipped.
PREVIOUS_RELEASE = "79a6e168ea2e6e6a9080412730d3de8528b19866"


def test_the_store_and_the_evaluations_name_the_same_baselines():
    from iml_core.evaluation import BASELINES

    assert set(BASELINE_KINDS) == set(BASELINES)


def old_rows(cursor) -> tuple[int, dict]:
    """A run, a step, its predictions and calls, and three evaluations, written with plain SQL as the
    code of schema 12 wrote them; the evaluations' ids by name."""
    run_id = cursor.execute(
        """INSERT INTO runs (task, task_source, agent, agent_description, config, status, steps_total)
           VALUES ('paper', '{}', 'llm', 'x', ?, 'completed', 1) RETURNING id""",
        [json.dumps(RunConfig().to_dict())]).fetchone()[0]
    cursor.execute(
        """INSERT INTO steps (run_id, step, notes, train_invalid, eval_invalid, per_class, notes_words, words_changed,
               prefix_words, words_truncated, seconds_infer, seconds_induce, seconds_revise, seconds_eval)
           VALUES (?, 1, 'Florp are red.', 0, 0, '{}', 3, 3, 0, 0, 1, 1, 1, 1)""", [run_id])
    cursor.executemany(
        "INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [[run_id, 1, "train", 0, 1, "Florp", "Florp", True, "Florp", 1],
         [run_id, 1, "train", 0, 2, "Florp", "Zindle", False, "Florp", 1],
         [run_id, 1, "eval", None, 10, "Florp", "Florp", True, "Florp", 1],
         [run_id, 1, "eval", None, 11, None, "Zindle", False, "??", None]])
    cursor.executemany(
        """INSERT INTO model_calls (run_id, step, phase, prompt, response, tokens_in, tokens_out, tokens_cached,
               duration_ms, cached, cost) VALUES (?, 1, ?, ?, 'Florp', ?, 1, 0, 5, false, 0)""",
        [[run_id, "infer", "step infer", 10], [run_id, "eval", "step eval", 20]])
    evaluations = {}
    for name, kind, run, step in (("no notes", "no notes", run_id, None), ("ablation", "ablation", run_id, 1),
                                  ("file", "notes", None, None)):
        evaluations[name] = cursor.execute(
            """INSERT INTO evaluations (kind, run_id, step, notes_source, notes, config, agent_description, accuracy,
                   invalid, per_class, eval_size, tokens_in, tokens_out, cost, seconds)
               VALUES (?, ?, ?, 'x', 'x', '{}', 'x', 0.5, 0, '{}', 2, 0, 0, 0, 1) RETURNING id""",
            [kind, run, step]).fetchone()[0]
        cursor.executemany("INSERT INTO evaluation_predictions VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [[evaluations[name], 10, "Zindle", "Florp", False, f"{name} 10", None],
                            [evaluations[name], 11, "Zindle", "Zindle", True, f"{name} 11", 2]])
    # The file's call first: moved calls are numbered by evaluation, then as they were written.
    for name, prompt in (("file", "file call"), ("no notes", "no notes first"), ("no notes", "no notes second")):
        cursor.execute("INSERT INTO evaluation_calls VALUES (?, ?, 'Zindle', 100, 2, 0, 7.5, false, NULL, 0)",
                       [evaluations[name], prompt])
    return run_id, evaluations


def test_evaluation_rows_of_schema_12_move_into_the_tables_of_steps(tmp_path):
    path = tmp_path / "twelve.duckdb"
    with Store(path, migrate_to=12) as old:
        run_id, evaluations = old_rows(old.cursor())
    with Store(path) as store:
        assert store.schema_version() == SCHEMA_VERSION == 16
        tables = {r[0] for r in store.cursor().execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert not tables & {"evaluation_predictions", "evaluation_calls", "model_calls_13", "predictions_13"}

        # The run's own rows, as before, with the inference phase's answers named infer.
        predictions = store.predictions(run_id)
        assert [(p["phase"], p["sample_id"]) for p in predictions] == [
            ("eval", 10), ("eval", 11), ("infer", 1), ("infer", 2)]
        assert set(predictions[0]) == {"run_id", "step", "phase", "minibatch", "sample_id", "predicted", "label",
                                       "correct", "raw", "note_sentence"}
        assert store.cursor().execute("SELECT count(*) FROM predictions WHERE phase = 'train'").fetchone()[0] == 0
        assert [(c["id"], c["prompt"]) for c in store.model_calls(run_id)] == [(1, "step infer"), (2, "step eval")]
        # The ablation at step 1 answered the same samples: readers of the run see its step's alone.
        assert store.confusion(run_id, 1)["n"].sum() == 2
        usage = store.sentence_usage(run_id, 0)  # the training answers of step 1 cite sentence 1
        assert usage.to_dict("records") == [{"note_sentence": 1, "used": 2, "right": 1, "wrong": 1}]
        assert store.mean_call_tokens(run_id, PhaseName.EVAL) == (20.0, 1.0)
        assert store.phase_costs([run_id]).set_index(["step", "phase"])["tokens_in"].to_dict() == {
            (1, "eval"): 20, (1, "induce"): 0, (1, "infer"): 10, (1, "revise"): 0}

        # Every evaluation's predictions and calls, in the order they were written.
        served = {"no notes": "baseline", "ablation": "evaluation", "file": "evaluation"}
        where = {"no notes": (run_id, None), "ablation": (run_id, 1), "file": (None, None)}
        for name, evaluation_id in evaluations.items():
            rows = store.evaluation_predictions(evaluation_id)
            assert [(p["sample_id"], p["raw"], p["note_sentence"]) for p in rows] == [
                (10, f"{name} 10", None), (11, f"{name} 11", 2)]
            assert {(p["phase"], p["served"], p["evaluation_id"], p["run_id"], p["step"]) for p in rows} == {
                ("eval", served[name], evaluation_id, *where[name])}
        calls = {name: store.evaluation_calls(i) for name, i in evaluations.items()}
        assert [(c["id"], c["prompt"], c["served"]) for c in calls["no notes"]] == [
            (3, "no notes first", "baseline"), (4, "no notes second", "baseline")]
        assert [(c["id"], c["run_id"], c["served"]) for c in calls["file"]] == [(5, None, "evaluation")]
        assert calls["ablation"] == []

        # Rows written now go through the one write path and take the next call id.
        record = StepRecord(2, "Florp are red.", predictions=[
            PredictionRecord(PhaseName.INFER, 0, 3, "Florp", "Florp", True, "Florp")],
            calls=[(PhaseName.INFER, ModelCall(PhaseName.INFER, "new", "Florp", 12, 1))])
        store.save_step(run_id, record)
        assert [(c["id"], c["phase"]) for c in store.model_calls(run_id)][-1] == (6, "infer")
        assert store.predictions(run_id, 2)[0]["phase"] == "infer"

        store.delete_runs([run_id])
        left = store.cursor().execute(
            "SELECT DISTINCT evaluation_id FROM predictions UNION SELECT DISTINCT evaluation_id FROM model_calls")
        assert {r[0] for r in left.fetchall()} == {evaluations["file"]}  # the evaluation of no run stays


def extract_previous_release(into: Path) -> Path:
    """The engine as the previous release shipped it, from this repository's history."""
    if not (ROOT / ".git").exists():
        pytest.fail(f"{ROOT} has no git history, and this test runs the previous release's code from it "
                    f"(commit {PREVIOUS_RELEASE}): run it in a clone of the repository, not an export")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE, "iml_core"], capture_output=True)
    if archive.returncode != 0:
        pytest.fail(f"cannot read the previous release {PREVIOUS_RELEASE} from {ROOT}'s history "
                    f"({archive.stderr.decode().strip()}); a shallow clone lacks it: fetch the full history")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def previous_release(code: Path, *args: str) -> str:
    """Runs the previous release's command line (its own code only: not this checkout's)."""
    result = subprocess.run([sys.executable, "-m", "iml_core", *args], capture_output=True, text=True,
                            cwd=code, env={**os.environ, "PYTHONPATH": str(code)}, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_database_of_the_previous_release_migrates_and_its_llm_run_resumes_from_the_cache(tmp_path, tiny_model):
    from iml_core.backends.llama_server import SERVERS
    from iml_core.runner import check_resumable, execute_run

    code = extract_previous_release(tmp_path / "previous")
    db = tmp_path / "previous.duckdb"
    ran = json.loads(previous_release(
        code, "run", "--agent", "llm", "--backend", "llama-server", "--model", str(tiny_model), "--steps", "2",
        "--batch-size", "2", "--eval-size", "4", "--eval-every", "2", "--n-ctx", "1024", "--max-note-words", "20",
        "--seed", "3", "--temperature", "0.8", "--db", str(db), "--json"))
    assert ran["status"] == "completed", ran
    run_id = ran["run_id"]
    previous_release(code, "baseline", str(run_id), "--kind", "no notes", "--kind", "majority", "--db", str(db))

    with Store(db) as store:  # migrates
        assert store.schema_version() == SCHEMA_VERSION
        steps = store.steps(run_id)
        old_notes = [s["notes"] for s in steps]
        old_calls = sorted((c["phase"], c["prompt"], c["response"]) for c in store.model_calls(run_id)
                           if c["step"] == 2)
        assert {p["phase"] for p in store.predictions(run_id, 2)} == {"infer", "eval"}
        assert len(old_calls) == 2 + 1 + 1 + 4  # infer, induce, revise, eval
        no_notes, majority = sorted(map(int, store.evaluations_frame([run_id])["id"]))
        assert len(store.evaluation_predictions(no_notes)) == len(store.evaluation_calls(no_notes)) == 4
        assert {p["served"] for p in store.evaluation_predictions(majority)} == {"baseline"}
        cached_before = store.cursor().execute("SELECT count(*) FROM response_cache").fetchone()[0]

        # The state a crash during step 2 leaves: each step commits in one transaction, so nothing of
        # step 2 is written, and the next process marks the run interrupted. The answers step 2 got
        # before the crash are in the response cache, which is written as each answer arrives.
        cursor = store.cursor()
        for table in ("steps", "batch_notes"):
            cursor.execute(f"DELETE FROM {table} WHERE run_id = ? AND step = 2", [run_id])
        for table in ("predictions", "model_calls"):
            cursor.execute(f"DELETE FROM {table} WHERE run_id = ? AND step = 2 AND served = 'step'", [run_id])
        cursor.execute(
            """UPDATE runs SET steps_done = 1, status = 'interrupted', final_eval_accuracy = ?,
                   best_eval_accuracy = ?, tokens_in = ?, tokens_out = ?, cost = ? WHERE id = ?""",
            [steps[0]["eval_accuracy"], steps[0]["eval_accuracy"], sum(s["tokens_in"] for s in steps[:2]),
             sum(s["tokens_out"] for s in steps[:2]), sum(s["cost"] for s in steps[:2]), run_id])

        check_resumable(store, run_id)
        try:
            assert execute_run(store, run_id)["status"] == "completed"
        finally:
            SERVERS.stop_all()
        resumed = [c for c in store.model_calls(run_id) if c["step"] == 2]
        assert sorted((c["phase"], c["prompt"], c["response"]) for c in resumed) == old_calls
        assert all(c["cached"] and c["tokens_in"] == c["tokens_out"] == 0 for c in resumed), resumed
        assert store.cursor().execute("SELECT count(*) FROM response_cache").fetchone()[0] == cached_before
        assert [s["notes"] for s in store.steps(run_id)] == old_notes
        assert store.run(run_id)["steps_done"] == 2
