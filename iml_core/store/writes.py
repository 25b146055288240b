"""What runs write: a run, its status, its steps; runs deleted; the user's choices and study names."""

from __future__ import annotations

import json
import threading
from typing import Callable

import duckdb

from iml_core.agents import PhaseName
from iml_core.config import RunConfig
from iml_core.errors import UserError
from iml_core.learner import StepRecord
from iml_core.status import ACTIVE, GOING, TERMINAL, Status
from iml_core.store.database import Database
from iml_core.store.records import Served, write_calls, write_predictions


# The column of each phase's seconds, by name: filled in PhaseName's order, a reordered enum would
# put one phase's time in another's column without a word.
SECONDS_COLUMNS = {PhaseName.INFER: "seconds_infer", PhaseName.INDUCE: "seconds_induce",
                   PhaseName.REVISE: "seconds_revise", PhaseName.EVAL: "seconds_eval",
                   PhaseName.SCORE: "seconds_score"}

class RunWrites(Database):
    _notice_lock: threading.Lock  # set by Store: see set_retrying
    check_follows: Callable  # iml_core.store.integrity

    def create_run(self, config: RunConfig, *, task_name: str, task_source: dict, agent_description: str,
                   prompts: dict | None = None, parent: tuple[int, int] | None = None,
                   study: str | None = None) -> int:
        """A queued run, owned by this process (iml_core.store.owners) before any other can see it.
        Its id is drawn in the insert's transaction: a nextval alone is not kept when the file closes,
        and the next process would draw the same id."""
        parent_run_id, parent_step = parent or (None, None)
        with self._transaction() as cursor:
            run_id = cursor.execute("SELECT nextval('run_ids')").fetchone()[0]
            self.owners.claim(run_id)
            try:
                cursor.execute(
                    """INSERT INTO runs (id, task, task_source, agent, agent_description, config, status, steps_total,
                                         prompts, parent_run_id, parent_step, study)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    [run_id, task_name, json.dumps(task_source), config.agent, agent_description,
                     json.dumps(config.to_dict()), Status.QUEUED.value, config.steps,
                     None if prompts is None else json.dumps(prompts), parent_run_id, parent_step, study])
            except BaseException:
                self.owners.release(run_id)
                raise
        return run_id

    def set_limits(self, run_id: int, config: RunConfig) -> None:
        """A run's budget changed for its resume (iml_core.budget): its limits are the only settings
        a stored run may change, since they change nothing it computes."""
        self._one("UPDATE runs SET config = ? WHERE id = ?", [json.dumps(config.to_dict()), run_id])

    def set_status(self, run_id: int, status: Status, error: str | None = None) -> None:
        """A going status is claimed for this process first, a stopped one let go after (iml_core.store.owners)."""
        status = Status(status)  # ValueError for a name that is no status
        with self.held() as cursor:
            if status in GOING:
                self.owners.claim(run_id)
            cursor.execute(
                """UPDATE runs SET status = ?, error = ?, notice = NULL,
                       started_at = CASE WHEN ? THEN coalesce(started_at, current_timestamp) ELSE started_at END,
                       finished_at = CASE WHEN ? THEN current_timestamp ELSE NULL END
                    WHERE id = ?""",
                [status.value, error, status == Status.RUNNING, status in TERMINAL, run_id])
            if status not in GOING:
                self.owners.release(run_id)

    def set_retrying(self, run_id: int, notice: str | None) -> None:
        """`retrying` with what the run waits for, or back to `running` (notice None); a run that
        has meanwhile stopped keeps its status. Parallel requests of one run report at once, and
        DuckDB refuses two concurrent updates of one row: they take turns."""
        with self._notice_lock:
            self._one(
                """UPDATE runs SET status = ?, notice = ? WHERE id = ? AND list_contains(?, status)""",
                [(Status.RUNNING if notice is None else Status.RETRYING).value, notice, run_id,
                 [s.value for s in ACTIVE]])

    def save_step(self, run_id: int, record: StepRecord) -> None:
        """All of a step or nothing of it: the step row, its batch notes, predictions, model calls
        and the run's running totals commit together, after the step before it, or not at all."""
        with self._transaction() as cursor:
            self.check_follows(cursor, run_id, record.step)
            cursor.execute(
                f"""INSERT INTO steps (run_id, step, notes, train_accuracy, train_invalid, eval_accuracy,
                       eval_invalid, per_class, notes_words, words_changed, prefix_words,
                       prefix_kept_by_model, words_truncated, {", ".join(SECONDS_COLUMNS.values())},
                       tokens_in, tokens_out, tokens_cached, cost, notes_repetition, eval_top_class,
                       eval_top_share, learner_state, rule_eval_accuracy, model_eval_accuracy)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [run_id, record.step, record.notes, record.train_accuracy, record.train_invalid,
                 record.eval_accuracy, record.eval_invalid, json.dumps(record.per_class),
                 record.notes_words, record.words_changed, record.prefix_words, record.prefix_kept_by_model,
                 record.words_truncated, *(record.seconds.get(p, 0.0) for p in SECONDS_COLUMNS),
                 record.tokens("in"), record.tokens("out"), record.tokens("cached"), record.cost(),
                 record.notes_repetition, record.eval_top_class, record.eval_top_share, record.state,
                 record.rule_eval_accuracy, record.model_eval_accuracy])
            if record.candidates:
                cursor.executemany(
                    """INSERT INTO candidates (run_id, step, position, origin, minibatch, text, "right", scored,
                           decision, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    [[run_id, record.step, position, c.origin, c.minibatch, c.text, c.right, c.scored, c.decision,
                      c.reason] for position, c in enumerate(record.candidates)])
            if record.batch_notes:
                cursor.execute(
                    "INSERT INTO batch_notes VALUES " + ", ".join(["(?, ?, ?, ?)"] * len(record.batch_notes)),
                    [value for k, text in enumerate(record.batch_notes) for value in (run_id, record.step, k, text)])
            write_predictions(cursor, record.predictions, served=Served.STEP, run_id=run_id, step=record.step)
            write_calls(cursor, record.calls, served=Served.STEP, run_id=run_id, step=record.step)
            cursor.execute(
                """UPDATE runs SET steps_done = greatest(steps_done, ?),
                       final_eval_accuracy = coalesce(?, final_eval_accuracy),
                       best_eval_accuracy = greatest(best_eval_accuracy, ?),
                       tokens_in = tokens_in + ?, tokens_out = tokens_out + ?, cost = cost + ?
                   WHERE id = ?""",
                [record.step, record.eval_accuracy, record.eval_accuracy,
                 record.tokens("in"), record.tokens("out"), record.cost(), run_id])

    def mark_interrupted(self) -> int:
        """Runs left `running` or `queued` by a process that has ended: no live process owns them
        (iml_core.store.owners). Every process may ask at any time; runs going elsewhere stay."""
        for _ in range(3):
            try:
                return self._mark_interrupted_once()
            except duckdb.TransactionException:
                # A run ended after this transaction read its status (its owner let go after the
                # commit): the stale update is refused, and a fresh read sees how it ended.
                continue
        return 0  # runs that keep changing under us are being run; the next call looks again

    def _mark_interrupted_once(self) -> int:
        with self._transaction() as cursor:
            listed = [row[0] for row in cursor.execute(
                "SELECT id FROM runs WHERE list_contains(?, status)", [[s.value for s in GOING]]).fetchall()]
            going = self.owners.going()  # read after the statuses: a claim precedes its status
            dead = [run_id for run_id in listed if run_id not in going]
            if dead:
                cursor.execute("""UPDATE runs SET status = ?, finished_at = current_timestamp
                                  WHERE list_contains(?, id)""", [Status.INTERRUPTED.value, dead])
        return len(dead)

    def delete_runs(self, run_ids) -> None:
        """The runs with everything of theirs: steps, evaluations, and the predictions and model calls
        of both."""
        ids = [[int(i)] for i in run_ids]
        with self._transaction() as cursor:
            elsewhere = self.owners.elsewhere()  # this process's own runs are its caller's to stop first
            going = sorted(set(elsewhere) & {i for (i,) in ids})
            if going:
                raise UserError(f"run {going[0]} is still going (process {elsewhere[going[0]]}); "
                                "stop it there or let it end, then delete it")
            for table in ("predictions", "model_calls"):
                cursor.executemany(f"""DELETE FROM {table} WHERE run_id = $1
                                       OR evaluation_id IN (SELECT id FROM evaluations WHERE run_id = $1)""", ids)
            for table, column in (("evaluations", "run_id"), ("batch_notes", "run_id"), ("candidates", "run_id"),
                                  ("steps", "run_id"),
                                  ("runs", "id")):
                cursor.executemany(f"DELETE FROM {table} WHERE {column} = ?", ids)
        for (run_id,) in ids:
            self.owners.release(run_id)

    # --- what outlives a run ------------------------------------------------------------------

    def choice(self, name: str) -> dict | None:
        """What the user chose for `name` (e.g. "model"), kept for every tab and every reload."""
        row = self._one("SELECT value FROM choices WHERE name = ?", [name])
        return None if row is None else json.loads(row[0])

    def save_choice(self, name: str, value: dict) -> None:
        if any("key" in field.lower() for field in value):
            raise ValueError(f"a choice never holds a key: {sorted(value)}")  # keys live in the environment
        self._one(
            "INSERT OR REPLACE INTO choices (name, value, saved_at) VALUES (?, ?, current_timestamp)",
            [name, json.dumps(value, sort_keys=True)])

    def new_study(self, label: str) -> str:
        """A study name no run has used, "LABEL N" with N counted per label and kept: counting the
        studies there are would give a deleted study's name again."""
        with self.held() as cursor:
            while True:
                number = cursor.execute(
                    """INSERT INTO study_counters VALUES (?, 1)
                       ON CONFLICT (label) DO UPDATE SET last = study_counters.last + 1 RETURNING last""",
                    [label]).fetchone()[0]
                name = f"{label} {number}"
                if cursor.execute("SELECT count(*) FROM runs WHERE study = ?", [name]).fetchone()[0] == 0:
                    return name

    def studies(self) -> list[str]:
        """Names of the studies (runs queued together, e.g. by the Paper page), newest first."""
        return [row[0] for row in self._all(
            "SELECT study FROM runs WHERE study IS NOT NULL GROUP BY study ORDER BY max(id) DESC")]
