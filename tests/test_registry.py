"""docs/ARCHITECTURE.md promises that a new backend is one new module and one row in
iml_core.registry.BACKENDS. This test keeps the promise: a toy backend (a stand-in written here,
named as such; it answers the first label and echoes the prefix) is registered with one row, and
the command line and the Models page offer it without another edit."""

from __future__ import annotations

import json
from pathlib import Path
from dataclasses import dataclass, field

import pytest
from streamlit.testing.v1 import AppTest

from iml_core.backends import Completion
from iml_core.registry import BACKENDS, BackendKind, default_backend
from studio.engine import engine

APP = "app.py"


@dataclass
class ToyBackend:
    """Not a model: the smallest thing that satisfies iml_core.backends.Backend."""
    model: str
    max_parallel: int = 1
    identity: dict = field(default_factory=dict)

    def __post_init__(self):
        self.description = f"toy backend {self.model}"
        self.identity = {"backend": "toy", "model": self.model}

    def label(self, messages, labels, *, temperature, seed, max_tokens, sentences=0) -> Completion:
        return Completion(labels[0], labels[0], tokens_in=3, tokens_out=1)

    def text(self, messages, *, temperature, seed, max_tokens, prefix="") -> Completion:
        return Completion("noted", prefix + "noted", tokens_in=5, tokens_out=1)

    def cost(self, tokens_in, tokens_out) -> float:
        return 0.0


TOY = BackendKind("toy", "In a toy: answers the first class, always", ("max_parallel",), (),
                  lambda config, on_retry: ToyBackend(config.model, max_parallel=config.max_parallel), "remote",
                  lambda model, base_url: model.startswith("toy:"), lambda base_url: ["toy:one", "toy:two"])


@pytest.fixture
def toy():
    # The one registry line, made here. First: rows are asked in order whether a --model is theirs,
    # and openai, the last, takes anything.
    shipped = dict(BACKENDS)
    BACKENDS.clear()
    BACKENDS.update({"toy": TOY, **shipped})
    yield TOY
    BACKENDS.clear()
    BACKENDS.update(shipped)


def test_a_registered_backend_runs_from_the_command_line(toy, tmp_path, capsys):
    from iml_core.cli import main
    from iml_core.store import Store

    assert default_backend("toy:one", "") == "toy"  # its own default rule
    db = tmp_path / "toy.duckdb"
    assert main(["run", "--model", "toy:one", "--steps", "2", "--eval-size", "5", "--batch-size", "4",
                 "--db", str(db), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with Store(db) as store:
        run = store.run(summary["run_id"])
        assert (run["status"], run["config"]["backend"], run["agent_description"]) == (
            "completed", "toy", "toy backend toy:one")
        assert {c["phase"] for c in store.model_calls(run["id"])} == {"infer", "induce", "revise", "eval"}


def test_a_registered_backend_is_offered_on_the_models_page_with_its_own_form(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("IML_DB", str(tmp_path / "dash.duckdb"))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / APP), default_timeout=60)
    at.run()
    at.switch_page("pages/models.py")
    at.run()
    where = at.radio(key="model_backend")
    assert TOY.where in where.options
    where.set_value("toy")
    at.run()
    assert not at.exception, at.exception
    assert at.number_input(key="model_max_parallel").value == 8  # its one setting, from its row
    at.button(key="model_list").click()
    at.run()
    assert at.selectbox(key="model_name_listed").options == ["toy:one", "toy:two"]  # its own listing
    engine(str(tmp_path / "dash.duckdb"))[1].join(timeout=60)
