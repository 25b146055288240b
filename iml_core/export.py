"""Exports of runs: steps and predictions as CSV or Parquet, a run's notes history as Markdown, and a
run's per-step report (what `iml show --json` prints and iml_core.tracking logs to MLflow)."""

from __future__ import annotations

import io
import re

import pandas as pd

from iml_core.analysis import run_report
from iml_core.builders import build_task
from iml_core.config import RunConfig
from iml_core.errors import UserError
from iml_core.formats import percent
from iml_core.store import Store
from iml_core.tasks import looks_like_formula
from iml_core.truth import TruthScorer


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
        accuracy = "" if step["eval_accuracy"] is None else f" (eval accuracy {percent(step['eval_accuracy'])})"
        # A fence longer than any run of backticks in the notes, so no note can close it.
        fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", step["notes"])), default=0))
        lines += [f"## Step {step['step']}{accuracy}", "", fence, step["notes"], fence, ""]
    return "\n".join(lines)


def truth_scorer(run: dict) -> TruthScorer | None:
    """What scores a run's notes against its task's rule card; None for a task without one, or
    whose file has moved since the run (everything else about the run can still be read)."""
    try:
        task = build_task(RunConfig.from_dict(run["config"]))
    except UserError:
        return None
    return TruthScorer(task) if task.rule_card else None


def stored_run_report(store: Store, run_id: int, *, scored_from: int = 0) -> dict:
    """analysis.run_report of a stored run. Its truth scores (rule recall, discovery rate, verdicts)
    cover the steps from `scored_from` on: a score takes a millisecond or two, so a caller adding one
    step to a long run asks only for that step's."""
    run = store.run(run_id)
    steps = store.steps_frame([run_id], notes=True)
    costs = store.phase_costs([run_id])
    scorer = truth_scorer(run)
    if scorer is None or scored_from <= 0:
        return run_report(run, steps, costs, scorer)
    report = run_report(run, steps, costs)  # the alarms read every step, so they come from the whole run
    scored = {s["step"]: s for s in run_report(run, steps[steps["step"] >= scored_from], costs, scorer)["steps"]}
    for step in report["steps"]:
        step.update({key: value for key, value in scored.get(step["step"], {}).items() if key not in step})
    return report
