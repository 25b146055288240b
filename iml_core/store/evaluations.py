"""Evaluations: notes scored without learning (iml_core.evaluation), their predictions and model calls
in the tables a step's go to, told apart by `served`."""

from __future__ import annotations

import json

from iml_core.baseline_kinds import Baseline
from iml_core.config import RunConfig
from iml_core.prompts import DEFAULT_LAYOUT
from iml_core.store.database import Database
from iml_core.store.records import Served, write_calls, write_predictions


class Evaluations(Database):
    def save_evaluation(self, evaluation, config: RunConfig, run_id: int | None = None,
                        step: int | None = None) -> int:
        """An evaluation with its predictions and model calls, in one transaction; its id."""
        summary = evaluation.summary()
        served = Served.evaluation(evaluation.kind)
        with self._transaction() as cursor:
            evaluation_id = cursor.execute(
                """INSERT INTO evaluations (kind, run_id, step, notes_source, notes, config, agent_description,
                       accuracy, invalid, per_class, eval_size, shots, removed_sentence, tokens_in, tokens_out, cost,
                       seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                [evaluation.kind, run_id, step, evaluation.notes_source, evaluation.notes,
                 json.dumps(config.to_dict()), evaluation.agent_description, evaluation.accuracy,
                 evaluation.invalid, json.dumps(evaluation.per_class), evaluation.eval_size, evaluation.shots,
                 evaluation.removed_sentence, summary["tokens_in"], summary["tokens_out"], summary["cost"],
                 evaluation.seconds]).fetchone()[0]
            write_predictions(cursor, evaluation.predictions, served=served, run_id=run_id, step=step,
                              evaluation_id=evaluation_id)
            write_calls(cursor, [(c.phase, c) for c in evaluation.calls], served=served, run_id=run_id, step=step,
                        evaluation_id=evaluation_id)
        return evaluation_id

    def evaluations_frame(self, run_ids=None):
        """Stored evaluations, newest first; of some runs only, when given."""
        where, params = ("WHERE list_contains(?, run_id)", [list(map(int, run_ids))]) if run_ids is not None \
            else ("", [])
        return self._frame(
            f"""SELECT id, kind, run_id, step, notes_source, agent_description, accuracy, invalid, eval_size, shots,
                       removed_sentence, tokens_in, tokens_out, cost, seconds, created_at
                FROM evaluations {where} ORDER BY id DESC""", params)

    def evaluation_predictions(self, evaluation_id: int) -> list[dict]:
        return self._rows("SELECT * FROM predictions WHERE evaluation_id = ?", [evaluation_id])

    def evaluation_calls(self, evaluation_id: int) -> list[dict]:
        return self._rows("SELECT * FROM model_calls WHERE evaluation_id = ? ORDER BY id", [evaluation_id])

    def mean_call_tokens(self, run_id: int, phase: str) -> tuple[float, float]:
        """Mean tokens in and out of the model calls of a run's steps in a phase that a model answered
        (0 without any): what a baseline of the run will cost, about."""
        row = self._one(
            """SELECT coalesce(avg(tokens_in), 0), coalesce(avg(tokens_out), 0) FROM model_calls
               WHERE run_id = ? AND served = 'step' AND phase = ? AND NOT cached""", [run_id, str(phase)])
        return float(row[0]), float(row[1])

    def baselines(self, run_ids):
        """The latest stored baseline of each kind for some runs: run_id, kind, accuracy, shots, and
        the answers that named no class of how many (invalid, eval_size). Only those asked in the
        run's own prompt layout: `baseline --prompt-layout` stores others beside them, to compare."""
        return self._frame(
            f"""SELECT e.run_id, e.kind, arg_max(e.accuracy, e.id) AS accuracy, arg_max(e.shots, e.id) AS shots,
                       arg_max(e.invalid, e.id) AS invalid, arg_max(e.eval_size, e.id) AS eval_size
                FROM evaluations e JOIN runs r ON r.id = e.run_id
                WHERE list_contains(?, e.run_id) AND list_contains(?, e.kind)
                  AND coalesce(e.config->>'prompt_layout', '{DEFAULT_LAYOUT}')
                      = coalesce(r.config->>'prompt_layout', '{DEFAULT_LAYOUT}')
                GROUP BY e.run_id, e.kind ORDER BY e.run_id, e.kind""",
            [list(map(int, run_ids)), [kind.value for kind in Baseline]])

    def ablation(self, run_id: int, step: int):
        """The latest ablation of a run's notes at a step: removed_sentence (NULL: the notes whole), accuracy."""
        return self._frame(
            """WITH latest AS (SELECT removed_sentence, arg_max(accuracy, id) AS accuracy, max(id) AS id
                               FROM evaluations WHERE kind = 'ablation' AND run_id = ? AND step = ?
                               GROUP BY removed_sentence)
               SELECT removed_sentence, accuracy FROM latest ORDER BY removed_sentence NULLS FIRST""",
            [run_id, step])
