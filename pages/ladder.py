import streamlit as st

from iml_core import ladder_results
from iml_core.builders import check_run
from iml_core.config import DEFAULT_SUBMISSION, SETTINGS, RunConfig, Submission
from iml_core.registry import AGENTS
from iml_core.studies import LADDER, LADDER_SEEDS, MOST_LADDER_SEEDS, ladder_study
from iml_core import charts, render
from iml_core.layout_probe import suggested_layout
from studio.ui import chosen_study, current, estimate_caption, model_settings, queue_study, show_problem, study_runs, \
    table
from studio.widgets import setting_input

store, manager = current()
st.title("Ladder")
st.caption("Where a model can learn: generated tasks from one binary rule to a noisy 4-class rule over 3 "
           "attributes, each rung over several seeds (each seed its own rule), with the rung's floor (no "
           "notes, majority class), in-context and oracle accuracy beside what each learner learned, and the "
           "learner's own experience in as many tokens as its notes (equal-token). The offline "
           "learner climbs it in seconds: run it first as the reference.")
st.markdown("\n".join(f"{number}. {rung.name}" for number, rung in enumerate(LADDER, start=1)))

left, middle, right = st.columns(3)
defaults = RunConfig()
agent = setting_input(left, "agent", defaults.agent, key="ladder_agent")
chosen = {name: setting_input(column, name, getattr(defaults, name), key=f"ladder_{name}")
          for column, name in zip((middle, right, left), ("steps", "batch_size", "eval_size"), strict=True)}
seeds = middle.number_input("Seeds per rung", 1, MOST_LADDER_SEEDS, LADDER_SEEDS, key="ladder_seeds",
                            help="each seed draws its own rule and its own samples")
limits = Submission(parallel=setting_input(right, "parallel", DEFAULT_SUBMISSION.parallel, key="ladder_parallel"))
model = model_settings() if AGENTS[agent].uses_model else {}
if model:
    advice = suggested_layout(model["model"]) if model.get("model") else None
    model["prompt_layout"] = setting_input(left, "prompt_layout", model.get(
        "prompt_layout", advice.layout if advice else defaults.prompt_layout), key="ladder_prompt_layout")
    if advice is not None:
        st.html(render.caption(f"Suggested for this model: the {advice.layout} layout, {advice.reason}."))

learner = SETTINGS["learner"]
learners = st.multiselect("Learners", learner.values, [defaults.learner], format_func=learner.describe,
                          key="ladder_learners", help="each learner climbs the same rungs and seeds; " + learner.help)

numbers = list(range(1, len(LADDER) + 1))
rungs = st.multiselect("Rungs", numbers, numbers, key="ladder_rungs",
                       format_func=lambda n: f"{n}. {LADDER[n - 1].name}",
                       help="climb all of them, or only those where the model's answer is in doubt") or numbers
base = RunConfig(agent=agent, **chosen, **model)
configs = ladder_study(base, int(seeds), rungs=rungs, learners=learners or [defaults.learner])
problems = check_run(configs[-1])  # the hardest rung: its task asks the most of the settings
for problem in problems:
    show_problem(problem)
if not problems:
    estimate_caption(configs, with_baselines=True)
if st.button(f"Climb the ladder ({len(configs)} runs, then their baselines)", type="primary",
             disabled=bool(problems), key="ladder_launch"):
    queue_study(configs, label="ladder", name=AGENTS[agent].label.split(" (")[0], limits=limits,
                state_key="ladder_study")

study = chosen_study("ladder", state_key="ladder_study", empty="No ladder yet: press the button above.")


@st.fragment(run_every=1.0)
def results(study: str) -> None:
    runs = study_runs(study)
    rungs = ladder_results.ladder_table(runs, store.baselines(runs["id"].tolist()))
    st.markdown(ladder_results.ladder_verdict(rungs))
    if rungs.empty:
        return
    st.plotly_chart(charts.ladder(rungs), key="ladder_chart")
    shown = ladder_results.ladder_in_words(rungs)
    table(shown, key="ladder_table", percent=(*ladder_results.LADDER_COLUMNS, *ladder_results.APPLIED_COLUMNS),
          spreads=("learned spread",))


results(study)
