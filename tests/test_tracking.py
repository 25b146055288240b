"""Runs logged to MLflow (iml_core.tracking), read back through MlflowClient from a real SQLite
tracking store in the test's folder: exported after the fact, re-exported, logged live from the
command line and from a RunManager, and a whole paper study."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from iml_core.analysis import alarms
from iml_core.cli import main
from iml_core.config import RunConfig
from iml_core.errors import UserError
from iml_core.export import stored_run_report
from iml_core.manager import RunManager
from iml_core.runner import create_run, execute_run
from iml_core.status import Status
from iml_core.store import Store
from iml_core.studies import paper_study
from iml_core.backends import without_credentials
from iml_core.tracking import EXPERIMENT, KEY_TAG, MLFLOW_STATUS, WATERMARK_TAG, MlflowLogger, prompt_name, \
    run_key, settings_params, tracking_uri

# Evaluated every other step, with a drop at step 2 and a stall at step 6 (checked below, not assumed).
ALARMING = RunConfig(steps=7, batch_size=4, momentum=1.0, seed=1, eval_size=40, eval_every=2, max_note_words=40)


@pytest.fixture(scope="session")
def empty_tracking_store(tmp_path_factory):
    """A SQLite tracking store with MLflow's tables made, copied for each test: making them takes
    about 5 s on 2 cores. The command-line test makes its own from nothing."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def uri(tmp_path, monkeypatch, empty_tracking_store):
    (tmp_path / "tracking").mkdir()
    shutil.copy(empty_tracking_store, tmp_path / "tracking" / "mlflow.db")
    # From another folder: nothing MLflow writes may land in the working folder (its default store
    # and artifact root are ./mlflow.db and ./mlruns).
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    yield f"sqlite:///{tmp_path / 'tracking' / 'mlflow.db'}"
    assert list(elsewhere.iterdir()) == [], "MLflow wrote into the working folder"


def mlflow_run(client: MlflowClient, store: Store, run_id: int):
    experiment = client.get_experiment_by_name(EXPERIMENT)
    found = client.search_runs([experiment.experiment_id],
                               filter_string=f"tags.`{KEY_TAG}` = '{run_key(store, store.run(run_id))}'")
    assert len(found) == 1, f"{len(found)} MLflow runs hold run {run_id}"
    return found[0]


def steps_of(client: MlflowClient, mlflow_run_id: str, metric: str) -> list[int]:
    return [m.step for m in sorted(client.get_metric_history(mlflow_run_id, metric), key=lambda m: m.step)]


def threads_not_ours() -> set[threading.Thread]:
    # The store's own closer thread comes and goes with every read (it closes the file 0.1 s after
    # the last one): a new one during the export is the store working, not the export leaving a thread.
    return {t for t in threading.enumerate() if not t.name.startswith("iml-db-linger-")}


def test_an_exported_run_reads_back_whole(store, uri, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-logged")
    run_id = create_run(store, ALARMING, study="demo")
    execute_run(store, run_id)
    steps = store.steps(run_id)
    flags = alarms(store.steps_frame([run_id]))
    assert set(zip(flags["step"], flags["kind"], strict=True)) == {(2, "drop"), (6, "stall")}
    threads_before = threads_not_ours()

    mlflow_run_id = MlflowLogger(uri).export(store, run_id)

    assert threads_not_ours() <= threads_before, "the export left a thread going"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    logged = client.get_run(mlflow_run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.params == settings_params(ALARMING)
    assert logged.data.params["momentum"] == "1.0" and logged.data.params["eval_every"] == "2"
    tags = logged.data.tags
    assert (tags["iml.run_id"], tags["iml.db"], tags["iml.study"], tags["iml.status"]) == (
        str(run_id), str(store.path.resolve()), "demo", "completed")
    assert WATERMARK_TAG in tags and tags[WATERMARK_TAG] == "7"
    for flag in flags.itertuples():
        assert tags[f"alarm/step-{flag.step:04d}/{flag.kind}"] == flag.message
    assert tags["iml.alarms"] == "1 drop, 1 stall"
    assert not any("sk-never-logged" in value for value in [*logged.data.params.values(), *tags.values()])

    # Every step's numbers, one entry per step (eval accuracy only where the run evaluated).
    every, learning = [s["step"] for s in steps], [s["step"] for s in steps if s["step"] > 0]
    assert steps_of(client, mlflow_run_id, "eval_accuracy") == [0, 2, 4, 6, 7]
    assert [m.value for m in sorted(client.get_metric_history(mlflow_run_id, "eval_accuracy"), key=lambda m: m.step)] \
        == [s["eval_accuracy"] for s in steps if s["eval_accuracy"] is not None]
    assert steps_of(client, mlflow_run_id, "train_accuracy") == learning
    for metric in ("notes_words", "words_changed", "rule_recall", "discovery_rate", "tokens_in/infer",
                   "tokens_out/revise", "cost/eval", "seconds/infer"):
        assert steps_of(client, mlflow_run_id, metric) == every, metric
    report = stored_run_report(store, run_id)
    assert [m.value for m in sorted(client.get_metric_history(mlflow_run_id, "rule_recall"), key=lambda m: m.step)] \
        == [s["rule_recall"] for s in report["steps"]]

    # The notes after every step, as they are stored.
    notes = client.download_artifacts(mlflow_run_id, "notes", str(tmp_path / "downloaded"))
    for step in steps:
        with open(f"{notes}/step-{step['step']:04d}.md", encoding="utf-8") as file:
            assert file.read() == step["notes"]
    assert len(client.list_artifacts(mlflow_run_id, "notes")) == len(steps)

    # The last notes as the first version of the run's prompt, linked to the run.
    name = prompt_name(run_id, run_key(store, store.run(run_id)))
    assert client.get_prompt_version(name, 1).template == steps[-1]["notes"]
    assert tags["iml.prompt"] == f"prompts:/{name}/1"
    assert json.loads(tags["mlflow.linkedPrompts"]) == [{"name": name, "version": "1"}]
    assert client.get_prompt(name).tags["_mlflow_experiment_ids"] == f",{logged.info.experiment_id},"


def test_exporting_again_updates_the_same_mlflow_run(store, uri):
    config = RunConfig(steps=6, batch_size=8, momentum=0.5, eval_size=40)
    run_id = create_run(store, config)
    cancel = threading.Event()
    execute_run(store, run_id, cancel=cancel, on_step=lambda record: record.step == 3 and cancel.set())
    logger = MlflowLogger(uri)
    first = logger.export(store, run_id)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.get_run(first).info.status == "KILLED"
    assert steps_of(client, first, "notes_words") == [0, 1, 2, 3]

    execute_run(store, run_id)  # resumed to its end
    notes = [s["notes"] for s in store.steps(run_id)]
    assert notes[3] != notes[-1]
    again = MlflowLogger(uri)  # a new process, as a second `iml export` would be
    assert again.export(store, run_id) == first
    assert again.export(store, run_id) == first
    assert len(client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])) == 1
    assert client.get_run(first).info.status == "FINISHED"
    assert steps_of(client, first, "notes_words") == list(range(7))
    assert steps_of(client, first, "eval_accuracy") == list(range(7))
    assert len(client.list_artifacts(first, "notes")) == 7
    name = prompt_name(run_id, run_key(store, store.run(run_id)))
    versions = sorted(client.search_prompt_versions(name), key=lambda v: int(v.version))
    assert [v.template for v in versions] == [notes[3], notes[-1]]

    # An export cut short before it moved its watermark logs its steps again: MLflow keeps them once.
    client.delete_tag(first, WATERMARK_TAG)
    logger.export(store, run_id)
    assert steps_of(client, first, "notes_words") == list(range(7))
    assert len(client.search_prompt_versions(name)) == 2


def test_a_fork_names_its_parent(store, uri):
    parent = create_run(store, RunConfig(steps=3, batch_size=8, eval_size=40))
    execute_run(store, parent)
    logger = MlflowLogger(uri)
    parent_mlflow = logger.export(store, parent)
    child = create_run(store, RunConfig(steps=2, batch_size=8, eval_size=40, initial_notes=store.notes_at(parent, 2)),
                       parent=(parent, 2))
    execute_run(store, child)
    tags = MlflowClient(tracking_uri=uri).get_run(logger.export(store, child)).data.tags
    assert (tags["iml.parent_run_id"], tags["iml.parent_step"], tags["mlflow.parentRunId"]) == (
        str(parent), "2", parent_mlflow)


def test_a_paper_study_of_18_runs_exports_and_reads_back_every_step(tmp_path, uri, capsys):
    db = tmp_path / "study.duckdb"
    configs = paper_study(RunConfig(steps=3, batch_size=8, eval_size=40))
    assert len(configs) == 18
    with Store(db) as store:
        manager = RunManager(store)
        run_ids = manager.submit(configs, study="paper")
        manager.join(timeout=300)
        assert {store.run(run_id)["status"] for run_id in run_ids} == {Status.COMPLETED}
        keys = {run_id: run_key(store, store.run(run_id)) for run_id in run_ids}
    capsys.readouterr()

    started = time.perf_counter()
    assert main(["export", "--study", "paper", "--mlflow", uri, "--db", str(db), "--json"]) == 0
    seconds = time.perf_counter() - started
    printed = json.loads(capsys.readouterr().out)  # stdout holds the JSON alone
    assert [r["run_id"] for r in printed["runs"]] == run_ids
    print(f"\n18-run paper study (3 steps each) exported to MLflow in {seconds:.1f} s")

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    logged = client.search_runs([experiment], filter_string="tags.`iml.study` = 'paper'", max_results=100)
    assert sorted(r.data.tags[KEY_TAG] for r in logged) == sorted(keys.values())
    for mlflow_run in logged:
        for metric in ("eval_accuracy", "notes_words", "tokens_in/infer"):
            assert steps_of(client, mlflow_run.info.run_id, metric) == [0, 1, 2, 3], metric
        assert steps_of(client, mlflow_run.info.run_id, "train_accuracy") == [1, 2, 3]
        assert [a.path for a in client.list_artifacts(mlflow_run.info.run_id, "notes")] == [
            f"notes/step-{step:04d}.md" for step in range(4)]
    assert {(r.data.params["momentum"], r.data.params["accumulation"]) for r in logged} == {
        (str(c.momentum), str(c.accumulation)) for c in configs}


class Watching:
    """An observer around the logger that reads MLflow right after each step is logged."""

    def __init__(self, logger: MlflowLogger):
        self.logger, self.seen = logger, []

    def step(self, store, run_id, record):
        self.logger.step(store, run_id, record)
        found = self.logger.find(store, run_id)
        self.seen.append((record.step, steps_of(self.logger.client, found.info.run_id, "notes_words")))

    def end(self, store, run_id):
        self.logger.end(store, run_id)


def test_a_manager_logs_each_step_as_it_is_committed(store, uri):
    watching = Watching(MlflowLogger(uri))
    manager = RunManager(store)
    [run_id] = manager.submit([RunConfig(steps=3, batch_size=8, eval_size=40)], observer=watching)
    manager.join(timeout=120)
    assert watching.seen == [(step, list(range(step + 1))) for step in range(4)]
    logged = watching.logger.find(store, run_id)
    assert logged.info.status == "FINISHED" and logged.data.tags["iml.prompt"].endswith("/1")


def test_run_with_mlflow_logs_live_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db, uri = tmp_path / "cli.duckdb", "sqlite:///new/folder/mlflow.db"  # relative to the working folder
    result = subprocess.run(
        [sys.executable, "-m", "iml_core", "run", "--steps", "3", "--batch-size", "8", "--eval-size", "40", "--db",
         str(db), "--mlflow", uri, "--json"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # MLflow printed nothing on stdout
    assert summary["status"] == "completed"
    # MLflow wrote only where told (cli.duckdb.owners: who holds and runs what, docs/ARCHITECTURE.md §4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.duckdb", "cli.duckdb.owners", "new"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    [logged] = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert logged.info.status == "FINISHED"
    assert logged.info.artifact_uri.startswith((tmp_path / "new" / "folder" / "mlflow-artifacts").as_uri())
    assert logged.data.tags["iml.run_id"] == str(summary["run_id"])
    assert steps_of(client, logged.info.run_id, "eval_accuracy") == [0, 1, 2, 3]
    assert len(client.list_artifacts(logged.info.run_id, "notes")) == 4
    with Store(db) as store:
        final = store.steps(summary["run_id"])[-1]["notes"]
    assert client.get_prompt_version(logged.data.tags["iml.prompt"].split("/")[1], 1).template == final


def test_a_sweep_logs_every_run_with_its_study(tmp_path, uri, capsys):
    db = tmp_path / "sweep.duckdb"
    assert main(["sweep", "--momentum", "0,1", "--steps", "2", "--batch-size", "8", "--eval-size", "20",
                 "--study", "pair", "--db", str(db), "--mlflow", uri]) == 0
    client = MlflowClient(tracking_uri=uri)
    logged = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert sorted(r.data.params["momentum"] for r in logged) == ["0.0", "1.0"]
    assert {r.data.tags["iml.study"] for r in logged} == {"pair"}
    assert all(steps_of(client, r.info.run_id, "notes_words") == [0, 1, 2] for r in logged)


def test_export_needs_runs_and_a_known_study(tmp_path, uri, capsys):
    db = str(tmp_path / "empty.duckdb")
    assert main(["export", "--mlflow", uri, "--db", db]) == 2
    assert "name the runs to export" in capsys.readouterr().err
    assert main(["export", "--study", "nope", "--mlflow", uri, "--db", db]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


def test_a_missing_mlflow_is_named_with_its_install_command(tmp_path, monkeypatch, capsys):
    # Simulated: sys.modules["mlflow"] = None makes `import mlflow` raise ImportError, as it does in an
    # environment without MLflow; this venv has it installed.
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(UserError, match=r"MLflow is not installed.*requirements-mlflow\.txt"):
        MlflowLogger(f"sqlite:///{tmp_path / 'mlflow.db'}")
    db = tmp_path / "none.duckdb"
    assert main(["run", "--steps", "1", "--db", str(db), "--mlflow", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 2
    assert "requirements-mlflow.txt" in capsys.readouterr().err
    assert not db.exists()  # refused before the database was opened


def test_a_tracking_server_that_does_not_answer_is_named_at_once(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    started = time.perf_counter()
    with pytest.raises(UserError, match=r"cannot use the MLflow tracking store at http://127\.0\.0\.1:9 .*check"):
        MlflowLogger("http://127.0.0.1:9")  # nothing listens there: refused at once, asked once
    assert time.perf_counter() - started < 60  # MLflow's own retries take about 4 minutes
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # set for the first contact only


def test_tracking_uris_and_what_params_may_hold(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert tracking_uri("runs/mlflow.db") == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    assert tracking_uri(" http://127.0.0.1:5000 ") == "http://127.0.0.1:5000"
    with pytest.raises(UserError, match="not an MLflow tracking URI.*sqlite:///"):
        tracking_uri("runs/")
    assert without_credentials("https://me:sk-secret@api.example.com/v1?api-key=sk-2") == "https://api.example.com/v1"
    params = settings_params(RunConfig(base_url="https://me:sk-secret@api.example.com/v1?key=sk-2",
                                       initial_notes="one two three"))
    assert params["base_url"] == "https://api.example.com/v1"
    assert params["initial_notes"] == "3 words (notes/step-0000.md)"
    assert not any("sk-" in value for value in params.values())


def test_every_status_has_an_mlflow_status():
    assert set(MLFLOW_STATUS) == set(Status)


def test_new_run_logs_live_to_the_tracking_uri_it_keeps(tmp_path, monkeypatch, uri):
    from streamlit.testing.v1 import AppTest

    from studio.engine import engine

    db = str(tmp_path / "dash.duckdb")
    monkeypatch.setenv("IML_DB", db)  # st.cache_resource is shared by the process's AppTests: a file of its own
    app = str(Path(__file__).resolve().parent.parent / "app.py")
    at = AppTest.from_file(app, default_timeout=60)
    at.run()
    at.number_input(key="steps").set_value(2)
    at.number_input(key="eval_size").set_value(40)
    at.text_input(key="mlflow_uri").set_value(uri)
    at.button(key="launch").click()
    at.run()
    assert not at.exception, at.exception
    store, manager = engine(db)
    manager.join(timeout=120)
    client = MlflowClient(tracking_uri=uri)
    [logged] = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    assert logged.data.tags[KEY_TAG] == run_key(store, store.run(1))
    assert logged.info.status == "FINISHED"
    assert steps_of(client, logged.info.run_id, "notes_words") == [0, 1, 2]
    again = AppTest.from_file(app, default_timeout=60)  # a new tab, as after a reload
    again.run()
    assert again.text_input(key="mlflow_uri").value == uri


def test_the_command_line_and_the_engine_import_mlflow_only_when_asked_to_log():
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, iml_core.cli, iml_core.manager, iml_core.tracking; "
                               "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"],
        capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]"


def test_a_decision_lists_two_accuracies_reach_mlflow_the_report_and_the_ladder(tmp_path, uri, tiny_model):
    from iml_core import ladder_results
    from iml_core.report import report_html
    from iml_core.studies import LADDER

    db = tmp_path / "rules.duckdb"
    with Store(db) as store:
        manager = RunManager(store)
        # The tiny random model writes lists under the grammar and reads them at chance: the engine and
        # the model give two different figures, as a real model's do (issue 35).
        (run_id,) = manager.submit([RunConfig(
            agent="llm", backend="llama-server", model=str(tiny_model), task=LADDER[0].task(1), seed=1,
            learner="bank", notes_form="rule", apply="rule", proposals=1, score_window=8, steps=2, batch_size=4,
            eval_size=12, eval_every=1)])
        manager.join(timeout=300)
        steps = store.steps_frame([run_id])
        assert store.run(run_id)["status"] == "completed"
        engine_read, model_read = steps["rule_eval_accuracy"].tolist(), steps["model_eval_accuracy"].tolist()
        assert all(value is not None for value in engine_read + model_read)

        logged = MlflowClient(tracking_uri=uri).get_run(MlflowLogger(uri).export(store, run_id))
        assert logged.data.metrics["rule_applied_accuracy"] == engine_read[-1]
        assert logged.data.metrics["model_applied_accuracy"] == model_read[-1]

        runs = store.runs_frame()
        assert runs.loc[0, "final_rule_applied_accuracy"] == engine_read[-1]
        assert runs.loc[0, "final_model_applied_accuracy"] == model_read[-1]
        document = report_html(store, [run_id], "rules")
        assert "<th>final, run by the engine</th>" in document and "<th>final, read by the model</th>" in document
        rung = ladder_results.ladder_table(runs, store.baselines([run_id])).iloc[0]
        assert rung["learner"] == "bank (decision list)"
        assert (rung["learned, run by the engine"], rung["learned, read by the model"]) == (
            engine_read[-1], model_read[-1])
