from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio.engine import engine

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture
def app(tmp_path, monkeypatch):
    # st.cache_resource is shared by every AppTest in this process: each test gets its own file.
    db = str(tmp_path / "app.duckdb")
    monkeypatch.setenv("IML_DB", db)
    yield AppTest.from_file(APP, default_timeout=30), db
    # A run thread still inside DuckDB when the interpreter exits aborts it: join them all.
    engine(db)[1].join(timeout=60)


def test_empty_database_renders_and_invites_a_first_run(app):
    at, _ = app
    at.run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)


def test_start_run_button_starts_an_offline_run_whose_steps_are_stored(app):
    at, db = app
    at.run()
    at.slider(key="momentum").set_value(0.9)
    at.number_input(key="steps").set_value(3)
    at.button[0].click()
    at.run()
    assert not at.exception
    assert any("Run 1 started" in s.value for s in at.success)
    store, manager = engine(db)
    manager.join(timeout=30)
    run = store.run(1)
    assert run["status"] == "completed" and run["config"]["momentum"] == 0.9
    assert [s["step"] for s in store.steps(1)] == [0, 1, 2, 3]
    at.run()
    assert at.dataframe[0].value["status"].tolist() == ["completed"]
