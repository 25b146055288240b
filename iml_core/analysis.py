"""Read-outs of stored runs for people: curves over seeds, stability, heat maps, time left.

Computed from what the store holds, so the command line, the dashboard and the benchmarks agree.
"""

from __future__ import annotations

import json
import math

import pandas as pd

# How many of a run's last evaluated steps its instability (their spread) is taken over.
INSTABILITY_WINDOW = 10


def eval_curve(steps: pd.DataFrame) -> pd.DataFrame:
    return steps.dropna(subset=["eval_accuracy"])[["run_id", "step", "eval_accuracy"]]


def instability(steps: pd.DataFrame, window: int = INSTABILITY_WINDOW) -> pd.Series:
    """Per run: the standard deviation of eval accuracy over its last `window` evaluations."""
    curve = eval_curve(steps)
    return curve.groupby("run_id")["eval_accuracy"].apply(lambda s: float(s.tail(window).std(ddof=0)))


def grouped_curves(runs: pd.DataFrame, steps: pd.DataFrame, by: str) -> pd.DataFrame:
    """Eval accuracy per step, averaged over the runs sharing a value of `by` (usually seeds
    differ within a group): columns group, step, mean, std, runs."""
    curve = eval_curve(steps).merge(runs[["id", by]], left_on="run_id", right_on="id")
    grouped = curve.groupby([by, "step"])["eval_accuracy"]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=0), "runs": grouped.count()}).reset_index()
    return out.rename(columns={by: "group"})


def heatmaps(runs: pd.DataFrame, steps: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Momentum x accumulation tables of mean final eval accuracy and mean instability."""
    spread = instability(steps).rename("instability")
    table = runs.set_index("id").join(spread).dropna(subset=["final_eval_accuracy"])
    final = table.pivot_table(index="momentum", columns="accumulation", values="final_eval_accuracy", aggfunc="mean")
    unstable = table.pivot_table(index="momentum", columns="accumulation", values="instability", aggfunc="mean")
    return final, unstable


def seconds_left(run: dict, steps: pd.DataFrame) -> float | None:
    """Time per step over the steps so far times the steps still to go; None before two steps."""
    done = steps[steps["step"] > 0]
    if len(done) < 2:
        return None
    times = pd.to_datetime(done["created_at"])
    per_step = (times.iloc[-1] - times.iloc[0]).total_seconds() / (len(done) - 1)
    return max(0.0, per_step * (run["steps_total"] - run["steps_done"]))


def per_class_accuracy(per_class_json: str, phase: str = "eval") -> pd.DataFrame:
    counts = json.loads(per_class_json).get(phase, {})
    return pd.DataFrame([{"class": name, "accuracy": right / total if total else math.nan, "samples": total}
                         for name, (right, total) in sorted(counts.items())])
