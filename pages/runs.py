import streamlit as st

from iml_core import comparing, export
from iml_core.config import BUDGET_SETTINGS
from iml_core.errors import IMLError
from iml_core.runner import raise_limits
from iml_core.status import GOING, RESUMABLE, Status
from studio.ui import SELECTED, alarm_text, current, show_problem, table
from studio.widgets import setting_input

store, manager = current()
store.mark_interrupted()  # a command killed while this page was open left its run `running`
st.title("Runs")

ALL = "all runs"
# What a person scans first, left to right; the rest (tokens, times, messages) after.
COLUMNS = ["id", "status", "study", "task", "kind", "learner", "momentum", "accumulation",
           "batch_size", "seed", "steps", "final_eval_accuracy", "best_eval_accuracy", "final_rule_applied_accuracy",
           "final_model_applied_accuracy", "seconds", "cost", "alarms", "tokens_in", "tokens_out", "started_at",
           "agent_description", "notice", "error"]
ACCURACIES = ("final_eval_accuracy", "best_eval_accuracy", "final_rule_applied_accuracy",
              "final_model_applied_accuracy")


# Refreshed every 2 s while any run goes, here or in a command; a table of finished runs stays still
# for reading.
_all_runs = store.runs_frame()
GOING_ANYWHERE = set(_all_runs.loc[_all_runs["status"].isin(GOING), "id"].astype(int))
REFRESH = 2.0 if manager.busy() or GOING_ANYWHERE else None


@st.fragment(run_every=REFRESH)
def runs_table() -> list[int]:
    """The runs; a new selection reruns the whole page, whose buttons act on it."""
    runs = store.runs_frame()
    if runs.empty:
        st.info("No runs yet. Start one on the New run page.")
        return []
    study = st.selectbox("Study", [ALL, *store.studies()], key="runs_study",
                         help="runs queued together: a sweep, or the Paper view's experiments")
    if study != ALL:
        runs = runs[runs["study"] == study]
    alarms = alarm_text(runs)
    runs = runs.assign(alarms=[alarms.get(run_id, "") for run_id in runs["id"]],
                       kind=runs.apply(comparing.run_kind, axis=1),
                       steps=[f"{done} of {total}" for done, total in zip(runs["steps_done"], runs["steps_total"],
                                                                            strict=True)])
    shown = runs[COLUMNS]
    picked = table(shown, key="runs_table", percent=ACCURACIES,
                   on_select="rerun", selection_mode="multi-row",
                   column_config={"cost": "cost ($)", "alarms": st.column_config.TextColumn("alarms", width="medium")})
    going = runs["status"].isin(GOING).any()
    st.caption("Click column headers to sort; tick rows to act on them. Cost is that of the model's tokens at the "
               "prices set on the Models page." + (" Refreshing while runs go." if going else ""))
    chosen = [int(shown.iloc[i]["id"]) for i in picked.selection.rows]
    if chosen != st.session_state.get("runs_chosen", []):
        st.session_state["runs_chosen"] = chosen
        st.rerun()  # the whole page: the buttons below act on the runs ticked now
    return chosen


chosen = runs_table()
evaluations = store.evaluations_frame()
if not evaluations.empty:
    with st.expander(f"Evaluations: notes scored without learning ({len(evaluations)})"):
        st.caption("Baselines (no notes, in-context, oracle, majority), notes scored by another agent, model or "
                   "task, and ablations; `python -m iml_core evaluate`, `baseline` and `ablate` make them too.")
        table(evaluations, key="evaluations_table", percent=("accuracy",), column_config={"id": "evaluation"})
if not chosen:
    st.stop()

st.session_state[SELECTED] = chosen
st.write(f"Selected: {', '.join(f'run {i}' for i in chosen)}")
open_col, compare_col, resume_col, cancel_col, delete_col = st.columns(5)
stopped = [i for i in chosen if store.run(i)["status"] in RESUMABLE]
going = [i for i in chosen if i in set(manager.busy())]
if cancel_col.button("Cancel", disabled=not going, key="cancel_runs",
                     help="queued runs never start; running ones stop (on Ray, their tasks are cancelled)"):
    for run_id in going:
        manager.cancel(run_id)
    st.success(f"Cancelling {', '.join(f'run {i}' for i in going)}.")
capped = [i for i in stopped if store.run(i)["status"] == Status.BUDGET_REACHED]
raised = {}
if capped:
    with st.expander(f"New limits for {', '.join(f'run {i}' for i in capped)} (budget reached), before resuming"):
        columns = st.columns(len(BUDGET_SETTINGS))
        raised = {name: value for column, name in zip(columns, BUDGET_SETTINGS, strict=True)
                  if (value := setting_input(column, name, None, key=f"raise_{name}",
                                             help="empty keeps the run's own limit")) is not None}
if resume_col.button("Resume", disabled=not stopped, key="resume_runs",
                     help="interrupted, cancelled, failed or budget-reached runs go on from their last committed "
                          "step"):
    try:
        for run_id in capped if raised else ():
            raise_limits(store, run_id, raised)
        manager.resume(stopped)
    except IMLError as e:
        show_problem(str(e))
    else:
        st.success(f"Resumed {', '.join(f'run {i}' for i in stopped)}.")
if open_col.button("Open notes", key="open_notes"):
    st.switch_page("pages/notes.py")
if compare_col.button("Compare", key="compare_runs"):
    st.switch_page("pages/compare.py")
busy = (set(manager.busy()) | GOING_ANYWHERE) & set(chosen)
confirm = delete_col.checkbox("Yes, delete", key="confirm_delete", disabled=bool(busy),
                              help="deletes the ticked runs with all their steps, notes and evaluations; runs "
                                   "still going cannot be deleted: cancel them first")
if delete_col.button("Delete", disabled=not confirm or bool(busy), key="delete_runs"):
    store.delete_runs(chosen)
    st.session_state[SELECTED] = []
    st.success(f"Deleted {len(chosen)} run(s).")
    st.rerun()

st.subheader("Export")
# Built when asked, not on every rerun: a selection of long runs makes files of many megabytes.
prepared = st.session_state.get("runs_exports")
if prepared is None or prepared["runs"] != chosen:
    if st.button(f"Prepare the exports of {len(chosen)} run(s)", key="prepare_exports",
                 help="steps and predictions as CSV and Parquet, and each run's notes history as Markdown"):
        steps, predictions = store.steps_frame(chosen, notes=True), store.predictions_frame(chosen)
        prepared = st.session_state["runs_exports"] = {
            "runs": chosen, "steps_csv": export.to_csv(steps), "steps_parquet": export.to_parquet(steps),
            "pred_csv": export.to_csv(predictions), "pred_parquet": export.to_parquet(predictions),
            "notes": {run_id: export.notes_markdown(store, run_id) for run_id in chosen}}
    else:
        st.stop()
a, b, c, d = st.columns(4)
a.download_button("Steps (CSV)", prepared["steps_csv"], "steps.csv", "text/csv", key="steps_csv")
b.download_button("Steps (Parquet)", prepared["steps_parquet"], "steps.parquet", key="steps_parquet")
c.download_button("Predictions (CSV)", prepared["pred_csv"], "predictions.csv", "text/csv", key="pred_csv")
d.download_button("Predictions (Parquet)", prepared["pred_parquet"], "predictions.parquet", key="pred_parquet")
for run_id, notes in prepared["notes"].items():
    st.download_button(f"Notes history of run {run_id} (Markdown)", notes, f"run-{run_id}-notes.md", "text/markdown",
                       key=f"notes_md_{run_id}")
