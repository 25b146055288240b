"""What the pages and the command line read of runs: rows for one run, frames for many.

A run's predictions and model calls are those its steps made (served 'step'): an evaluation's rows
in the same tables carry the run's id too, and are read through iml_core.store.evaluations.
"""

from __future__ import annotations

import json

from iml_core.budget import Spent
from iml_core.config import SETTINGS, RunConfig
from iml_core.errors import UserError
from iml_core.status import GOING
from iml_core.store.database import Database
from iml_core.store.writes import SECONDS_COLUMNS

# The columns of a step's rows; the rest (evaluation_id, served) tell a step's rows from an evaluation's.
# The settings a table of runs sorts and groups by (those marked `column`), pulled out of the config.
# A run stored before a setting existed ran with its default (RunConfig's), which it shows.
_SQL_TYPES = {"integer": "INTEGER", "number": "DOUBLE"}
SETTING_COLUMNS = ", ".join(
    (f"CAST(config->>'{n}' AS {_SQL_TYPES[s.kind]})" if s.kind in _SQL_TYPES
     else f"coalesce(config->>'{n}', '{getattr(RunConfig(), n)}')") + f" AS {n}"
    for n, s in SETTINGS.items() if s.column)
_STEP_ROW = "* EXCLUDE (evaluation_id, served)"


class RunReads(Database):
    @staticmethod
    def _run_row(row: dict) -> dict:
        """A runs row with its JSON columns decoded: the one place they are."""
        for column in ("config", "task_source", "prompts"):
            row[column] = None if row.get(column) is None else json.loads(row[column])
        return row

    def run_spent(self, run_id: int) -> Spent:
        """What a run's committed steps spent: the calls a model answered (not the cache), their tokens
        and cost, and the steps' seconds; a budget counts on from there (iml_core.budget)."""
        with self.held():
            calls, tokens, cost = self._one(
                """SELECT count(*), coalesce(sum(tokens_in + tokens_out), 0), coalesce(sum(cost), 0)
                   FROM model_calls WHERE run_id = ? AND served = 'step' AND NOT cached""", [run_id])
            (seconds,) = self._one(
                f"""SELECT coalesce(sum({" + ".join(SECONDS_COLUMNS.values())}), 0)
                   FROM steps WHERE run_id = ?""", [run_id])
        return Spent(int(calls), int(tokens), float(cost), float(seconds))

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
        row = self._one("SELECT notes FROM steps WHERE run_id = ? AND step = ?", [run_id, step])
        if row is None:
            last = self._one("SELECT max(step) FROM steps WHERE run_id = ?", [run_id])[0]
            span = "it has no steps yet" if last is None else f"its steps go from 0 to {last}"
            raise UserError(f"run {run_id} has no step {step}; {span}")
        return row[0]

    def batch_notes(self, run_id: int, step: int) -> list[str]:
        return [r["text"] for r in self._rows(
            "SELECT text FROM batch_notes WHERE run_id = ? AND step = ? ORDER BY minibatch", [run_id, step])]

    def candidates(self, run_id: int, step: int | None = None) -> list[dict]:
        """What a run's learner weighed at a step (every step when None), with scores and decisions."""
        where, params = ("AND step = ?", [run_id, step]) if step is not None else ("", [run_id])
        return self._rows(
            f"""SELECT step, position, origin, minibatch, text, "right", scored, decision, reason
                FROM candidates WHERE run_id = ? {where} ORDER BY step, position""", params)

    def learner_state(self, run_id: int, step: int) -> str | None:
        """What the run's learner carried out of a committed step (None: nothing but the notes)."""
        row = self._one("SELECT learner_state FROM steps WHERE run_id = ? AND step = ?", [run_id, step])
        return None if row is None else row[0]

    def predictions(self, run_id: int, step: int | None = None) -> list[dict]:
        if step is None:
            return self._rows(f"""SELECT {_STEP_ROW} FROM predictions WHERE run_id = ? AND served = 'step'
                                  ORDER BY step, phase, minibatch""", [run_id])
        return self._rows(f"""SELECT {_STEP_ROW} FROM predictions WHERE run_id = ? AND step = ? AND served = 'step'
                              ORDER BY phase, minibatch""", [run_id, step])

    def model_calls(self, run_id: int) -> list[dict]:
        return self._rows(f"SELECT {_STEP_ROW} FROM model_calls WHERE run_id = ? AND served = 'step' ORDER BY id",
                          [run_id])

    # --- for the dashboard: frames, not rows ---------------------------------------------------

    def going_runs(self) -> list[int]:
        """The runs queued or computing steps, in this process or another: a cheap look for a page."""
        return [row[0] for row in self._all("SELECT id FROM runs WHERE list_contains(?, status) ORDER BY id",
                                            [[str(status) for status in GOING]])]

    def runs_frame(self):
        """One row per run with the settings a table sorts and groups by pulled out of the config."""
        return self._frame(f"""
            SELECT id, status, task, agent, agent_description, {SETTING_COLUMNS},
                   steps_done, steps_total, final_eval_accuracy, best_eval_accuracy,
                   applied.final_rule_applied_accuracy, applied.final_model_applied_accuracy,
                   tokens_in, tokens_out, cost, error, notice, study, created_at, started_at, finished_at,
                   -- how long it has run: until it finished, or until now while it goes
                   date_diff('second', started_at, coalesce(finished_at, now()::TIMESTAMP)) AS seconds
            FROM runs LEFT JOIN (
                -- a decision list's last evaluation both ways (only rule-notes runs store them)
                SELECT run_id,
                       arg_max(rule_eval_accuracy, step) FILTER (rule_eval_accuracy IS NOT NULL)
                           AS final_rule_applied_accuracy,
                       arg_max(model_eval_accuracy, step) FILTER (model_eval_accuracy IS NOT NULL)
                           AS final_model_applied_accuracy
                FROM steps WHERE rule_eval_accuracy IS NOT NULL GROUP BY run_id) applied ON applied.run_id = runs.id
            ORDER BY id DESC""")

    def steps_frame(self, run_ids, *, notes: bool = False):
        """The steps of some runs, one row each; the notes themselves (the bulk of a step) only when
        asked for, as exports do."""
        return self._frame(f"""
            SELECT * EXCLUDE (notes), {"notes" if notes else "NULL AS notes"}
            FROM steps WHERE list_contains(?, run_id) ORDER BY run_id, step""", [list(map(int, run_ids))])

    def predictions_frame(self, run_ids):
        return self._frame(
            f"""SELECT {_STEP_ROW} FROM predictions WHERE list_contains(?, run_id) AND served = 'step'
                ORDER BY run_id, step, phase, minibatch""", [list(map(int, run_ids))])

    def churn_frame(self):
        """What the alarms read (iml_core.analysis.alarms), for every run at once."""
        return self._frame(
            """SELECT run_id, step, notes_words, words_changed, eval_accuracy, notes_repetition, eval_top_class,
                      eval_top_share FROM steps ORDER BY run_id, step""")

    def confusion(self, run_id: int, step: int):
        """Eval predictions at a step counted by (label, predicted); predicted is NULL for invalid output."""
        return self._frame("""
            SELECT label, coalesce(predicted, '(invalid)') AS predicted, count(*) AS n
            FROM predictions WHERE run_id = ? AND step = ? AND phase = 'eval' AND served = 'step'
            GROUP BY ALL ORDER BY ALL""", [run_id, step])

    def sentence_usage(self, run_id: int, step: int):
        """How the notes after `step` were used, per unit: by the eval at `step` and by the training
        answers of the next step (columns note_sentence, used, right, wrong)."""
        return self._frame("""
            SELECT note_sentence, count(*) AS used, count(*) FILTER (WHERE correct) AS "right",
                   count(*) FILTER (WHERE NOT correct) AS wrong
            FROM predictions
            WHERE run_id = ? AND served = 'step' AND note_sentence IS NOT NULL
              AND ((phase = 'eval' AND step = ?) OR (phase = 'infer' AND step = ? + 1))
            GROUP BY note_sentence ORDER BY note_sentence""", [run_id, step, step])

    def call_seconds(self, models: list[str]) -> dict[str, float]:
        """Mean seconds of one model call per phase, over the calls a model answered (not the cache)
        in earlier runs of any of `models` (a model's names: as given and as its file)."""
        rows = self._all(
            """SELECT c.phase, avg(c.duration_ms) / 1000 FROM model_calls c JOIN runs r ON r.id = c.run_id
               WHERE c.served = 'step' AND NOT c.cached AND c.error IS NULL
                 AND list_contains(?, r.config->>'model') GROUP BY c.phase""", [models])
        return {phase: float(seconds) for phase, seconds in rows}

    def call_tokens(self, models: list[str]) -> dict[str, tuple[float, float]]:
        """Mean tokens in and out of one model call per phase, over the calls a model answered in
        earlier runs of any of `models` (as call_seconds): what an estimate of new runs reads."""
        rows = self._all(
            """SELECT c.phase, avg(c.tokens_in), avg(c.tokens_out) FROM model_calls c JOIN runs r ON r.id = c.run_id
               WHERE c.served = 'step' AND NOT c.cached AND c.error IS NULL
                 AND list_contains(?, r.config->>'model') GROUP BY c.phase""", [models])
        return {phase: (float(tokens_in), float(tokens_out)) for phase, tokens_in, tokens_out in rows}

    def phase_costs(self, run_ids):
        """Tokens, cost and seconds of every step split by phase (iml_core.agents.PhaseName). They
        add up to the steps' and the runs' totals."""
        ids = list(map(int, run_ids))
        times = ", ".join(f"{column} AS {phase}" for phase, column in SECONDS_COLUMNS.items())
        return self._frame(f"""
            WITH calls AS (
                SELECT run_id, step, phase, sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out,
                       sum(tokens_cached) AS tokens_cached, sum(cost) AS cost
                FROM model_calls WHERE list_contains(?, run_id) AND served = 'step' GROUP BY ALL),
            times AS (
                UNPIVOT (SELECT run_id, step, {times} FROM steps WHERE list_contains(?, run_id))
                ON {", ".join(SECONDS_COLUMNS)} INTO NAME phase VALUE seconds)
            SELECT t.run_id, t.step, t.phase,
                   coalesce(c.tokens_in, 0) AS tokens_in, coalesce(c.tokens_out, 0) AS tokens_out,
                   coalesce(c.tokens_cached, 0) AS tokens_cached,
                   coalesce(c.cost, 0) AS cost, t.seconds
            FROM times t LEFT JOIN calls c USING (run_id, step, phase)
            -- a learner that scores nothing (IML) has no scoring phase, not one of nothing
            WHERE t.phase <> 'score' OR t.seconds > 0 OR c.phase IS NOT NULL
            ORDER BY t.run_id, t.step, t.phase""", [ids, ids])
