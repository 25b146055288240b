"""The one write path of predictions and model calls, whatever they served: a learning run's step,
an evaluation or a baseline (the `served` column of both tables)."""

from __future__ import annotations

from enum import StrEnum
from typing import Iterable, Sequence

import duckdb
import pyarrow as pa

from iml_core.agents import ModelCall
from iml_core.learner import PredictionRecord

# The kinds iml_core.evaluation calls baselines (its BASELINES): it imports the store through the
# runner, so the store cannot import it; tests/test_migration.py keeps the two equal.
BASELINE_KINDS = ("no notes", "in-context", "oracle", "majority", "equal-token")


class Served(StrEnum):
    """What a stored prediction or model call was made for."""
    STEP = "step"  # a learning run's step
    EVALUATION = "evaluation"  # notes scored, ablated or transferred
    BASELINE = "baseline"  # an evaluation of a kind in BASELINE_KINDS

    @classmethod
    def evaluation(cls, kind: str) -> Served:
        return cls.BASELINE if kind in BASELINE_KINDS else cls.EVALUATION


_PREDICTION_SCHEMA = pa.schema([
    ("run_id", pa.int32()), ("step", pa.int32()), ("phase", pa.string()), ("minibatch", pa.int32()),
    ("sample_id", pa.int64()), ("predicted", pa.string()), ("label", pa.string()), ("correct", pa.bool_()),
    ("raw", pa.string()), ("note_sentence", pa.int32()), ("evaluation_id", pa.int32()), ("served", pa.string()),
])


def write_predictions(cursor: duckdb.DuckDBPyConnection, rows: Sequence[PredictionRecord], *, served: Served,
                      run_id: int | None, step: int | None, evaluation_id: int | None = None) -> None:
    if not rows:
        return
    n = len(rows)
    incoming_predictions = pa.Table.from_arrays([  # noqa: F841 (read by DuckDB's replacement scan)
        pa.array([run_id] * n, pa.int32()), pa.array([step] * n, pa.int32()),
        pa.array([str(p.phase) for p in rows], pa.string()), pa.array([p.minibatch for p in rows], pa.int32()),
        pa.array([p.sample_id for p in rows], pa.int64()), pa.array([p.predicted for p in rows], pa.string()),
        pa.array([p.label for p in rows], pa.string()), pa.array([p.correct for p in rows], pa.bool_()),
        pa.array([p.raw for p in rows], pa.string()), pa.array([p.note_sentence for p in rows], pa.int32()),
        pa.array([evaluation_id] * n, pa.int32()), pa.array([str(served)] * n, pa.string())],
        schema=_PREDICTION_SCHEMA)
    cursor.execute(f"INSERT INTO predictions ({', '.join(_PREDICTION_SCHEMA.names)}) "
                   "SELECT * FROM incoming_predictions")


def write_calls(cursor: duckdb.DuckDBPyConnection, calls: Iterable[tuple[str, ModelCall]], *, served: Served,
                run_id: int | None, step: int | None, evaluation_id: int | None = None) -> None:
    """`calls` as (phase, call) pairs: a step's record names each call's phase beside it."""
    rows = [[run_id, step, str(phase), c.prompt, c.response, c.tokens_in, c.tokens_out, c.tokens_cached,
             c.duration_ms, c.cached, c.error, c.cost, evaluation_id, str(served)] for phase, c in calls]
    if rows:
        cursor.executemany(
            """INSERT INTO model_calls (run_id, step, phase, prompt, response, tokens_in, tokens_out, tokens_cached,
                   duration_ms, cached, error, cost, evaluation_id, served)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""", rows)
