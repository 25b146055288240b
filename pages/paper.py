import pandas as pd
import streamlit as st

from iml_core import analysis, charts
from iml_core.config import DEFAULT_SUBMISSION, RunConfig, Submission
from iml_core.builders import check_run
from iml_core.studies import PAPER_ACCUMULATIONS, PAPER_MOMENTA, PAPER_SEEDS, paper_study
from iml_core.registry import AGENTS
from iml_core.tasks import PRESETS
from studio.ui import chosen_study, current, estimate_caption, model_settings, queue_study, show_problem, study_runs, \
    table
from studio.widgets import setting_input

store, manager = current()
st.title("Paper view")
st.caption("The experiments of In-Memory Learning (arXiv 2403.02757) in one click: accuracy over steps for "
           f"momentum {' / '.join(f'{m:g}' for m in PAPER_MOMENTA)} (none, partial, full) and for accumulation "
           f"{' / '.join(map(str, PAPER_ACCUMULATIONS))}, over {PAPER_SEEDS} seeds each. With the offline "
           "learner it takes well under a minute here; with a model, it is a real study.")

left, middle, right = st.columns(3)
defaults = RunConfig()
agent = setting_input(left, "agent", defaults.agent, key="paper_agent")
task = middle.selectbox("Task", list(PRESETS), key="paper_task")
chosen = {name: setting_input(column, name, getattr(defaults, name), key=f"paper_{name}")
          for column, name in zip((right, left, middle), ("steps", "batch_size", "eval_size"), strict=True)}
limits = Submission(parallel=setting_input(right, "parallel", DEFAULT_SUBMISSION.parallel, key="paper_parallel"))

base = RunConfig(task=task, agent=agent, **chosen, **(model_settings() if AGENTS[agent].uses_model else {}))
configs = paper_study(base)
problems = check_run(base)
for problem in problems:
    show_problem(problem)
if not problems:
    estimate_caption(configs, with_baselines=True)
if st.button(f"Queue the paper's experiments ({len(configs)} runs)", type="primary", disabled=bool(problems),
             key="paper_launch"):
    queue_study(configs, label="paper view", name=f"{task}, {AGENTS[agent].label.split(' (')[0]}", limits=limits,
                state_key="paper_study")

study = chosen_study("paper view", state_key="paper_study", empty="No paper study yet: press the button above.")


@st.fragment(run_every=1.0)
def figures(study: str) -> None:
    runs = study_runs(study)
    steps = store.steps_frame(runs["id"].tolist())
    by_momentum, by_accumulation = analysis.paper_curves(runs, steps)
    a, b = st.columns(2)
    baselines = store.baselines(runs["id"].tolist())
    a.plotly_chart(charts.with_baselines(charts.grouped_curves(by_momentum, "momentum"), baselines),
                   key="paper_momentum")
    b.plotly_chart(charts.with_baselines(charts.grouped_curves(by_accumulation, "accumulation"), baselines),
                   key="paper_accumulation")
    final = analysis.final_accuracy_by_cell(runs)
    table(pd.DataFrame({
        "momentum": final["momentum"], "accumulation": final["accumulation"],
        "final eval accuracy (mean over seeds)": final["mean"], "spread (std)": final["std"],
        "runs": final["count"]}), key="paper_table", percent=("final eval accuracy (mean over seeds)",),
        spreads=("spread (std)",))


figures(study)
