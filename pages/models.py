import os

import pandas as pd
import streamlit as st

from iml_core import llama_build, render
from iml_core.registry import BACKENDS, model_agent
from iml_core.config import RunConfig
from iml_core.errors import IMLError
from iml_core.models import STARTER_DOWNLOAD_MB, STARTER_NAME, install_starter_model
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


@st.fragment(run_every=2)
def build_status() -> None:
    """llama.cpp for this machine: ready, being built (with its progress), or not yet."""
    build = llama_build.current_build()
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


if runs_here:
    build_status()
    found = models_here()
    starter = next((m for m in found if m.name == STARTER_NAME), None)
    if starter is None:
        st.info(f"**The starter model is not installed.** SmolLM2-135M-Instruct ({STARTER_DOWNLOAD_MB} MB) is a "
                "real chat model small enough for any CPU: it lets you try the whole LLM path here, from "
                "inference to revised notes, in minutes. It is too small to learn the benchmark; for that, "
                "use a larger model on a GPU.")
        if st.button(f"Install the starter model ({STARTER_DOWNLOAD_MB} MB)", key="install_starter"):
            with st.status("Installing the starter model...", expanded=True) as status:
                try:
                    for line in install_starter_model():
                        st.text(line)
                except IMLError as e:
                    status.update(label="The starter model was not installed", state="error")
                    show_problem(str(e))
                else:
                    status.update(label="The starter model is installed", state="complete")
                    models_here.clear()
                    st.rerun()
    else:
        st.caption(f"The starter model (`{STARTER_NAME}`: SmolLM2-135M-Instruct, {starter.parameters_text} "
                   "parameters) is here for trying the LLM path on any CPU. It is too small to learn the "
                   "benchmark: even with the true rules written as notes it answers one class.")

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
