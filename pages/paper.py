import pandas as pd
import streamlit as st

from iml_core import analysis
from iml_core.config import SETTINGS, RunConfig
from iml_core.errors import IMLError
from iml_core.runner import DEFAULT_PARALLEL, PAPER_ACCUMULATIONS, PAPER_MOMENTA, PAPER_SEEDS, check_run, paper_study
from iml_core.status import GOING
from iml_core.tasks import PRESETS
from studio import charts
from studio.ui import current, model_settings, percent, show_problem

store, manager = current()
st.title("Paper view")
st.caption("The experiments of In-Memory Learning (arXiv 2403.02757) in one click: accuracy over steps for "
           f"momentum {' / '.join(f'{m:g}' for m in PAPER_MOMENTA)} (none, partial, full) and for accumulation "
           f"{' / '.join(map(str, PAPER_ACCUMULATIONS))}, over {PAPER_SEEDS} seeds each. With the offline "
           "learner it takes well under a minute here; with a model, it is a real study.")

left, middle, right = st.columns(3)
agents = {"offline": "Offline rule learner (no LLM)", "llm": "LLM (the Models page's settings)"}
agent = left.selectbox("Agent", list(agents), format_func=agents.get, key="paper_agent")
task = middle.selectbox("Task", list(PRESETS), key="paper_task")
steps = int(right.number_input("Steps", value=30, step=5, key="paper_steps", help=SETTINGS["steps"].help))
batch_size = int(left.number_input("Batch size", value=8, step=1, key="paper_batch", help=SETTINGS["batch_size"].help))
eval_size = int(middle.number_input("Eval size", value=200, step=50, key="paper_eval", help=SETTINGS["eval_size"].help))
parallel = int(right.number_input("Runs at once", 1, 8, DEFAULT_PARALLEL, key="paper_parallel"))

base = RunConfig(task=task, agent=agent, steps=steps, batch_size=batch_size, eval_size=eval_size,
                 **(model_settings() if agent == "llm" else {}))
configs = paper_study(base)
problems = check_run(base)
for problem in problems:
    show_problem(problem)
if st.button(f"Queue the paper's experiments ({len(configs)} runs)", type="primary", disabled=bool(problems),
             key="paper_launch"):
    study = store.new_study("paper view") + f": {task}, {agents[agent].split(' (')[0]}"
    try:
        manager.queue_baselines(manager.submit(configs, study=study, parallel=parallel))
    except IMLError as e:
        show_problem(str(e))
    else:
        st.session_state["paper_study"] = study


@st.fragment(run_every=1.0)
def figures() -> None:
    studies = [s for s in store.studies() if s.startswith("paper view")]
    if not studies:
        st.info("No paper study yet: press the button above.")
        return
    if st.session_state.get("paper_study") not in studies:
        st.session_state["paper_study"] = studies[0]
    study = st.selectbox("Study", studies, key="paper_study")
    runs = store.runs_frame()
    runs = runs[runs["study"] == study]
    going = int(runs["status"].isin(GOING).sum())
    st.progress(1 - going / len(runs), text=f"{len(runs) - going} of {len(runs)} runs finished"
                if going else f"all {len(runs)} runs finished")
    steps = store.steps_frame(runs["id"].tolist())
    by_momentum, by_accumulation = analysis.paper_curves(runs, steps)
    a, b = st.columns(2)
    baselines = store.baselines(runs["id"].tolist())
    a.plotly_chart(charts.with_baselines(charts.grouped_curves(by_momentum, "momentum"), baselines),
                   key="paper_momentum")
    b.plotly_chart(charts.with_baselines(charts.grouped_curves(by_accumulation, "accumulation"), baselines),
                   key="paper_accumulation")
    final = analysis.final_accuracy_by_cell(runs)
    st.dataframe(pd.DataFrame({
        "momentum": final["momentum"], "accumulation": final["accumulation"],
        "final eval accuracy (mean over seeds)": final["mean"].map(percent),
        "spread (std)": final["std"].map(lambda v: "–" if pd.isna(v) else f"{100 * v:.1f} points"),
        "runs": final["count"]}), hide_index=True, key="paper_table")


figures()
