import itertools

import streamlit as st

from iml_core import analysis, evaluation
from iml_core.backends import without_credentials
from iml_core.config import BUDGET_SETTINGS, DEFAULT_SUBMISSION, SETTINGS, SWEEP_BUDGET_SETTINGS, RunConfig, \
    Submission, recommended
from iml_core.errors import IMLError
from iml_core.builders import check_run
from iml_core.studies import grid_configs
from iml_core.layout_probe import suggested_layout
from iml_core.registry import AGENTS, BACKENDS, LEARNERS
from iml_core.tasks import PRESETS, is_rules_spec, parse_rules_spec, rules_spec
from iml_core import render
from studio.ui import MLFLOW, SELECTED, current, estimate_caption, generated_tasks, keep_generated_task, \
    mlflow_logger, model_names, model_settings, show_problem, task_choices
from studio.widgets import keep, kept, setting_input

store, manager = current()
defaults = RunConfig()
st.title("New run")
st.caption("Every setting has its valid range; a run starts only when all of them hold.")

tasks = task_choices()
left, right = st.columns(2)
first = kept("task", defaults.task)
if first not in tasks:  # typed here earlier, or a task the Data page handed over
    tasks[first] = first
task = keep("task", left.selectbox(
    "Task", list(tasks), index=list(tasks).index(first), format_func=lambda name: tasks.get(name, name), key="task",
    accept_new_options=True, help="a benchmark preset, a task generated or a CSV task saved on the Data page, or "
    "type a generated task's spec (rules:classes=3,attributes=6,relevant=2,...; its knobs on the Data page)"),
    defaults.task)
if is_rules_spec(task) and task not in generated_tasks():
    try:
        keep_generated_task(rules_spec(parse_rules_spec(task)))  # listed from now on, in every tab
    except IMLError as e:
        show_problem(f"{e}. Fix the spec, or build one on the Data page.")
agent = setting_input(right, "agent", defaults.agent, key="agent")
uses_model = AGENTS[agent].uses_model
model = model_settings() if uses_model else {}
try:
    advised = recommended(model.get("model", "")) if uses_model else None
except IMLError as e:  # a catalogue of one's own (IML_CATALOGUE) with a broken row: said, and not used
    show_problem(str(e), "warning")
    advised = None
# Every widget below starts from the settings measured to learn with this model. A widget those
# settings cover is keyed by the model too: Streamlit's browser side keeps a widget's value under its
# key, so only a widget of another key starts anew when the model (or the agent) changes.


def keyed(name: str) -> str:
    return f"{name}@{advised.model}" if advised is not None and name in advised.settings else name


if advised is not None:
    defaults = defaults.replace(**advised.settings)
    st.html(render.caption(f"Settings measured to learn with {advised.model} (the model catalogue's): "
                           f"{advised.flags}; {advised.measured}. Change any of them below."))

# Under a sweep, its own learners, momentum and accumulation values (below) are used, not these.
swept = "the sweep's values below are used" if st.session_state.get("sweep") else None
learner = setting_input(st, "learner", defaults.learner, key=keyed("learner"), disabled=bool(swept), help=swept)
left, middle, right = st.columns(3)
# Momentum shapes a revision: a learner that keeps the best-scoring rule instead (the bank) has none.
with_momentum = swept or "momentum" in LEARNERS[learner].settings
chosen = {name: setting_input(column, name, getattr(defaults, name), key=keyed(name), slider=True, disabled=bool(swept),
                              help=swept)
          for column, name in zip((left, middle), ("momentum", "accumulation"), strict=True)
          if name != "momentum" or with_momentum}
if not with_momentum:
    left.caption(f"No momentum: the {learner} learner keeps the rule that scores best rather than revising its "
                 "notes.")
chosen["learner"] = learner
for column, name in zip((right, left, middle, right, left, middle), ("batch_size", "steps", "eval_size", "eval_every",
                                                                     "max_note_words", "seed"), strict=True):
    chosen[name] = setting_input(column, name, getattr(defaults, name), key=keyed(name))
chosen["feedback"] = setting_input(right, "feedback", defaults.feedback, key="feedback", radio=True)
left, right = st.columns(2)
chosen["notes_form"] = setting_input(left, "notes_form", defaults.notes_form, key=keyed("notes_form"), radio=True)
chosen["apply"] = setting_input(right, "apply", defaults.apply, key=keyed("apply"), radio=True,
                                disabled=chosen["notes_form"] != "rule",
                                help=None if chosen["notes_form"] == "rule" else "needs notes form rule")
if chosen["notes_form"] != "rule":
    chosen["apply"] = RunConfig().apply  # the model reads notes in words, whatever a model was measured with
# Each learner's own settings, three to a row: six in one row cut their labels short.
learner_settings = [name for name in LEARNERS[learner].settings if name not in chosen]
for row in range(0, len(learner_settings), 3):
    for column, name in zip(st.columns(3), learner_settings[row:row + 3], strict=False):
        chosen[name] = setting_input(column, name, getattr(defaults, name), key=keyed(name))
if task in PRESETS:
    chosen["label_noise"] = setting_input(left, "label_noise", PRESETS[task].label_noise, key="label_noise",
                                          slider=True)

NO_MODEL = "No model is chosen yet: choose one on the Models page, then come back here."
if uses_model and model.get("model"):
    st.html(render.caption(f"Model: {model['model']}, run by {model.get('backend')}; change it on the Models page"))
    names = model_names(model["model"])
if uses_model:
    model["cache"] = setting_input(st, "cache", defaults.cache, key="use_cache")
    # Only a model reads a prompt; under a sweep, its own layouts (below) are used.
    advice = suggested_layout(model["model"]) if model.get("model") else None
    model["prompt_layout"] = setting_input(st, "prompt_layout", advice.layout if advice else defaults.prompt_layout,
                                           key=keyed("prompt_layout"), disabled=bool(swept), help=swept)
    if advice is not None:
        st.html(render.caption(f"Suggested for this model: the {advice.layout} layout, {advice.reason}."))
    if chosen["notes_form"] == "rule":
        model["rule_reading"] = setting_input(st, "rule_reading", defaults.rule_reading, key=keyed("rule_reading"),
                                              radio=True)
    backend = BACKENDS.get(model.get("backend", ""))
    sampling = ["temperature", *(backend.sampling if backend else ())]
    for column, name in zip(st.columns(3), sampling, strict=False):
        model[name] = setting_input(column, name, getattr(defaults, name), key=name)

with st.expander("Budget: stop a run before it spends more than..."):
    columns = st.columns(len(BUDGET_SETTINGS))
    chosen |= {name: setting_input(column, name, getattr(defaults, name), key=name)
               for column, name in zip(columns, BUDGET_SETTINGS, strict=True)}

base = RunConfig(task=task, agent=agent, **chosen, **model)
if uses_model and base.notes_form == "rule" and base.apply == "rule":
    evaluated = len({*range(0, base.steps + 1, base.eval_every), base.steps})
    calls = f"{evaluated * base.eval_size:,} model calls" + (
        ", times up to one a line of the list (stepwise)" if base.rule_reading == "stepwise" else "")
    st.caption(f"The lists are run by the engine; the model reads them once more at each of the {evaluated} "
               f"evaluated steps, for the paper's protocol beside: {calls}.")
if uses_model and model.get("model") and not base.problems():
    per_step = analysis.seconds_per_step(store.call_seconds(names), base)
    if per_step is None:
        st.caption("How long a step takes with this model is measured by its first run here.")
    else:
        st.caption(f"Earlier runs of this model here: about {per_step:,.1f} s per step, so about "
                   f"{per_step * base.steps / 60:,.1f} min for {base.steps} steps (the response cache can make "
                   "repeats faster).")

st.divider()
sweep = st.toggle("Sweep: a grid of momentum x accumulation x seeds", key="sweep")
if sweep:
    left, middle, right = st.columns(3)
    momenta = left.multiselect("Momentum values", [0.0, 0.25, 0.5, 0.75, 0.9, 1.0], [0.0, 0.5, 0.9],
                               key="sweep_momenta")
    accumulations = middle.multiselect("Accumulation values", [1, 2, 4, 8], [1, 4], key="sweep_accumulations")
    seed_count = right.number_input("Seeds per cell", 1, 20, 3, key="sweep_seeds",
                                    help="seeds start at the Seed above")
    limits = Submission(
        parallel=setting_input(left, "parallel", DEFAULT_SUBMISSION.parallel, key="sweep_parallel"),
        max_per_endpoint=setting_input(middle, "max_per_endpoint", DEFAULT_SUBMISSION.max_per_endpoint,
                                       key="sweep_per_endpoint") if uses_model else None,
        **{name: setting_input(column, name, None, key=name)
           for column, name in zip(st.columns(len(SWEEP_BUDGET_SETTINGS)), SWEEP_BUDGET_SETTINGS,
                                   strict=True)})
    layout = SETTINGS["prompt_layout"]
    layouts = st.multiselect("Prompt layouts", layout.values, [base.prompt_layout], format_func=layout.describe,
                             key="sweep_prompt_layouts", help=layout.help) if uses_model else [base.prompt_layout]
    learner = SETTINGS["learner"]
    learners = st.multiselect("Learners", learner.values, [base.learner], format_func=learner.describe,
                              key="sweep_learners", help=learner.help)
    configs = grid_configs(base, {"learner": learners, "prompt_layout": layouts, "momentum": momenta,
                                  "accumulation": accumulations, "seed": range(base.seed, base.seed + int(seed_count))})
else:
    configs, limits = [base], DEFAULT_SUBMISSION

if uses_model and not model.get("model"):
    problems = [NO_MODEL]  # the one thing to do first, in words, not the settings it leaves empty
else:
    problems = list(dict.fromkeys(itertools.chain.from_iterable(check_run(c) for c in configs[:1] + configs[-1:])))
if sweep and not configs:
    problems.append("pick at least one learner, one momentum and one accumulation value"
                    + (" and one prompt layout" if uses_model else ""))
for problem in problems:
    show_problem(problem)
# A model's curve means little without its floor and ceiling: computed beside its runs by default.
with_baselines = st.toggle("Baselines beside the runs: no notes, majority class, in-context, oracle, equal-token",
                           value=uses_model, key=f"with_baselines_{agent}",
                           help="scored on the run's eval split as it goes, and drawn on Live, Compare and the "
                                "report; each that asks the model costs one call per eval sample")
if uses_model and model.get("model") and configs:
    estimate_caption(configs, with_baselines=with_baselines)

saved_uri = (store.choice(MLFLOW) or {}).get("uri", "")
mlflow_uri = st.text_input("MLflow tracking URI (optional)", saved_uri, key="mlflow_uri",
                           placeholder="sqlite:///mlflow.db",
                           help="runs started here log to MLflow step by step: sqlite:///PATH/mlflow.db for a file "
                                "on this machine, or http://HOST:PORT for a tracking server; empty: no MLflow").strip()

if mlflow_uri and without_credentials(mlflow_uri) != mlflow_uri:  # the URI is saved: no secret in it
    problems.append("the MLflow tracking URI holds a user, a password or a query; give them in the environment "
                    "(MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD, MLFLOW_TRACKING_TOKEN) and the bare URI here")
    show_problem(problems[-1])
label = f"Queue {len(configs)} runs" if sweep else "Start run"
if st.button(label, type="primary", disabled=bool(problems), key="launch"):
    try:
        observer = mlflow_logger(mlflow_uri) if mlflow_uri else None
        if mlflow_uri != saved_uri:
            store.save_choice(MLFLOW, {"uri": mlflow_uri})
        run_ids = manager.submit(configs, study=store.new_study("sweep") if sweep else None, limits=limits,
                                 observer=observer)
        if with_baselines:
            manager.run_beside("baselines", evaluation.baselines_job(store, run_ids))
    except IMLError as e:
        show_problem(str(e))
    else:
        st.session_state[SELECTED] = run_ids
        st.success(f"Queued runs {run_ids[0]}–{run_ids[-1]}." if len(run_ids) > 1 else f"Run {run_ids[0]} started.")
        st.page_link("pages/live.py", label="Watch it on the Live page")
