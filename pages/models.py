import os

import streamlit as st

st.title("Models")
st.subheader("Offline rule learner (no LLM)")
st.write("Ready on every machine: a counting algorithm that writes its notes in plain English and reads "
         "them back. It calls no model, costs no tokens, and is labelled as a rule learner wherever it appears.")

st.subheader("Language models")
st.write("A llama.cpp GGUF model or an OpenAI-compatible endpoint becomes one more agent on the New run "
         "page once its backend is configured here. This build has no LLM backend yet.")
has_key = bool(os.environ.get("OPENAI_API_KEY"))
st.write(f"OpenAI-compatible key in the environment (`OPENAI_API_KEY`): {'present' if has_key else 'absent'}. "
         "The key itself is never shown, stored or logged.")
