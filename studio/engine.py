import os
from pathlib import Path

import streamlit as st

from iml_core import cluster
from iml_core.manager import RunManager
from iml_core.steps import local_steps
from iml_core.store import Store, database_path as resolved_database_path


def database_path() -> str:
    return str(resolved_database_path())


def tasks_dir() -> Path:
    """Where CSV tasks saved on the Data page go: beside the database, never into the checkout
    unless the database is there (data/tasks/, which git ignores)."""
    return Path(database_path()).resolve().parent / "tasks"


def key_from_secrets() -> None:
    """The engine reads OPENAI_API_KEY from the environment; a key kept in Streamlit secrets is put
    there (never into a setting, the database or the page)."""
    if os.environ.get("OPENAI_API_KEY"):
        return
    try:
        key = st.secrets.get("OPENAI_API_KEY")
    except Exception:  # no secrets file at all is the common case
        return
    if key:
        os.environ["OPENAI_API_KEY"] = str(key)


@st.cache_resource
def engine(db_path: str) -> tuple[Store, RunManager]:
    """One store and one run manager per server process and database file: runs started from any
    tab go on in its worker threads (commands run theirs beside them, on the same file: the store
    takes turns with them); with IML_RAY_ADDRESS set, those threads only wait for the steps
    computed on the Ray cluster and commit them."""
    key_from_secrets()
    store = Store(db_path)
    store.mark_interrupted()  # runs whose process has ended (a previous server, a killed command)
    address = cluster.ray_address()
    if not address:
        return store, RunManager(store, source=local_steps)
    source, capacity = cluster.on_cluster(address, cluster.resources_from_env())
    return store, RunManager(store, max_parallel=capacity, source=source)
