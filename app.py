"""IML Studio's first dashboard: start an offline run and see every run in the database.

Pages only lay out widgets and call iml_core; runs execute in worker threads of this server
process, which owns the DuckDB file (DESIGN.md section 4).
"""

import pandas as pd
import streamlit as st

from iml_core.config import SETTINGS, RunConfig
from iml_core.errors import UserError
from studio.engine import database_path, engine


st.set_page_config(page_title="IML Studio", layout="wide")
st.title("IML Studio")
st.caption("In-Memory Learning: an agent improves its natural-language notes, not its weights.")

try:
    store, manager = engine(database_path())
except UserError as e:
    st.error(str(e))
    st.stop()

with st.form("new_run"):
    st.subheader("New run: offline rule learner (no LLM) on the paper benchmark")
    left, right = st.columns(2)
    momentum = left.slider("Momentum", 0.0, 1.0, RunConfig.momentum, 0.05, key="momentum",
                           help=SETTINGS["momentum"].help)
    accumulation = right.slider("Accumulation", 1, 8, RunConfig.accumulation, key="accumulation",
                                help=SETTINGS["accumulation"].help)
    steps = left.number_input("Steps", 1, 500, RunConfig.steps, key="steps", help=SETTINGS["steps"].help)
    seed = right.number_input("Seed", 0, 10_000, RunConfig.seed, key="seed", help=SETTINGS["seed"].help)
    if st.form_submit_button("Start run", type="primary"):
        try:
            run_id = manager.start(RunConfig(momentum=momentum, accumulation=int(accumulation),
                                             steps=int(steps), seed=int(seed)))
            st.success(f"Run {run_id} started.")
        except UserError as e:
            st.error(str(e))


@st.fragment(run_every=1.0)
def runs_table() -> None:
    runs = store.runs()
    st.subheader("Runs")
    if not runs:
        st.info("No runs yet: start one above.")
        return
    table = pd.DataFrame(runs)[["id", "status", "task", "agent_description", "steps_done", "steps_total",
                                "final_eval_accuracy", "best_eval_accuracy", "started_at"]]
    st.dataframe(table, hide_index=True, column_config={
        "agent_description": "agent",
        "final_eval_accuracy": st.column_config.NumberColumn("final eval", format="percent"),
        "best_eval_accuracy": st.column_config.NumberColumn("best eval", format="percent"),
    })


runs_table()
