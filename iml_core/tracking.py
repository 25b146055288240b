"""Runs logged to MLflow, for people who track their experiments there: a stored run exported whole
(`iml export RUN... --mlflow URI`), or a run logged step by step while it goes (`--mlflow URI` on
run, fork, resume and sweep; the tracking URI on New run). MLflow is optional
(requirements-mlflow.txt): it is imported here alone, and only when asked for.

One IML run is one MLflow run in the experiment EXPERIMENT. What it holds (docs/operations.md says the same
for users):
- params: every setting (RunConfig), by its name; `initial_notes` says how many words the run started
  from, the words themselves being the notes at step 0; a model server's URL without user, password or
  query. Keys come from the environment and are in no setting, so none can be logged.
- metrics, one value per step (the MLflow step is the IML step, timestamped when the step was
  committed): the numbers of analysis.run_report's step (train_accuracy, eval_accuracy on evaluated
  steps only, and for a run with decision-list notes rule_applied_accuracy and model_applied_accuracy
  beside it, notes_words, words_changed, rule_recall and discovery_rate for tasks with a rule card),
  and per phase `tokens_in/PHASE`, `tokens_out/PHASE`, `cost/PHASE`, `seconds/PHASE`.
- artifacts: the notes after every step, `notes/step-NNNN.md`.
- tags: `iml.run_id`, `iml.db` (the database file), `iml.key` (below), `iml.task`, `iml.agent`,
  `iml.status`, `iml.study`, a fork's `iml.parent_run_id` and `iml.parent_step` (and MLflow's
  `mlflow.parentRunId` when the parent is logged there too), each alarm as
  `alarm/step-NNNN/KIND` (its message) and all of them counted in `iml.alarms`.
- a prompt, `iml-run-ID-notes-KEY`, whose versions are the run's last notes each time they changed
  between exports (a resumed run adds one); MLflow's prompt registry diffs them.

Re-exporting does not duplicate: the MLflow run is found again by its `iml.key` tag (a hash of the
database file's path, the run id and the run's creation time, so a database made anew at the same
path starts new MLflow runs). A committed step never changes, so the MLflow run keeps a watermark,
`iml.logged_through_step`, and each export logs only the steps after it; an export cut short before
moving it logs those steps again with the same values and timestamps, which MLflow's SQL store keeps
once. A setting that changed since the first export (MLflow's params never change) is tagged
`iml.changed.NAME` with its new value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Iterable, Protocol

from iml_core.backends import without_credentials
from iml_core.config import RunConfig
from iml_core.errors import UserError
from iml_core.learner import StepRecord
from iml_core.status import Status
from iml_core.store import Store

log = logging.getLogger(__name__)

EXPERIMENT = "IML Studio"
INSTALL = "`.venv/bin/uv pip install -r requirements-mlflow.txt` (or `make mlflow`)"
URI_HELP = ("an MLflow tracking URI: sqlite:///PATH/mlflow.db for a file here (a bare PATH.db means the same), "
            "or http://HOST:PORT for a tracking server")
KEY_TAG = "iml.key"
WATERMARK_TAG = "iml.logged_through_step"
LINKED_PROMPTS_TAG = "mlflow.linkedPrompts"  # what MLflow's UI reads for a run's prompts
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
# Beside a SQLite store, so that the file and its notes travel together and `mlflow ui` on the file
# finds them (MLflow's own default is ./mlruns under whatever folder the process started in).
ARTIFACTS_FOLDER = "mlflow-artifacts"
MLFLOW_STATUS = {Status.QUEUED: "SCHEDULED", Status.RUNNING: "RUNNING", Status.RETRYING: "RUNNING",
                 Status.COMPLETED: "FINISHED", Status.FAILED: "FAILED", Status.CANCELLED: "KILLED",
                 Status.INTERRUPTED: "KILLED", Status.BUDGET_REACHED: "KILLED"}
# Every MLflow call of the process, made one at a time: the runs' threads share a logger, and the
# first contact of a new one changes MLflow's HTTP settings (process-wide) for a moment.
MLFLOW_LOCK = threading.Lock()
HTTP_FIRST_CONTACT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}
# MLflow's limits on one log_batch call.
METRICS_PER_BATCH = 1000
PARAMS_OR_TAGS_PER_BATCH = 100


class RunObserver(Protocol):
    """Told of a run by whoever executes it (the command line, iml_core.manager.RunManager): after
    each committed step, and once when it stops, however it stops. It must not raise: a run goes on
    whatever its observer meets."""

    def step(self, store: Store, run_id: int, record: StepRecord) -> None: ...

    def end(self, store: Store, run_id: int) -> None: ...


def _mlflow():
    # Without this MLflow posts usage telemetry from a thread of its own; an export reaches only the
    # tracking store it names. A user's own setting of it wins.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow
        import mlflow.entities
    except ImportError:
        raise UserError(f"MLflow is not installed in this environment; install it with {INSTALL}, "
                        "or leave out --mlflow") from None
    return mlflow


def tracking_uri(given: str) -> str:
    """The tracking URI as MLflow takes it; a bare path to a .db file means a SQLite store there."""
    text = given.strip()
    if "://" in text or text.startswith("databricks"):
        return text
    if Path(text).suffix in SQLITE_SUFFIXES:
        return f"sqlite:///{Path(text).resolve()}"
    raise UserError(f"{given!r} is not an MLflow tracking URI; give {URI_HELP}")


def sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// tracking URI; None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?")[0]
    return None if path in ("", ":memory:") else Path(path)


def settings_params(config: RunConfig) -> dict[str, str]:
    """Every setting as an MLflow param. The starting notes are text of any length (MLflow cuts a
    param at 6,000 characters), and a fork's are its parent's notes: they are logged whole as
    notes/step-0000.md, and the param says how many words they are."""
    params = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name == "initial_notes":
            value = f"{len(value.split())} words (notes/step-0000.md)" if value.strip() else "none"
        elif field.name == "base_url":
            value = without_credentials(value)
        params[field.name] = "none" if value is None else str(value)
    return params


def run_key(store: Store, run: dict) -> str:
    """The tag that finds a run's MLflow run again: the same database file, run id and creation time."""
    identity = f"{store.path.resolve()}\n{run['id']}\n{run['created_at'].isoformat()}"
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]


def prompt_name(run_id: int, key: str) -> str:
    return f"iml-run-{run_id}-notes-{key[:8]}"


def _milliseconds(moment) -> int:
    # DuckDB hands back naive local times (its TIMESTAMP); .timestamp() reads them as local too.
    return int(moment.timestamp() * 1000)


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@contextlib.contextmanager
def _quiet_schema_setup():
    """A new SQLite store says at INFO that it creates and upgrades its tables: noise beside a
    progress bar. Warnings still show."""
    logger = logging.getLogger("mlflow.store.db.utils")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _impatient_http():
    """MLflow asks an unreachable server again for about 4 minutes before it gives up. The first
    contact (where a mistyped URI shows) and a live step's logging (which its run waits for) ask
    once and wait 15 s at most."""
    saved = {name: os.environ.get(name) for name in HTTP_FIRST_CONTACT}
    os.environ.update(HTTP_FIRST_CONTACT)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class MlflowLogger:
    """Logs IML runs to one MLflow tracking store. `export` logs a stored run (what is not there
    yet); as a RunObserver it logs a run while it goes. The run threads of a RunManager share one
    (MLFLOW_LOCK)."""

    def __init__(self, uri: str, experiment: str = EXPERIMENT):
        self.uri = tracking_uri(uri)
        self.experiment_name = experiment
        self.shown_uri = without_credentials(self.uri)
        mlflow = _mlflow()
        self._entities = mlflow.entities
        self._exception = mlflow.exceptions.MlflowException
        self._stopped: set[tuple[str, int]] = set()  # runs whose live logging met an error
        database = sqlite_file(self.uri)
        try:
            if database is not None:
                database.parent.mkdir(parents=True, exist_ok=True)
            with MLFLOW_LOCK, _quiet_schema_setup(), _impatient_http():
                self.client = _client_class(mlflow)(tracking_uri=self.uri, registry_uri=self.uri)
                self.experiment_id = self.client.experiment_id = self._experiment(experiment, database)
        except (self._exception, OSError) as e:
            raise UserError(f"cannot use the MLflow tracking store at {self.shown_uri} ({_first_line(e)}); "
                            f"check the URI: {URI_HELP}") from None

    def _experiment(self, name: str, database: Path | None) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            location = (database.resolve().parent / ARTIFACTS_FOLDER).as_uri() if database is not None else None
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except self._exception:  # another process created it first
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            raise UserError(f"the MLflow experiment {name!r} at {self.shown_uri} is deleted; restore it "
                            f"(`mlflow experiments restore --experiment-id {found.experiment_id}`) or give "
                            "another tracking URI")
        return found.experiment_id

    # --- what callers use ----------------------------------------------------------------------

    def export(self, store: Store, run_id: int) -> str:
        """Logs what the MLflow run lacks of a stored run, registers its last notes as a prompt
        version when they changed, and sets its status; returns the MLflow run id."""
        with MLFLOW_LOCK:
            return self._sync(store, run_id, final=True)

    def step(self, store: Store, run_id: int, record: StepRecord) -> None:
        """Logs the step just committed (and any the MLflow run still lacks). An error stops the
        live logging of this run with a warning, never the run: `end` tries once more."""
        who = (str(store.path), run_id)
        if who in self._stopped:
            return
        try:
            # Impatient: a run waits for its step's logging, and MLflow's own retries of a server
            # gone away take minutes; this run's logging stops instead, and the export comes later.
            with MLFLOW_LOCK, _impatient_http():
                self._sync(store, run_id, final=False)
        except Exception as e:
            self._stopped.add(who)
            log.warning("logging run %s to MLflow at %s stopped after step %s (%s); the run goes on, and "
                        "`python -m iml_core export %s --mlflow URI` logs it later", run_id, self.shown_uri,
                        record.step, _first_line(e), run_id)

    def end(self, store: Store, run_id: int) -> None:
        self._stopped.discard((str(store.path), run_id))
        try:
            self.export(store, run_id)
        except Exception as e:
            log.warning("logging run %s to MLflow at %s failed (%s); `python -m iml_core export %s --mlflow URI` "
                        "logs it later", run_id, self.shown_uri, _first_line(e), run_id)

    def find(self, store: Store, run_id: int):
        """The MLflow run that holds this IML run, or None."""
        with MLFLOW_LOCK:
            return self._find(run_key(store, store.run(run_id)))

    # --- the work ------------------------------------------------------------------------------

    def _find(self, key: str):
        found = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{key}'",
                                        max_results=1)
        return found[0] if found else None

    def _sync(self, store: Store, run_id: int, *, final: bool) -> str:
        from iml_core.export import stored_run_report  # pandas, and only when something is logged

        run = store.run(run_id)
        key = run_key(store, run)
        params = settings_params(RunConfig.from_dict(run["config"]))
        found = self._find(key)
        if found is None:
            found = self._create(store, run, key, params)
        mlflow_run_id = found.info.run_id
        logged_through = int(found.data.tags.get(WATERMARK_TAG, -1))
        report = stored_run_report(store, run_id, scored_from=logged_through + 1)
        new = [step for step in report["steps"] if step["step"] > logged_through]
        stored = {row["step"]: row for row in store.steps(run_id) if row["step"] > logged_through}

        metrics, tags = [], {}
        for step in new:
            number, moment = step["step"], _milliseconds(stored[step["step"]]["created_at"])
            metrics += [self._entities.Metric(name, float(value), moment, number) for name, value in step.items()
                        if name != "step" and _is_number(value)]
            metrics += [self._entities.Metric(f"{quantity}/{phase}", float(value), moment, number)
                        for phase, quantities in step["phases"].items() for quantity, value in quantities.items()]
            for alarm in step["alarms"]:
                tags[f"alarm/step-{number:04d}/{alarm['kind']}"] = alarm["message"]
        kinds = Counter(alarm["kind"] for step in report["steps"] for alarm in step["alarms"])
        tags["iml.alarms"] = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "none"
        tags["iml.status"] = run["status"]
        tags.update({f"iml.changed.{name}": value for name, value in params.items()
                     if name in found.data.params and found.data.params[name] != value})
        missing = [self._entities.Param(name, value) for name, value in params.items() if name not in found.data.params]

        for chunk in _chunks(metrics, METRICS_PER_BATCH):
            self.client.log_batch(mlflow_run_id, metrics=chunk)
        for chunk in _chunks(missing, PARAMS_OR_TAGS_PER_BATCH):
            self.client.log_batch(mlflow_run_id, params=chunk)
        for step in new:
            self.client.log_text(mlflow_run_id, stored[step["step"]]["notes"], f"notes/step-{step['step']:04d}.md")
        if final:
            tags.update(self._register_notes(store, run, key, found.data.tags.get(LINKED_PROMPTS_TAG)))
        if new:  # last: a sync cut short before here logs these steps again, the same
            tags[WATERMARK_TAG] = str(new[-1]["step"])
        tag_list = [self._entities.RunTag(name, value) for name, value in tags.items()]
        for chunk in _chunks(tag_list, PARAMS_OR_TAGS_PER_BATCH):
            self.client.log_batch(mlflow_run_id, tags=chunk)
        self._set_status(found, run)
        return mlflow_run_id

    def _create(self, store: Store, run: dict, key: str, params: dict[str, str]):
        config = run["config"]
        tags = {KEY_TAG: key, "iml.run_id": str(run["id"]), "iml.db": str(store.path.resolve()),
                "iml.task": run["task"], "iml.agent": run["agent_description"]}
        if run["study"]:
            tags["iml.study"] = run["study"]
        if run["parent_run_id"] is not None:
            tags["iml.parent_run_id"], tags["iml.parent_step"] = str(run["parent_run_id"]), str(run["parent_step"])
            with contextlib.suppress(UserError):  # the parent may have been deleted since
                parent = self._find(run_key(store, store.run(run["parent_run_id"])))
                if parent is not None:
                    tags["mlflow.parentRunId"] = parent.info.run_id
        name = f"run {run['id']} (m={config['momentum']}, K={config['accumulation']}, seed {config['seed']})"
        created = self.client.create_run(self.experiment_id, start_time=_milliseconds(run["created_at"]),
                                         tags=tags, run_name=name)
        params_list = [self._entities.Param(name, value) for name, value in params.items()]
        for chunk in _chunks(params_list, PARAMS_OR_TAGS_PER_BATCH):
            self.client.log_batch(created.info.run_id, params=chunk)
        return self.client.get_run(created.info.run_id)

    def _register_notes(self, store: Store, run: dict, key: str, linked: str | None) -> dict[str, str]:
        """The run's last notes as a new version of its prompt, unless the latest version holds them
        already; the tags that name the version and link it to the MLflow run (`linked`: that tag now)."""
        steps = store.steps(run["id"])
        if not steps or not steps[-1]["notes"].strip():
            return {}  # MLflow takes no empty prompt
        name, last = prompt_name(run["id"], key), steps[-1]
        versions = list(self.client.search_prompt_versions(name)) if self.client.get_prompt(name) else []
        latest = max(versions, key=lambda v: int(v.version), default=None)
        if latest is None or latest.template != last["notes"]:
            latest = self.client.register_prompt(
                name, last["notes"], commit_message=f"notes of run {run['id']} after step {last['step']} "
                                                    f"({run['status']})",
                tags={"iml.run_id": str(run["id"]), "iml.step": str(last["step"]), KEY_TAG: key})
        # MLflow's link_prompt_version_to_run writes this tag through the process's global tracking
        # store (a mlflow.db in the working folder when none is set), not this client's: written here.
        links = json.loads(linked) if linked else []
        link = {"name": name, "version": str(latest.version)}
        return {"iml.prompt": f"prompts:/{name}/{latest.version}",
                LINKED_PROMPTS_TAG: json.dumps(links if link in links else [*links, link])}

    def _set_status(self, found, run: dict) -> None:
        status = MLFLOW_STATUS[Status(run["status"])]
        if status == found.info.status:
            return
        if status in ("RUNNING", "SCHEDULED"):
            self.client.update_run(found.info.run_id, status=status)
        else:
            ended = run["finished_at"]
            self.client.set_terminated(found.info.run_id, status,
                                       end_time=None if ended is None else _milliseconds(ended))


def _client_class(mlflow):
    from mlflow.prompt.constants import PROMPT_EXPERIMENT_IDS_TAG_KEY

    class Client(mlflow.MlflowClient):
        """MLflow's client, filing a new prompt version under this logger's experiment, in line. MLflow's
        own files it from a thread that nobody waits for, under the process's global experiment (its
        Default one when none is set), which is not where this logger's runs are."""

        experiment_id: str | None = None

        def _link_prompt_to_experiment(self, prompt_version, experiment_id) -> None:
            name = prompt_version.name
            linked = [i for i in self.get_prompt(name).tags.get(PROMPT_EXPERIMENT_IDS_TAG_KEY, "").split(",") if i]
            if self.experiment_id not in linked:
                self.set_prompt_tag(name, PROMPT_EXPERIMENT_IDS_TAG_KEY, f",{','.join([*linked, self.experiment_id])},")

    return Client


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
