import os
import time

import streamlit as st

from iml_core.config import SETTINGS, STRUCTURED_OUTPUT, RunConfig
from iml_core.errors import UserError
from iml_core.runner import build_backend
from studio import render
from studio.ui import MODEL, model_settings, show_problem

st.title("Models")
st.subheader("Offline rule learner (no LLM)")
st.write("Ready on every machine: a counting algorithm that writes its notes in plain English and reads "
         "them back. It calls no model and costs no tokens.")

st.subheader("Language model")
saved = model_settings()
defaults = RunConfig()
backends = {"llama-cpp": "llama.cpp: a GGUF file on this machine", "openai": "OpenAI-compatible server"}
backend = st.radio("Backend", list(backends), format_func=backends.get, key="model_backend",
                   index=list(backends).index(saved.get("backend", "llama-cpp")))


def number(column, name, value, step=None):
    setting = SETTINGS[name]
    return column.number_input(name.replace("_", " ").capitalize(), value=value, step=step, key=f"model_{name}",
                               help=f"{setting.help} ({setting.low} to {setting.high})")


left, right = st.columns(2)
settings = {"backend": backend}
if backend == "llama-cpp":
    settings["model"] = left.text_input("GGUF path", saved.get("model", ""), key="model_path",
                                        help="e.g. models/llama-2-70b-chat.Q4_K_M.gguf")
    settings["n_gpu_layers"] = int(number(right, "n_gpu_layers", saved.get("n_gpu_layers", defaults.n_gpu_layers), 1))
    settings["n_ctx"] = int(number(left, "n_ctx", saved.get("n_ctx", defaults.n_ctx), 256))
    settings["chat_format"] = right.text_input("Chat format override", saved.get("chat_format", ""),
                                               key="model_chat_format",
                                               help="empty: the template inside the GGUF; llama-2 etc. for old files")
else:
    settings["base_url"] = left.text_input("Base URL", saved.get("base_url", ""), key="model_base_url",
                                           help="empty for OpenAI; e.g. http://127.0.0.1:8000/v1 for vLLM")
    settings["model"] = right.text_input("Model name", saved.get("model", ""), key="model_name")
    settings["max_parallel"] = int(number(left, "max_parallel", saved.get("max_parallel", defaults.max_parallel), 1))
    settings["structured_output"] = right.selectbox("Structured output", STRUCTURED_OUTPUT, key="model_structured",
                                                    help="auto: json_schema if the server takes it, else json_object")
    settings["price_in"] = float(number(left, "price_in", saved.get("price_in", defaults.price_in)))
    settings["price_out"] = float(number(right, "price_out", saved.get("price_out", defaults.price_out)))
    has_key = bool(os.environ.get("OPENAI_API_KEY"))
    st.write(f"API key: {'present' if has_key else 'absent'} (from `OPENAI_API_KEY` or Streamlit secrets; "
             "never shown, stored or logged).")
settings["temperature"] = float(number(left, "temperature", saved.get("temperature", defaults.temperature), 0.1))
st.session_state[MODEL] = settings

problems = RunConfig(agent="llm", **settings).problems()
for problem in problems:
    show_problem(problem)
if st.button("Test: one real call", disabled=bool(problems), key="model_test"):
    with st.spinner("Loading the model and asking it once..."):
        try:
            model = build_backend(RunConfig(agent="llm", **settings))
            started = time.perf_counter()
            out = model.label([{"role": "user", "content": "Answer yes or no: is the sky blue?"}], ["yes", "no"],
                              temperature=0.0, seed=0, max_tokens=8)
            latency = time.perf_counter() - started
        except UserError as e:
            show_problem(str(e))
        else:
            st.success(f"{model.description} answered in {latency:.2f} s "
                       f"({out.tokens_in} tokens in, {out.tokens_out} out).")
            st.html(render.escaped_block(f"Answer: {out.raw}"))
