import itertools

import streamlit as st

from iml_core.backends import BACKENDS
from iml_core.config import FEEDBACK_MODES, SETTINGS, RunConfig
from iml_core.errors import IMLError
from iml_core.runner import DEFAULT_PARALLEL, check_run, grid_configs
from iml_core.tasks import PRESETS, saved_tasks
from studio import render
from studio.ui import SELECTED, current, model_settings, show_problem

store, manager = current()
defaults = RunConfig()
st.title("New run")
st.caption("Every setting has its valid range; a run starts only when all of them hold.")

tasks = {name: f"{name} (preset)" for name in PRESETS} | {str(p): f"{p.stem} (CSV)" for p in saved_tasks()}
left, right = st.columns(2)
task = left.selectbox("Task", list(tasks), format_func=tasks.get, key="task",
                      help="a benchmark preset, or a CSV task saved on the Data page")
agents = {"offline": "Offline rule learner (no LLM)", "llm": "LLM (llama.cpp or OpenAI-compatible)"}
agent = right.selectbox("Agent", list(agents), format_func=agents.get, key="agent",
                        help="the rule learner counts traits; an LLM agent uses the model set on the Models page")


def slider(column, name, step=1):
    """A slider over the setting's whole valid range (SETTINGS), starting at its default."""
    setting = SETTINGS[name]
    kind = type(getattr(defaults, name))
    return column.slider(name.replace("_", " ").capitalize(), kind(setting.low), kind(setting.high),
                         getattr(defaults, name), step, key=name,
                         help=f"{setting.help} (valid: {setting.low} to {setting.high})")


left, middle, right = st.columns(3)
momentum = slider(left, "momentum", 0.05)
accumulation = slider(middle, "accumulation")
batch_size = slider(right, "batch_size")
steps = left.number_input("Steps", value=defaults.steps, step=1, key="steps", help=SETTINGS["steps"].help)
eval_size = middle.number_input("Eval size", value=defaults.eval_size, step=10, key="eval_size",
                                help=SETTINGS["eval_size"].help)
eval_every = right.number_input("Eval every", value=defaults.eval_every, step=1, key="eval_every",
                                help=SETTINGS["eval_every"].help)
max_note_words = left.number_input("Max note words", value=defaults.max_note_words, step=10, key="max_note_words",
                                   help=SETTINGS["max_note_words"].help)
seed = middle.number_input("Seed", value=defaults.seed, step=1, key="seed", help=SETTINGS["seed"].help)
feedback = right.radio("Feedback", FEEDBACK_MODES, horizontal=True, key="feedback",
                       help="label: the environment names the right class; binary: only right or wrong")
label_noise = None
if task in PRESETS:
    label_noise = left.slider("Label noise", 0.0, 0.5, PRESETS[task].label_noise, 0.05, key="label_noise",
                              help="share of the preset's labels replaced by a wrong class")

model = model_settings() if agent == "llm" else {}
NO_MODEL = "No model is chosen yet: choose one on the Models page, then come back here."
if agent == "llm" and model.get("model"):
    st.html(render.caption(f"Model: {model['model']}, run by {model.get('backend')}; change it on the Models page"))
if agent == "llm":
    use_cache = st.checkbox("Answer repeated calls from the response cache", True, key="use_cache",
                            help="a repeated identical call costs nothing; switch off to measure the model afresh")
    model["cache"] = use_cache
    backend = BACKENDS.get(model.get("backend", ""))
    sampling = ["temperature", *(backend.sampling if backend else ())]
    for column, name in zip(st.columns(3), sampling, strict=False):
        setting = SETTINGS[name]
        model[name] = float(column.number_input(
            name.replace("_", " ").capitalize(), float(setting.low), float(setting.high),
            float(getattr(defaults, name)), 0.05, key=name,
            help=f"{setting.help} (valid: {setting.low} to {setting.high})"))

base = RunConfig(task=task, agent=agent, momentum=float(momentum), accumulation=int(accumulation),
                 batch_size=int(batch_size), steps=int(steps), eval_size=int(eval_size), eval_every=int(eval_every),
                 max_note_words=int(max_note_words), seed=int(seed), feedback=feedback, label_noise=label_noise,
                 **model)

st.divider()
sweep = st.toggle("Sweep: a grid of momentum x accumulation x seeds", key="sweep")
if sweep:
    left, middle, right = st.columns(3)
    momenta = left.multiselect("Momentum values", [0.0, 0.25, 0.5, 0.75, 0.9, 1.0], [0.0, 0.5, 0.9],
                               key="sweep_momenta")
    accumulations = middle.multiselect("Accumulation values", [1, 2, 4, 8], [1, 4], key="sweep_accumulations")
    seed_count = right.number_input("Seeds per cell", 1, 20, 3, key="sweep_seeds",
                                    help="seeds start at the Seed above")
    parallel = left.number_input("Runs at once", 1, 64, DEFAULT_PARALLEL, key="sweep_parallel",
                                 help="queued runs wait until fewer than this many are running")
    per_endpoint = None
    if agent == "llm":
        per_endpoint = middle.number_input("At most at once per model server", 1, 64, 4,
                                           key="sweep_per_endpoint",
                                           help="runs calling the same server wait beyond this, so a sweep "
                                                "cannot flood it")
    configs = grid_configs(base, {"momentum": momenta, "accumulation": accumulations,
                                  "seed": range(int(seed), int(seed) + int(seed_count))})
else:
    configs = [base]

if agent == "llm" and not model.get("model"):
    problems = [NO_MODEL]  # the one thing to do first, in words, not the settings it leaves empty
else:
    problems = list(dict.fromkeys(itertools.chain.from_iterable(check_run(c) for c in configs[:1] + configs[-1:])))
if sweep and not configs:
    problems.append("pick at least one momentum and one accumulation value")
for problem in problems:
    show_problem(problem)

label = f"Queue {len(configs)} runs" if sweep else "Start run"
if st.button(label, type="primary", disabled=bool(problems), key="launch"):
    try:
        limits = dict(parallel=int(parallel), max_per_endpoint=None if per_endpoint is None else int(per_endpoint)) \
            if sweep else {}
        run_ids = manager.submit(configs, study=store.new_study("sweep") if sweep else None, **limits)
    except IMLError as e:
        show_problem(str(e))
    else:
        st.session_state[SELECTED] = run_ids
        st.success(f"Queued runs {run_ids[0]}–{run_ids[-1]}." if len(run_ids) > 1 else f"Run {run_ids[0]} started.")
        st.page_link("pages/live.py", label="Watch it on the Live page")
