"""Runs, steps, notes, predictions and model calls in one DuckDB file.

DuckDB lets one process open a file read-write and then refuses every other process, so one
Store per process owns the file; threads share it, each through its own cursor. Each learning
step is written in one transaction: a crash loses at most the step in flight.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from iml_core.config import RunConfig
from iml_core.errors import DatabaseLocked, RunFailed, UserError
from iml_core.agents import PhaseName
from iml_core.learner import StepRecord
from iml_core.status import ACTIVE, GOING, TERMINAL, Status

DEFAULT_DB = Path(__file__).resolve().parent.parent / "data" / "iml.duckdb"

# Numbered migrations: each runs once, in order, in its own transaction, and is recorded in
# schema_migrations. Never edit one that has shipped; add the next number.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "runs, steps, batch notes and predictions", """
        CREATE SEQUENCE run_ids START 1;
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY DEFAULT nextval('run_ids'),
            task VARCHAR NOT NULL,
            task_source JSON NOT NULL,
            agent VARCHAR NOT NULL,
            agent_description VARCHAR NOT NULL,
            config JSON NOT NULL,
            status VARCHAR NOT NULL,
            error VARCHAR,
            steps_total INTEGER NOT NULL,
            steps_done INTEGER NOT NULL DEFAULT 0,
            final_eval_accuracy DOUBLE,
            best_eval_accuracy DOUBLE,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            started_at TIMESTAMP,
            finished_at TIMESTAMP
        );
        CREATE TABLE steps (
            run_id INTEGER NOT NULL,
            step INTEGER NOT NULL,
            notes VARCHAR NOT NULL,
            train_accuracy DOUBLE,
            train_invalid INTEGER NOT NULL,
            eval_accuracy DOUBLE,
            eval_invalid INTEGER NOT NULL,
            per_class JSON NOT NULL,
            notes_words INTEGER NOT NULL,
            words_changed INTEGER NOT NULL,
            prefix_words INTEGER NOT NULL,
            prefix_kept_by_model BOOLEAN,
            words_truncated INTEGER NOT NULL,
            seconds_infer DOUBLE NOT NULL,
            seconds_induce DOUBLE NOT NULL,
            seconds_revise DOUBLE NOT NULL,
            seconds_eval DOUBLE NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (run_id, step)
        );
        CREATE TABLE batch_notes (
            run_id INTEGER NOT NULL,
            step INTEGER NOT NULL,
            minibatch INTEGER NOT NULL,
            text VARCHAR NOT NULL,
            PRIMARY KEY (run_id, step, minibatch)
        );
        CREATE TABLE predictions (
            run_id INTEGER NOT NULL,
            step INTEGER NOT NULL,
            phase VARCHAR NOT NULL,
            minibatch INTEGER,
            sample_id INTEGER NOT NULL,
            predicted VARCHAR,
            label VARCHAR NOT NULL,
            correct BOOLEAN NOT NULL,
            raw VARCHAR NOT NULL
        );
    """),
    (2, "model call log and token totals", """
        CREATE SEQUENCE call_ids START 1;
        CREATE TABLE model_calls (
            id BIGINT PRIMARY KEY DEFAULT nextval('call_ids'),
            run_id INTEGER NOT NULL,
            step INTEGER NOT NULL,
            phase VARCHAR NOT NULL,
            prompt VARCHAR NOT NULL,
            response VARCHAR NOT NULL,
            tokens_in INTEGER NOT NULL,
            tokens_out INTEGER NOT NULL,
            tokens_cached INTEGER NOT NULL,
            duration_ms DOUBLE NOT NULL,
            cached BOOLEAN NOT NULL,
            error VARCHAR,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        ALTER TABLE steps ADD COLUMN tokens_in INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE steps ADD COLUMN tokens_out INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE steps ADD COLUMN tokens_cached INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN tokens_in BIGINT NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN tokens_out BIGINT NOT NULL DEFAULT 0;
    """),
    (3, "response cache, prompts kept with runs, cost", """
        CREATE TABLE response_cache (
            key VARCHAR PRIMARY KEY,
            raw VARCHAR NOT NULL,
            text VARCHAR NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        ALTER TABLE runs ADD COLUMN prompts JSON;
        ALTER TABLE runs ADD COLUMN cost DOUBLE NOT NULL DEFAULT 0;
        ALTER TABLE steps ADD COLUMN cost DOUBLE NOT NULL DEFAULT 0;
        ALTER TABLE model_calls ADD COLUMN cost DOUBLE NOT NULL DEFAULT 0;
    """),
    (4, "forks remember their parent run and step", """
        ALTER TABLE runs ADD COLUMN parent_run_id INTEGER;
        ALTER TABLE runs ADD COLUMN parent_step INTEGER;
    """),
    (5, "what a running run is waiting on", """
        ALTER TABLE runs ADD COLUMN notice VARCHAR;
    """),
    (6, "the notes line each answer relied on; runs grouped in a study", """
        ALTER TABLE predictions ADD COLUMN note_line INTEGER;
        ALTER TABLE response_cache ADD COLUMN line INTEGER;
        ALTER TABLE runs ADD COLUMN study VARCHAR;
    """),
    (7, "what small models get wrong: repeated phrases in the notes, one class for every answer", """
        ALTER TABLE steps ADD COLUMN notes_repetition DOUBLE;
        ALTER TABLE steps ADD COLUMN eval_top_class VARCHAR;
        ALTER TABLE steps ADD COLUMN eval_top_share DOUBLE;
    """),
    (8, "studies numbered from a sequence, not counted", """
        CREATE SEQUENCE study_ids START 1;
    """),
    (9, "sample ids of 64 bits, as CSV files may have them", """
        ALTER TABLE predictions ALTER sample_id TYPE BIGINT;
    """),
    (10, "the inference phase has one name: infer (it was 'train' in the model-call log)", """
        UPDATE model_calls SET phase = 'infer' WHERE phase = 'train';
    """),
    (11, "evaluations: notes scored without learning, baselines, ablations", """
        CREATE SEQUENCE evaluation_ids START 1;
        CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY DEFAULT nextval('evaluation_ids'),
            kind VARCHAR NOT NULL,
            run_id INTEGER,
            step INTEGER,
            notes_source VARCHAR NOT NULL,
            notes VARCHAR NOT NULL,
            config JSON NOT NULL,
            agent_description VARCHAR NOT NULL,
            accuracy DOUBLE NOT NULL,
            invalid INTEGER NOT NULL,
            per_class JSON NOT NULL,
            eval_size INTEGER NOT NULL,
            shots INTEGER,
            removed_line INTEGER,
            tokens_in BIGINT NOT NULL,
            tokens_out BIGINT NOT NULL,
            cost DOUBLE NOT NULL,
            seconds DOUBLE NOT NULL,
            created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
        CREATE TABLE evaluation_predictions (
            evaluation_id INTEGER NOT NULL,
            sample_id BIGINT NOT NULL,
            predicted VARCHAR,
            label VARCHAR NOT NULL,
            correct BOOLEAN NOT NULL,
            raw VARCHAR NOT NULL,
            note_line INTEGER
        );
        CREATE TABLE evaluation_calls (
            evaluation_id INTEGER NOT NULL,
            prompt VARCHAR NOT NULL,
            response VARCHAR NOT NULL,
            tokens_in INTEGER NOT NULL,
            tokens_out INTEGER NOT NULL,
            tokens_cached INTEGER NOT NULL,
            duration_ms DOUBLE NOT NULL,
            cached BOOLEAN NOT NULL,
            error VARCHAR,
            cost DOUBLE NOT NULL
        );
    """),
    (12, "choices a user made once for every tab and reload (the model), never a key", """
        CREATE TABLE choices (
            name VARCHAR PRIMARY KEY,
            value JSON NOT NULL,
            saved_at TIMESTAMP NOT NULL DEFAULT current_timestamp
        );
    """),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


_PREDICTION_SCHEMA = pa.schema([
    ("run_id", pa.int32()), ("step", pa.int32()), ("phase", pa.string()), ("minibatch", pa.int32()),
    ("sample_id", pa.int64()), ("predicted", pa.string()), ("label", pa.string()), ("correct", pa.bool_()),
    ("raw", pa.string()), ("note_line", pa.int32()),
])


def _disk_problem(error: Exception, path: Path) -> UserError | None:
    message = str(error)
    if "No space left on device" in message:
        return UserError(f"the disk holding the database {path} is full; nothing of the step in flight was "
                         "written and earlier steps are intact: free some space (or pass --db with a file on "
                         "another disk) and resume the run")
    if "Read-only file system" in message or "Permission denied" in message:
        return UserError(f"the database {path} cannot be written (its file or disk is read-only); make it "
                         "writable or pass --db with a writable file; nothing in it was changed")
    return None


def _open(path: Path) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path))
    except duckdb.IOException as e:
        message = str(e)
        if "lock" in message.lower():
            holder = re.search(r"PID (\d+)", message)
            who = f"process {holder.group(1)}" if holder else "another process"
            raise DatabaseLocked(
                f"the database {path} is in use by {who} (DuckDB lets one process open a file); "
                f"stop that process (often the dashboard) or pass --db with another file") from None
        problem = _disk_problem(e, path)
        if problem is not None:
            raise problem from None
        raise UserError(f"cannot open the database {path} ({message}); "
                        "pass --db with a DuckDB file or the name of a new one") from None
    except duckdb.Error as e:
        raise UserError(f"{path} is not a usable DuckDB database ({e}); pass --db with another file") from None


class StoredResponseCache:
    """The response cache (iml_core.agents.llm.ResponseCache) kept in the store's file and shared by
    every run in it: model answers by the key of everything that decided them, so a repeated call
    costs nothing."""

    def __init__(self, store: "Store"):
        self._store = store

    def get(self, key: str) -> dict | None:
        row = self._store._cursor().execute(
            "SELECT raw, text, line FROM response_cache WHERE key = ?", [key]).fetchone()
        return None if row is None else {"raw": row[0], "text": row[1], "line": row[2]}

    def put(self, key: str, value: dict) -> None:
        try:
            self._store._cursor().execute(
                "INSERT OR IGNORE INTO response_cache (key, raw, text, line) VALUES (?, ?, ?, ?)",
                [key, value["raw"], value["text"], value.get("line")])
        except duckdb.TransactionException:
            pass  # another thread stored the same answer at the same moment


class Store:
    def __init__(self, path: str | Path = DEFAULT_DB, *, migrate_to: int = SCHEMA_VERSION):
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"the database path {self.path} is a folder; give a file name such as runs.duckdb")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = _open(self.path)
        self._local = threading.local()
        self._notice_lock = threading.Lock()
        self._migrate(migrate_to)
        self.responses = StoredResponseCache(self)

    # Each thread gets its own cursor: one DuckDB connection object used from two threads at
    # once fails with "connection is busy".
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._connection.cursor()
        return cursor

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- schema ----------------------------------------------------------------------------

    def _migrate(self, target: int) -> None:
        cursor = self._cursor()
        cursor.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,
            applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""")
        done = {row[0] for row in cursor.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, name, sql in MIGRATIONS:
            if version in done or version > target:
                continue
            with self._transaction() as cursor:
                cursor.execute(sql)
                cursor.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])

    @contextlib.contextmanager
    def _transaction(self):
        """All of it or none of it. A write the disk refuses (full, read-only) becomes a message
        that names the file and the fix; what was committed before is untouched."""
        cursor = self._cursor()
        cursor.execute("BEGIN TRANSACTION")
        try:
            yield cursor
            cursor.execute("COMMIT")
        except Exception as e:
            with contextlib.suppress(duckdb.Error):  # a failed COMMIT has already ended the transaction
                cursor.execute("ROLLBACK")
            problem = _disk_problem(e, self.path)
            if problem is not None:  # mid-run: the world failed, and the run can resume once it is fixed
                raise RunFailed(str(problem)) from None
            raise

    def schema_version(self) -> int:
        return self._cursor().execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]

    # --- writing ------------------------------------------------------------------------------

    def create_run(self, config: RunConfig, *, task_name: str, task_source: dict, agent_description: str,
                   prompts: dict | None = None, parent: tuple[int, int] | None = None,
                   study: str | None = None) -> int:
        parent_run_id, parent_step = parent or (None, None)
        return self._cursor().execute(
            """INSERT INTO runs (task, task_source, agent, agent_description, config, status, steps_total, prompts,
                                 parent_run_id, parent_step, study)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
            [task_name, json.dumps(task_source), config.agent, agent_description, json.dumps(config.to_dict()),
             Status.QUEUED.value,
             config.steps, None if prompts is None else json.dumps(prompts), parent_run_id, parent_step,
             study]).fetchone()[0]

    def set_status(self, run_id: int, status: Status, error: str | None = None) -> None:
        status = Status(status)  # ValueError for a name that is no status
        self._cursor().execute(
            """UPDATE runs SET status = ?, error = ?, notice = NULL,
                   started_at = CASE WHEN ? THEN coalesce(started_at, current_timestamp) ELSE started_at END,
                   finished_at = CASE WHEN ? THEN current_timestamp ELSE NULL END
                WHERE id = ?""",
            [status.value, error, status == Status.RUNNING, status in TERMINAL, run_id])

    def set_retrying(self, run_id: int, notice: str | None) -> None:
        """`retrying` with what the run waits for, or back to `running` (notice None); a run that
        has meanwhile stopped keeps its status. Parallel requests of one run report at once, and
        DuckDB refuses two concurrent updates of one row: they take turns."""
        with self._notice_lock:
            self._cursor().execute(
                """UPDATE runs SET status = ?, notice = ? WHERE id = ? AND list_contains(?, status)""",
                [(Status.RUNNING if notice is None else Status.RETRYING).value, notice, run_id,
                 [s.value for s in ACTIVE]])

    def save_step(self, run_id: int, record: StepRecord) -> None:
        """All of a step or nothing of it: the step row, its batch notes, predictions, model calls
        and the run's running totals commit together."""
        rows = record.predictions
        incoming_predictions = pa.Table.from_arrays([  # noqa: F841 (read by DuckDB's replacement scan)
            pa.array([run_id] * len(rows), pa.int32()), pa.array([record.step] * len(rows), pa.int32()),
            pa.array([p.phase for p in rows], pa.string()), pa.array([p.minibatch for p in rows], pa.int32()),
            pa.array([p.sample_id for p in rows], pa.int64()), pa.array([p.predicted for p in rows], pa.string()),
            pa.array([p.label for p in rows], pa.string()), pa.array([p.correct for p in rows], pa.bool_()),
            pa.array([p.raw for p in rows], pa.string()), pa.array([p.note_line for p in rows], pa.int32())],
            schema=_PREDICTION_SCHEMA)
        with self._transaction() as cursor:
            cursor.execute(
                """INSERT INTO steps (run_id, step, notes, train_accuracy, train_invalid, eval_accuracy,
                       eval_invalid, per_class, notes_words, words_changed, prefix_words,
                       prefix_kept_by_model, words_truncated, seconds_infer, seconds_induce,
                       seconds_revise, seconds_eval, tokens_in, tokens_out, tokens_cached, cost,
                       notes_repetition, eval_top_class, eval_top_share)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [run_id, record.step, record.notes, record.train_accuracy, record.train_invalid,
                 record.eval_accuracy, record.eval_invalid, json.dumps(record.per_class),
                 record.notes_words, record.words_changed, record.prefix_words, record.prefix_kept_by_model,
                 record.words_truncated, *(record.seconds.get(p, 0.0) for p in PhaseName),
                 record.tokens("in"), record.tokens("out"), record.tokens("cached"), record.cost(),
                 record.notes_repetition, record.eval_top_class, record.eval_top_share])
            if record.batch_notes:
                cursor.execute(
                    "INSERT INTO batch_notes VALUES " + ", ".join(["(?, ?, ?, ?)"] * len(record.batch_notes)),
                    [value for k, text in enumerate(record.batch_notes) for value in (run_id, record.step, k, text)])
            if rows:
                cursor.execute("INSERT INTO predictions SELECT * FROM incoming_predictions")
            if record.calls:
                cursor.executemany(
                    """INSERT INTO model_calls (run_id, step, phase, prompt, response, tokens_in, tokens_out,
                           tokens_cached, duration_ms, cached, error, cost)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    [[run_id, record.step, str(phase), c.prompt, c.response, c.tokens_in, c.tokens_out,
                      c.tokens_cached, c.duration_ms, c.cached, c.error, c.cost] for phase, c in record.calls])
            cursor.execute(
                """UPDATE runs SET steps_done = greatest(steps_done, ?),
                       final_eval_accuracy = coalesce(?, final_eval_accuracy),
                       best_eval_accuracy = greatest(best_eval_accuracy, ?),
                       tokens_in = tokens_in + ?, tokens_out = tokens_out + ?, cost = cost + ?
                   WHERE id = ?""",
                [record.step, record.eval_accuracy, record.eval_accuracy,
                 record.tokens("in"), record.tokens("out"), record.cost(), run_id])

    def mark_interrupted(self) -> int:
        """Runs a previous process left `running` or `queued`: they can no longer be going."""
        return len(self._cursor().execute(
            """UPDATE runs SET status = ?, finished_at = current_timestamp
               WHERE list_contains(?, status) RETURNING id""",
            [Status.INTERRUPTED.value, [s.value for s in GOING]]).fetchall())

    # --- reading ------------------------------------------------------------------------------

    def _rows(self, sql: str, params: list | None = None) -> list[dict]:
        cursor = self._cursor().execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    @staticmethod
    def _run_row(row: dict) -> dict:
        """A runs row with its JSON columns decoded: the one place they are."""
        for column in ("config", "task_source", "prompts"):
            row[column] = None if row.get(column) is None else json.loads(row[column])
        return row

    def runs(self) -> list[dict]:
        return [self._run_row(row) for row in self._rows("SELECT * FROM runs ORDER BY id")]

    def run(self, run_id: int) -> dict:
        rows = self._rows("SELECT * FROM runs WHERE id = ?", [run_id])
        if not rows:
            raise UserError(f"there is no run {run_id} in {self.path}; `python -m iml_core runs` lists the runs")
        return self._run_row(rows[0])

    def steps(self, run_id: int) -> list[dict]:
        return self._rows("SELECT * FROM steps WHERE run_id = ? ORDER BY step", [run_id])

    def notes_at(self, run_id: int, step: int) -> str:
        self.run(run_id)
        row = self._cursor().execute(
            "SELECT notes FROM steps WHERE run_id = ? AND step = ?", [run_id, step]).fetchone()
        if row is None:
            last = self._cursor().execute(
                "SELECT max(step) FROM steps WHERE run_id = ?", [run_id]).fetchone()[0]
            span = "it has no steps yet" if last is None else f"its steps go from 0 to {last}"
            raise UserError(f"run {run_id} has no step {step}; {span}")
        return row[0]

    def batch_notes(self, run_id: int, step: int) -> list[str]:
        return [r["text"] for r in self._rows(
            "SELECT text FROM batch_notes WHERE run_id = ? AND step = ? ORDER BY minibatch", [run_id, step])]

    def predictions(self, run_id: int, step: int | None = None) -> list[dict]:
        if step is None:
            return self._rows("SELECT * FROM predictions WHERE run_id = ? ORDER BY step, phase, minibatch", [run_id])
        return self._rows("SELECT * FROM predictions WHERE run_id = ? AND step = ? ORDER BY phase, minibatch",
                          [run_id, step])

    def model_calls(self, run_id: int) -> list[dict]:
        return self._rows("SELECT * FROM model_calls WHERE run_id = ? ORDER BY id", [run_id])

    # --- for the dashboard: frames, not rows ---------------------------------------------------

    def runs_frame(self):
        """One row per run with the settings a table sorts and groups by pulled out of the config."""
        return self._cursor().execute("""
            SELECT id, status, task, agent, agent_description,
                   CAST(config->>'momentum' AS DOUBLE) AS momentum,
                   CAST(config->>'accumulation' AS INTEGER) AS accumulation,
                   CAST(config->>'batch_size' AS INTEGER) AS batch_size,
                   CAST(config->>'seed' AS INTEGER) AS seed,
                   config->>'feedback' AS feedback,
                   CAST(config->>'max_note_words' AS INTEGER) AS max_note_words,
                   steps_done, steps_total, final_eval_accuracy, best_eval_accuracy,
                   tokens_in, tokens_out, cost, error, notice, study, created_at, started_at, finished_at
            FROM runs ORDER BY id DESC""").df()

    def steps_frame(self, run_ids, *, notes: bool = False):
        """The steps of some runs, one row each; the notes themselves (the bulk of a step) only when
        asked for, as exports do."""
        return self._cursor().execute(f"""
            SELECT * EXCLUDE (notes), {"notes" if notes else "NULL AS notes"}
            FROM steps WHERE list_contains(?, run_id) ORDER BY run_id, step""", [list(map(int, run_ids))]).df()

    def predictions_frame(self, run_ids):
        return self._cursor().execute(
            "SELECT * FROM predictions WHERE list_contains(?, run_id) ORDER BY run_id, step, phase, minibatch",
            [list(map(int, run_ids))]).df()

    def choice(self, name: str) -> dict | None:
        """What the user chose for `name` (e.g. "model"), kept for every tab and every reload."""
        row = self._cursor().execute("SELECT value FROM choices WHERE name = ?", [name]).fetchone()
        return None if row is None else json.loads(row[0])

    def save_choice(self, name: str, value: dict) -> None:
        if any("key" in field.lower() for field in value):
            raise ValueError(f"a choice never holds a key: {sorted(value)}")  # keys live in the environment
        self._cursor().execute(
            "INSERT OR REPLACE INTO choices (name, value, saved_at) VALUES (?, ?, current_timestamp)",
            [name, json.dumps(value, sort_keys=True)])

    def new_study(self, label: str) -> str:
        """A study name no run has used, "LABEL N" with N from a sequence: counting the studies
        there are would give a deleted study's name again."""
        while True:
            number = self._cursor().execute("SELECT nextval('study_ids')").fetchone()[0]
            name = f"{label} {number}"
            if self._cursor().execute("SELECT count(*) FROM runs WHERE study = ?", [name]).fetchone()[0] == 0:
                return name

    def studies(self) -> list[str]:
        """Names of the studies (runs queued together, e.g. by the Paper page), newest first."""
        return [row[0] for row in self._cursor().execute(
            "SELECT study FROM runs WHERE study IS NOT NULL GROUP BY study ORDER BY max(id) DESC").fetchall()]

    def churn_frame(self):
        """What the alarms read (iml_core.analysis.alarms), for every run at once."""
        return self._cursor().execute(
            """SELECT run_id, step, notes_words, words_changed, eval_accuracy, notes_repetition, eval_top_class,
                      eval_top_share FROM steps ORDER BY run_id, step""").df()

    def confusion(self, run_id: int, step: int):
        """Eval predictions at a step counted by (label, predicted); predicted is NULL for invalid output."""
        return self._cursor().execute("""
            SELECT label, coalesce(predicted, '(invalid)') AS predicted, count(*) AS n
            FROM predictions WHERE run_id = ? AND step = ? AND phase = 'eval'
            GROUP BY ALL ORDER BY ALL""", [run_id, step]).df()

    def line_usage(self, run_id: int, step: int):
        """How the notes after `step` were used, per unit: by the eval at `step` and by the training
        answers of the next step (columns note_line, used, right, wrong)."""
        return self._cursor().execute("""
            SELECT note_line, count(*) AS used, count(*) FILTER (WHERE correct) AS "right",
                   count(*) FILTER (WHERE NOT correct) AS wrong
            FROM predictions
            WHERE run_id = ? AND note_line IS NOT NULL
              AND ((phase = 'eval' AND step = ?) OR (phase = 'train' AND step = ? + 1))
            GROUP BY note_line ORDER BY note_line""", [run_id, step, step]).df()

    def phase_costs(self, run_ids):
        """Tokens, cost and seconds of every step split by phase (iml_core.agents.PhaseName). They
        add up to the steps' and the runs' totals."""
        ids = list(map(int, run_ids))
        return self._cursor().execute("""
            WITH calls AS (
                SELECT run_id, step, phase, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
                       sum(cost) AS cost
                FROM model_calls WHERE list_contains(?, run_id) GROUP BY ALL),
            times AS (
                UNPIVOT (SELECT run_id, step, seconds_infer AS infer, seconds_induce AS induce,
                                seconds_revise AS revise, seconds_eval AS eval
                         FROM steps WHERE list_contains(?, run_id))
                ON infer, induce, revise, eval INTO NAME phase VALUE seconds)
            SELECT t.run_id, t.step, t.phase,
                   coalesce(c.tokens_in, 0) AS tokens_in, coalesce(c.tokens_out, 0) AS tokens_out,
                   coalesce(c.cost, 0) AS cost, t.seconds
            FROM times t LEFT JOIN calls c USING (run_id, step, phase)
            ORDER BY t.run_id, t.step, t.phase""", [ids, ids]).df()

    # --- evaluations: notes scored without learning (iml_core.evaluation) ----------------------

    def save_evaluation(self, evaluation, config: RunConfig, run_id: int | None = None,
                        step: int | None = None) -> int:
        """An evaluation with its predictions and model calls, in one transaction; its id."""
        summary = evaluation.summary()
        with self._transaction() as cursor:
            evaluation_id = cursor.execute(
                """INSERT INTO evaluations (kind, run_id, step, notes_source, notes, config, agent_description,
                       accuracy, invalid, per_class, eval_size, shots, removed_line, tokens_in, tokens_out, cost,
                       seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                [evaluation.kind, run_id, step, evaluation.notes_source, evaluation.notes,
                 json.dumps(config.to_dict()), evaluation.agent_description, evaluation.accuracy,
                 evaluation.invalid, json.dumps(evaluation.per_class), evaluation.eval_size, evaluation.shots,
                 evaluation.removed_line, summary["tokens_in"], summary["tokens_out"], summary["cost"],
                 evaluation.seconds]).fetchone()[0]
            cursor.executemany(
                "INSERT INTO evaluation_predictions VALUES (?, ?, ?, ?, ?, ?, ?)",
                [[evaluation_id, p.sample_id, p.predicted, p.label, p.correct, p.raw, p.note_line]
                 for p in evaluation.predictions])
            if evaluation.calls:
                cursor.executemany(
                    "INSERT INTO evaluation_calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [[evaluation_id, c.prompt, c.response, c.tokens_in, c.tokens_out, c.tokens_cached,
                      c.duration_ms, c.cached, c.error, c.cost] for c in evaluation.calls])
        return evaluation_id

    def evaluations_frame(self, run_ids=None):
        """Stored evaluations, newest first; of some runs only, when given."""
        where, params = ("WHERE list_contains(?, run_id)", [list(map(int, run_ids))]) if run_ids is not None \
            else ("", [])
        return self._cursor().execute(
            f"""SELECT id, kind, run_id, step, notes_source, agent_description, accuracy, invalid, eval_size, shots,
                       removed_line, tokens_in, tokens_out, cost, seconds, created_at
                FROM evaluations {where} ORDER BY id DESC""", params).df()

    def mean_call_tokens(self, run_id: int, phase: str) -> tuple[float, float]:
        """Mean tokens in and out of a run's model calls in a phase that a model answered (0 without any)."""
        row = self._cursor().execute(
            """SELECT coalesce(avg(tokens_in), 0), coalesce(avg(tokens_out), 0) FROM model_calls
               WHERE run_id = ? AND phase = ? AND NOT cached""", [run_id, str(phase)]).fetchone()
        return float(row[0]), float(row[1])

    def baselines(self, run_ids):
        """The latest stored baseline of each kind for some runs: run_id, kind, accuracy, shots."""
        return self._cursor().execute(
            """SELECT run_id, kind, arg_max(accuracy, id) AS accuracy, arg_max(shots, id) AS shots
               FROM evaluations
               WHERE list_contains(?, run_id) AND list_contains(['no notes', 'in-context', 'oracle', 'majority'], kind)
               GROUP BY run_id, kind ORDER BY run_id, kind""", [list(map(int, run_ids))]).df()

    def ablation(self, run_id: int, step: int):
        """The latest ablation of a run's notes at a step: removed_line (NULL: the notes whole), accuracy."""
        return self._cursor().execute(
            """WITH latest AS (SELECT removed_line, arg_max(accuracy, id) AS accuracy, max(id) AS id
                               FROM evaluations WHERE kind = 'ablation' AND run_id = ? AND step = ?
                               GROUP BY removed_line)
               SELECT removed_line, accuracy FROM latest ORDER BY removed_line NULLS FIRST""",
            [run_id, step]).df()

    def evaluation_predictions(self, evaluation_id: int) -> list[dict]:
        return self._rows("SELECT * FROM evaluation_predictions WHERE evaluation_id = ?", [evaluation_id])

    def delete_runs(self, run_ids) -> None:
        with self._transaction() as cursor:
            for table in ("evaluation_predictions", "evaluation_calls"):
                cursor.executemany(f"DELETE FROM {table} WHERE evaluation_id IN "
                                   "(SELECT id FROM evaluations WHERE run_id = ?)", [[i] for i in run_ids])
            cursor.executemany("DELETE FROM evaluations WHERE run_id = ?", [[i] for i in run_ids])
            for table, column in (("model_calls", "run_id"), ("predictions", "run_id"), ("batch_notes", "run_id"),
                                  ("steps", "run_id"), ("runs", "id")):
                cursor.executemany(f"DELETE FROM {table} WHERE {column} = ?", [[i] for i in run_ids])
