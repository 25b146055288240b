"""IML Studio: the dashboard's entry point. Pages only lay out widgets and call iml_core; runs
execute in worker threads of this server process, which shares the DuckDB file with the command line
(docs/ARCHITECTURE.md §4)."""

import streamlit as st

from iml_core.errors import IMLError
from studio.engine import database_path, engine
from studio.ui import show_problem

st.set_page_config(page_title="IML Studio", layout="wide")

try:
    engine(database_path())
except IMLError as e:
    show_problem(str(e))
    st.stop()

page = st.navigation([
    st.Page("pages/new_run.py", title="New run", default=True),
    st.Page("pages/live.py", title="Live"),
    st.Page("pages/runs.py", title="Runs"),
    st.Page("pages/notes.py", title="Notes"),
    st.Page("pages/compare.py", title="Compare"),
    st.Page("pages/paper.py", title="Paper view"),
    st.Page("pages/ladder.py", title="Ladder"),
    st.Page("pages/data.py", title="Data"),
    st.Page("pages/models.py", title="Models"),
])
st.sidebar.caption("In-Memory Learning (arXiv 2403.02757): a language model learns a task by writing and "
                   "revising notes, not by changing its weights.")
st.sidebar.caption(f"Database: {database_path()}")
page.run()
