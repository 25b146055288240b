import streamlit as st

from iml_core import export
from iml_core.status import RESUMABLE
from studio.ui import SELECTED, alarm_text, current

store, manager = current()
st.title("Runs")

runs = store.runs_frame()
if runs.empty:
    st.info("No runs yet. Start one on the New run page.")
    st.stop()

alarms = alarm_text(runs)
runs["alarms"] = [alarms.get(run_id, "") for run_id in runs["id"]]
shown = runs[["id", "status", "alarms", "task", "agent_description", "momentum", "accumulation", "batch_size", "seed",
              "steps_done", "steps_total", "final_eval_accuracy", "best_eval_accuracy", "tokens_in",
              "tokens_out", "started_at", "notice", "error"]]
picked = st.dataframe(
    shown, hide_index=True, on_select="rerun", selection_mode="multi-row", key="runs_table",
    column_config={
        "agent_description": "agent",
        "batch_size": "batch",
        "steps_done": "steps",
        "steps_total": "of",
        "final_eval_accuracy": st.column_config.NumberColumn("final eval", format="percent"),
        "best_eval_accuracy": st.column_config.NumberColumn("best eval", format="percent"),
        "tokens_in": "tokens in",
        "tokens_out": "tokens out",
    })
chosen = [int(shown.iloc[i]["id"]) for i in picked.selection.rows]
st.caption("Click column headers to sort; tick rows to act on them. Cost appears with LLM runs.")

evaluations = store.evaluations_frame()
if not evaluations.empty:
    with st.expander(f"Evaluations: notes scored without learning ({len(evaluations)})"):
        st.caption("Baselines (no notes, in-context, oracle, majority), notes scored by another agent, model or "
                   "task, and ablations; `python -m iml_core evaluate`, `baseline` and `ablate` make them too.")
        st.dataframe(evaluations, hide_index=True, key="evaluations_table",
                     column_config={"accuracy": st.column_config.NumberColumn(format="percent"),
                                    "agent_description": "agent", "notes_source": "notes from"})
if not chosen:
    st.stop()

st.session_state[SELECTED] = chosen
st.write(f"Selected: {', '.join(f'run {i}' for i in chosen)}")
open_col, compare_col, resume_col, cancel_col, delete_col = st.columns(5)
stopped = [int(i) for i in shown[shown["id"].isin(chosen) & shown["status"].isin(RESUMABLE)]["id"]]
going = [i for i in chosen if i in set(manager.busy())]
if cancel_col.button("Cancel", disabled=not going, key="cancel_runs",
                     help="queued runs never start; running ones stop (on Ray, their tasks are cancelled)"):
    for run_id in going:
        manager.cancel(run_id)
    st.success(f"Cancelling {', '.join(f'run {i}' for i in going)}.")
if resume_col.button("Resume", disabled=not stopped, key="resume_runs",
                     help="interrupted, cancelled or failed runs go on from their last committed step"):
    manager.resume(stopped)
    st.success(f"Resumed {', '.join(f'run {i}' for i in stopped)}.")
if open_col.button("Open notes", key="open_notes"):
    st.switch_page("pages/notes.py")
if compare_col.button("Compare", key="compare_runs"):
    st.switch_page("pages/compare.py")
busy = set(manager.busy()) & set(chosen)
confirm = delete_col.checkbox("Yes, delete these runs and all their steps", key="confirm_delete",
                              disabled=bool(busy), help="runs still going cannot be deleted; cancel them first")
if delete_col.button("Delete", disabled=not confirm or bool(busy), key="delete_runs"):
    store.delete_runs(chosen)
    st.session_state[SELECTED] = []
    st.success(f"Deleted {len(chosen)} run(s).")
    st.rerun()

st.subheader("Export")
steps, predictions = store.steps_frame(chosen, notes=True), store.predictions_frame(chosen)
a, b, c, d = st.columns(4)
a.download_button("Steps (CSV)", export.to_csv(steps), "steps.csv", "text/csv", key="steps_csv")
b.download_button("Steps (Parquet)", export.to_parquet(steps), "steps.parquet", key="steps_parquet")
c.download_button("Predictions (CSV)", export.to_csv(predictions), "predictions.csv", "text/csv", key="pred_csv")
d.download_button("Predictions (Parquet)", export.to_parquet(predictions), "predictions.parquet", key="pred_parquet")
for run_id in chosen:
    st.download_button(f"Notes history of run {run_id} (Markdown)", export.notes_markdown(store, run_id),
                       f"run-{run_id}-notes.md", "text/markdown", key=f"notes_md_{run_id}")
