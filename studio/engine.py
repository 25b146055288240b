import os

import streamlit as st

from iml_core.runner import RunManager
from iml_core.store import DEFAULT_DB, Store


def database_path() -> str:
    return os.environ.get("IML_DB") or str(DEFAULT_DB)


@st.cache_resource
def engine(db_path: str) -> tuple[Store, RunManager]:
    """One store and one run manager per server process and database file: this process owns
    the file, and runs started from any tab go on in its worker threads."""
    store = Store(db_path)
    store.mark_interrupted()  # whatever a previous server left running is not running any more
    return store, RunManager(store)
