"""Exports of runs: steps and predictions as CSV or Parquet, a run's notes history as Markdown."""

from __future__ import annotations

import io
import re

import pandas as pd

from iml_core.store import Store
from iml_core.tasks import looks_like_formula


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as formulas get a leading apostrophe."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(
                lambda v: "'" + v if isinstance(v, str) and looks_like_formula(v) else v)
    return out


def to_csv(frame: pd.DataFrame) -> bytes:
    return neutralize_formulas(frame).to_csv(index=False).encode("utf-8")


def to_parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def notes_markdown(store: Store, run_id: int) -> str:
    run = store.run(run_id)
    lines = [f"# Notes of run {run_id}", "",
             f"{run['task']}, {run['agent_description']}, momentum {run['config']['momentum']}, "
             f"accumulation {run['config']['accumulation']}, batch size {run['config']['batch_size']}, "
             f"seed {run['config']['seed']}, status {run['status']}", ""]
    for step in store.steps(run_id):
        accuracy = "" if step["eval_accuracy"] is None else f" (eval accuracy {100 * step['eval_accuracy']:.1f}%)"
        # A fence longer than any run of backticks in the notes, so no note can close it.
        fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", step["notes"])), default=0))
        lines += [f"## Step {step['step']}{accuracy}", "", fence, step["notes"], fence, ""]
    return "\n".join(lines)
