"""A ladder study read out (iml_core.studies.LADDER): rung by rung and learner by learner, each
baseline and what was learned, and where the model stops applying a rule it is given and where
each learner stops learning one, in words. Pure pandas over what the store holds."""

from __future__ import annotations

import pandas as pd

from iml_core import comparing
from iml_core.baseline_kinds import Baseline
from iml_core.studies import LADDER, rung_of

LADDER_MARGIN = 0.10
LADDER_COLUMNS = (*(kind.value for kind in Baseline), "learned")
# A decision list's final evaluation both ways, beside "learned" (which is the one the run learned by):
# blank for notes in words.
APPLIED_COLUMNS = {"learned, run by the engine": "final_rule_applied_accuracy",
                   "learned, read by the model": "final_model_applied_accuracy"}


def _ladder_baselines(runs: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Each run's baselines (run x kind accuracy): its own where stored, else those of a run on the same
    task and seed, since the runs of one rung and seed differ only in how they learn and share them
    (iml_core.evaluation.baseline_key; the run's own ones, equal-token, are not shared)."""
    if not len(baselines):
        return pd.DataFrame(index=runs["id"])
    own = baselines.pivot_table(index="run_id", columns="kind", values="accuracy")
    cells = runs[["id", "task", "seed"]].merge(own, left_on="id", right_index=True, how="left")
    shared = [kind for kind in own.columns if not Baseline(kind).of_the_run]
    by_cell = cells.groupby(["task", "seed"])[shared].transform("first")
    return own.reindex(runs["id"]).combine_first(by_cell.set_index(cells["id"]))


def ladder_table(runs: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """A ladder study's runs (iml_core.studies.LADDER) rung by rung and learner by learner: the mean
    over seeds of each baseline and of the learned (final eval) accuracy, the learned spread, and two
    verdicts against the floor (the better of no notes and the majority class, which a model answering
    one class reaches): *applies*, the oracle notes clear it (the model can use a rule it is given),
    and *learns*, its own notes do (LADDER_MARGIN). A rung none of whose runs has finished is left out."""
    done = runs[runs["final_eval_accuracy"].notna()]
    if "learner" not in done:  # a frame of runs from before learners were a choice: IML's
        done = done.assign(learner="iml")
    # A learner writing decision lists is another line than the same learner writing words.
    done = done.assign(learner=[f"{learner} ({comparing.NOTES_FORM_WORDS['rule']})" if form == "rule" else learner
                                for learner, form in zip(done["learner"], done.get("notes_form", pd.Series(
                                    "text", index=done.index)), strict=True)])
    accuracy = _ladder_baselines(done, baselines)
    rows = []
    for number, rung in enumerate(LADDER, start=1):
        on_rung = done[[rung_of(task) == rung for task in done["task"]]]
        for learner, runs_of in on_rung.groupby("learner", sort=False):
            row = {"rung": number, "task": rung.name, "learner": learner, "seeds": len(runs_of)}
            for kind in Baseline:
                values = accuracy.reindex(runs_of["id"])[kind].dropna() if kind in accuracy else pd.Series()
                row[kind] = values.mean() if len(values) else None
            row["learned"] = runs_of["final_eval_accuracy"].mean()
            for column, source in APPLIED_COLUMNS.items():
                values = runs_of[source].dropna() if source in runs_of else pd.Series()
                row[column] = values.mean() if len(values) else None
            row["learned spread"] = runs_of["final_eval_accuracy"].std() if len(runs_of) > 1 else None
            floor = max((row[k] for k in Baseline if k.is_floor and row[k] is not None), default=None)
            oracle = row[Baseline.ORACLE]
            row["applies"] = None if floor is None or oracle is None else oracle - floor >= LADDER_MARGIN
            row["learns"] = None if floor is None else row["learned"] - floor >= LADDER_MARGIN
            rows.append(row)
    return pd.DataFrame(rows, columns=["rung", "task", "learner", "seeds", *LADDER_COLUMNS, *APPLIED_COLUMNS,
                                       "learned spread", "applies", "learns"])


def ladder_in_words(table: pd.DataFrame) -> pd.DataFrame:
    """The ladder table as people read it: its verdicts as yes and no, empty where not measured."""
    words = {True: "yes", False: "no"}
    return table.assign(applies=table["applies"].map(words), learns=table["learns"].map(words))


def ladder_verdict(table: pd.DataFrame) -> str:
    """Where on the ladder the model stops applying rules and where each learner stops learning them,
    in words; only rungs whose verdicts are measured (their baselines computed) count."""
    if table.empty:
        return "No rung has finished a run yet."
    applies = table[table["applies"].notna()]
    if applies.empty:
        return "Not measured yet: no rung's baselines have been computed."
    said = []
    rungs = applies.drop_duplicates("rung")
    failing = rungs[~rungs["applies"].astype(bool)]
    if len(failing):
        first = failing.iloc[0]
        said.append(f"It stops applying a rule it is given at rung {first['rung']} ({first['task']}): the oracle "
                    "notes no longer lift it clear of its floor.")
    else:
        said.append(f"It applies the rule it is given on every rung measured ({len(rungs)} of "
                    f"{table['rung'].nunique()}).")
    several = table["learner"].nunique() > 1
    for learner, rows in applies[applies["applies"].astype(bool)].groupby("learner", sort=False):
        who = f"With the {learner} learner it" if several else "It"
        stops_learning = rows[~rows["learns"].astype(bool)]
        if len(stops_learning):
            first = stops_learning.iloc[0]
            said.append(f"{who} stops learning at rung {first['rung']} ({first['task']}): its own notes end near "
                        "its floor while the oracle's are still clear of it.")
        else:
            said.append(f"{who} learns on every rung where it applies a rule it is given.")
    return " ".join(said)
