import streamlit as st

from iml_core import analysis, charts, comparing
from studio.ui import SELECTED, baselines_button, current, report_button, run_label

NEWEST = 24
store, _ = current()
st.title("Compare")

runs = store.runs_frame()
finished = runs[runs["steps_done"] > 0]
if finished.empty:
    st.info("No runs to compare yet. A sweep on the New run page makes a good start.")
    st.stop()

labels = {row["id"]: run_label(row) for _, row in finished.iterrows()}
# The runs picked elsewhere, else the newest ones: a sweep just finished is what one compares.
preselected = [i for i in st.session_state.get(SELECTED, []) if i in labels] or list(labels)[:NEWEST]
chosen = st.multiselect("Runs", list(labels), preselected, format_func=labels.get, key="compare_runs")
by = st.selectbox("Group by", list(comparing.GROUPINGS), key="compare_by", format_func=comparing.GROUPINGS.get,
                  help="runs that share this setting form one curve: its mean, and its spread as a band. Runs "
                       "of another agent, model, learner, notes form or task never share a curve, nor a baseline")
if not chosen:
    st.stop()

selected = finished[finished["id"].isin(chosen)]
steps = store.steps_frame(chosen)
curves = charts.grouped_curves(comparing.grouped_curves(selected, steps, by), comparing.GROUPINGS[by])
st.plotly_chart(charts.with_baselines(curves, store.baselines(chosen), comparing.families(selected)),
                key="compare_curves")
if selected["notes_form"].eq("rule").any():
    st.caption("A decision list is scored both ways at every evaluated step: run by the engine (solid) and read by "
               "the model (dashed, the paper's protocol).")
baselines_button(store, chosen, key="compare_baselines")
report_button(store, chosen, key="compare_report")

maps = analysis.heatmaps(selected, steps)
if maps["final_eval_accuracy"].size > 1:
    final, reach, spread, instability = charts.settling_maps(maps, int(selected["steps_done"].max()))
    left, right = st.columns(2)
    left.plotly_chart(final, key="heat_final")
    right.plotly_chart(reach, key="heat_reach")
    left, right = st.columns(2)
    left.plotly_chart(spread, key="heat_spread")
    right.plotly_chart(instability, key="heat_instability")
    if (selected["final_eval_accuracy"].dropna() >= 0.99).all():
        st.info("Every run here ends at 100%, so final accuracy cannot tell the settings apart: read how fast they "
                "got there and how steadily (the maps beside it), or try a harder task: the `hard` preset (its "
                "classes depend on two traits at once) or `noisy` (a share of wrong labels).")
else:
    st.caption("Heat maps appear when the runs cover more than one momentum x accumulation cell.")

measure = st.radio("Split by phase", list(charts.PHASE_MEASURES), horizontal=True, key="compare_measure",
                   format_func=charts.PHASE_MEASURES.get)
st.plotly_chart(charts.phase_costs(store.phase_costs(chosen), measure, by="run_id"), key="compare_phases")
