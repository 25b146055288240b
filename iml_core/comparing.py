"""Runs told apart: what each run is, in words, and accuracy curves that never average runs of
different kinds (another agent, model, learner or notes form, another task) into one line, since
such runs have baselines and ceilings of their own. Pure pandas over what the store holds."""

from __future__ import annotations

import pandas as pd

from iml_core.studies import LADDER, rung_of
from iml_core.tasks import is_rules_spec, parse_rules_spec

# Who applied a decision list at an evaluated step (steps.rule_eval_accuracy, model_eval_accuracy).
# A run with notes in words has one accuracy, applied by whoever answers, and no reader named.
ENGINE = "run by the engine"
MODEL = "read by the model"
KIND = "kind"  # the group-by choice "what the run is"

# The group-by choices of Compare, in words. A run-kind or a task is never averaged with another:
# under any other choice each group is also split by them.
GROUPINGS = {
    KIND: "what the run is (agent, model, learner, notes form)",
    "momentum": "momentum", "accumulation": "accumulation", "batch_size": "batch size", "seed": "seed",
    "feedback": "feedback", "prompt_layout": "prompt layout", "task": "task", "id": "run (each its own curve)",
}
NOTES_FORM_WORDS = {"text": "notes in words", "rule": "decision list"}


def run_kind(row) -> str:
    """One run in words: who answers (the offline learner, or the model by name), the learner, and the
    notes' form with who applies it, e.g. `qwen2.5-coder-1.5b · bank · decision list run by the engine`."""
    who = "offline rule learner" if row["agent"] == "offline" else _model_name(str(row["agent_description"]))
    form = NOTES_FORM_WORDS.get(row.get("notes_form") or "text", str(row.get("notes_form")))
    if row.get("notes_form") == "rule":
        form += f" {ENGINE}" if row.get("apply") == "rule" else f" {MODEL}"
    return f"{who} · {row.get('learner') or 'iml'} · {form}"


def _model_name(description: str) -> str:
    # "llama-server: NAME" or "openai: NAME @ URL": the name is what tells two models apart
    return description.split(": ", 1)[-1].split(" @ ", 1)[0]


def task_words(task: str) -> str:
    """A task as a label names it: a ladder rung by its number and rule seed, anything else as given."""
    rung = rung_of(task)
    if rung is None or not is_rules_spec(task):
        return task
    return f"rung {LADDER.index(rung) + 1}, rule seed {parse_rules_spec(task)['seed']}"


def families(runs: pd.DataFrame) -> pd.Series:
    """Per run (by id): the family it is drawn with, its kind, and its task where the runs' tasks
    differ. Runs of one family share their baselines' meaning; those of two families never share a line."""
    kinds = runs.apply(run_kind, axis=1)
    if runs["task"].nunique() > 1:
        kinds = kinds + " · " + runs["task"].map(task_words)
    return pd.Series(kinds.to_numpy(), index=runs["id"].to_numpy())


def accuracy_points(steps: pd.DataFrame) -> pd.DataFrame:
    """Every evaluated step's accuracies: run_id, step, reader, accuracy. A run with rule notes gives
    two points a step, one per reader; any other run one, its reader empty."""
    rule_runs = set(steps.loc[steps["rule_eval_accuracy"].notna(), "run_id"]) if "rule_eval_accuracy" in steps \
        else set()
    plain = steps[~steps["run_id"].isin(rule_runs)].dropna(subset=["eval_accuracy"])
    parts = [plain.assign(reader="", accuracy=plain["eval_accuracy"])]
    ruled = steps[steps["run_id"].isin(rule_runs)]
    for reader, column in ((ENGINE, "rule_eval_accuracy"), (MODEL, "model_eval_accuracy")):
        read = ruled.dropna(subset=[column])
        parts.append(read.assign(reader=reader, accuracy=read[column]))
    return pd.concat(parts)[["run_id", "step", "reader", "accuracy"]]


def group_labels(runs: pd.DataFrame, by: str, name: str | None = None) -> pd.Series:
    """Per run (by id): the curve it joins under the group-by `by` (a runs column, or KIND), in words;
    `name` names the column where GROUPINGS does not. Under any group-by but KIND, what differs among
    the runs' kinds and tasks is added, so that two families never share a curve."""
    if by == KIND:
        return families(runs)
    if by == "id":  # each run its own curve, named with its kind
        return pd.Series([f"run {i} · {kind}" for i, kind in families(runs).items()], index=runs["id"].to_numpy())
    label = name or GROUPINGS.get(by, by)
    values = pd.Series(runs[by].to_numpy(), index=runs["id"].to_numpy())
    labels = values.map(lambda v: f"{label} = {task_words(v) if by == 'task' else _value_text(v)}")
    kinds = pd.Series(runs.apply(run_kind, axis=1).to_numpy(), index=labels.index)
    if kinds.nunique() > 1:
        labels = labels + " · " + kinds
    if by != "task" and runs["task"].nunique() > 1:
        labels = labels + " · " + pd.Series(runs["task"].map(task_words).to_numpy(), index=labels.index)
    return labels


def _value_text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def grouped_curves(runs: pd.DataFrame, steps: pd.DataFrame, by: str, name: str | None = None) -> pd.DataFrame:
    """Eval accuracy per step, averaged over the runs that share a curve (group_labels): columns
    group, reader, step, mean, std, runs."""
    columns = ["group", "reader", "step", "mean", "std", "runs"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    points = accuracy_points(steps)
    points = points.assign(group=points["run_id"].map(group_labels(runs, by, name))).dropna(subset=["group"])
    grouped = points.groupby(["group", "reader", "step"], sort=False)["accuracy"]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=0), "runs": grouped.count()}).reset_index()
    return out.sort_values(["group", "reader", "step"], kind="stable")[columns].reset_index(drop=True)
