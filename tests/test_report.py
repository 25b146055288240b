"""The study report (iml_core.report): one HTML file that holds every section, shows model text
literally, draws its charts in Chromium with the network off, and is written by `iml report` and
offered by the dashboard."""

import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from iml_core import analysis, evaluation, ladder_results
from iml_core.cli import main
from iml_core.config import RunConfig
from iml_core.manager import RunManager
from iml_core.report import report_html, report_title, runs_of_study
from iml_core.store import Store
from iml_core.studies import ladder_study, paper_study

ROOT = Path(__file__).resolve().parent.parent
STUDY = "paper view 1: paper, offline rule learner"
HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(2)> <style>body { display: none }</style>"
HOSTILE_STUDY = "<script>alert(3)</script> study"
# The paper study's figures: the curves, the paper's two, the four settling maps, seconds by phase
# (the offline learner spends no tokens, so tokens and cost have none).
PAPER_FIGURES = 1 + 2 + 4 + 1


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    """A small paper study (18 offline runs of 3 steps) with its baselines, then a run whose notes
    and study name are hostile; the file is closed, for each test to open."""
    db = tmp_path_factory.mktemp("report") / "report.duckdb"
    with Store(db) as store:
        manager = RunManager(store)
        study = manager.submit(paper_study(RunConfig(steps=3, eval_size=30)), study=STUDY)
        manager.join(timeout=300)
        evaluation.baselines_job(store, study)()
        # Momentum 1 keeps the whole of the initial notes through every revision.
        hostile = manager.submit([RunConfig(steps=2, eval_size=20, momentum=1.0, initial_notes=HOSTILE)],
                                 study=HOSTILE_STUDY)
        manager.join(timeout=120)
    return db, study, hostile[0]


def sections(document: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="(\w+)">(.*?)</section>', document, re.S))


def figure_count(document: str) -> int:
    counted = document.count('class="plotly-graph-div"')
    assert f'<meta name="iml-figures" content="{counted}">' in document
    return counted


def test_a_paper_study_report_holds_every_section_and_fetches_nothing(study_db):
    db, study, _ = study_db
    with Store(db) as store:
        assert runs_of_study(store, STUDY) == study
        assert report_title(store, study) == STUDY
        document = report_html(store, study, STUDY)
        runs = store.runs_frame()
        runs = runs[runs["id"].isin(study)]
        steps = store.steps_frame(study)
        best = int(runs.sort_values(["final_eval_accuracy", "best_eval_accuracy", "id"],
                                    ascending=[False, False, True]).iloc[0]["id"])
        best_steps = store.steps(best)
    parts = sections(document)
    assert list(parts) == ["settings", "accuracy", "final", "paper", "maps", "alarms", "cost", "notes"]

    # plotly.js once, inline; then one script per figure and nothing else that runs or loads.
    assert document.count(get_plotlyjs()) == 1
    assert figure_count(document) == PAPER_FIGURES
    assert document.count("<script") == 1 + PAPER_FIGURES
    rest = document.replace(get_plotlyjs(), "")
    assert not re.search(r"https?:|@import|url\(|\bsrc\s*=", rest, re.I)
    assert "default-src 'none'" in document and str(db) in document

    settings = parts["settings"]
    assert "What differs between the runs: <b>accumulation, momentum, seed</b>" in settings
    assert "<b>task</b> paper" in settings and "temperature" not in settings  # no model, no model settings
    assert settings.count("<tr>") == 1 + 18

    assert "no notes (floor)" in parts["accuracy"] and "oracle notes (ceiling)" in parts["accuracy"]
    final = analysis.final_accuracy_by_cell(runs)
    assert parts["final"].count("<tr>") == 1 + len(final) == 7
    for row in final.itertuples():
        assert f"{100 * row.mean:.1f}%" in parts["final"]
    assert "Eval accuracy by momentum" in parts["paper"] and "Eval accuracy by accumulation" in parts["paper"]
    assert "Final eval accuracy" in parts["maps"] and "Steps to reach 95% of the final accuracy" in parts["maps"]

    found = analysis.alarms(steps, frozenset(study))
    assert (parts["alarms"].count("<tr>") == 1 + len(found)) if len(found) else "No alarms" in parts["alarms"]
    for phase in ("inference", "induction", "revision", "evaluation"):
        assert f"<td>{phase}</td>" in parts["cost"]
    assert "Seconds by phase" in parts["cost"] and "No model calls" in parts["cost"]

    notes = parts["notes"]
    assert f"Run {best} (" in notes and f"after step {best_steps[-1]['step']}" in notes
    assert 'data-view="inline"' in notes and html.escape(best_steps[-1]["notes"]) in notes


def test_model_and_user_text_is_shown_literally_and_runs_nothing(study_db):
    db, _, hostile = study_db
    with Store(db) as store:
        assert report_title(store, [hostile]) == HOSTILE_STUDY
        document = report_html(store, [hostile], "<script>alert(4)</script> report")
    lowered = document.lower()
    assert "<script>alert" not in lowered and "<img src=x" not in lowered and "<style>body" not in lowered
    assert document.count("<script") == 1 + figure_count(document)
    parts = sections(document)
    assert html.escape(HOSTILE) in parts["notes"]  # the notes, whole and escaped
    assert html.escape(HOSTILE[:40]) in parts["settings"]  # the initial notes, cut short among the settings
    assert "<title>&lt;script&gt;alert(4)&lt;/script&gt; report</title>" in document
    assert html.escape(HOSTILE_STUDY) in document
    assert "paper" not in parts and "maps" not in parts and "ladder" not in parts


def test_a_ladder_study_report_has_the_ladder_and_the_ladder_page_offers_it(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from studio.engine import engine

    db = tmp_path / "ladder.duckdb"
    with Store(db) as store:
        manager = RunManager(store)
        run_ids = manager.submit(ladder_study(RunConfig(steps=2, eval_size=30), seeds=2, rungs=[1, 2]),
                                 study="ladder 1: offline")
        manager.join(timeout=120)
        evaluation.baselines_job(store, run_ids)()
        document = report_html(store, run_ids, "ladder 1: offline")
        table = ladder_results.ladder_table(store.runs_frame(), store.baselines(run_ids))
    parts = sections(document)
    assert "ladder" in parts and "paper" not in parts
    ladder = parts["ladder"]
    assert html.escape(ladder_results.ladder_verdict(table)) in ladder
    assert "Accuracy up the ladder" in ladder and ladder.count("<tr>") == 1 + 2
    assert "What differs between the runs: <b>task, seed</b>" in parts["settings"]
    assert "<th>rung</th>" in parts["final"] and parts["final"].count("<tr>") == 1 + 2  # seeds are one rung's repeats

    monkeypatch.setenv("IML_DB", str(db))
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.run()
        at.switch_page("pages/ladder.py")
        at.run()
        assert not at.exception, at.exception
        assert [b.proto.label for b in at.get("download_button")] == ["Download the report of 4 runs (HTML)"]
    finally:
        engine(str(db))[1].join(timeout=60)


def iml(*args):
    return subprocess.run([sys.executable, "-m", "iml_core", *map(str, args)], capture_output=True, text=True)


def test_iml_report_writes_the_file_of_a_study_or_of_runs(study_db, tmp_path):
    db, study, hostile = study_db
    out = tmp_path / "study.html"
    result = iml("report", "--study", STUDY, "--out", out, "--db", db)
    assert result.returncode == 0, result.stderr
    assert f"{out}: 18 runs" in result.stdout
    document = out.read_text(encoding="utf-8")
    assert document.startswith("<!DOCTYPE html>") and f"<title>{html.escape(STUDY)}</title>" in document
    assert figure_count(document) == PAPER_FIGURES

    runs = tmp_path / "runs.html"
    assert main(["report", str(study[0]), str(hostile), "--out", str(runs), "--db", str(db)]) == 0
    assert f"<title>Runs {study[0]}, {hostile}</title>" in runs.read_text(encoding="utf-8")


@pytest.mark.parametrize("args, problem", [
    (["999", "--out", "{tmp}/r.html"], "there is no run 999 in"),
    (["--study", "nope", "--out", "{tmp}/r.html"], f"there is no study 'nope' in {{db}}; the studies are: "
                                                   f"{HOSTILE_STUDY}, {STUDY}"),
    (["--out", "{tmp}/r.html"], "name the runs to report on"),
    (["1"], "the following arguments are required: --out"),
    (["1", "--out", "{tmp}/missing/r.html"], "the folder {tmp}/missing does not exist"),
    (["1", "--out", "{tmp}"], "--out {tmp} is a folder"),
])
def test_iml_report_refuses_bad_input_in_one_line(study_db, tmp_path, capsys, args, problem):
    db = study_db[0]
    fill = {"tmp": tmp_path, "db": db}
    assert main(["report", *(a.format(**fill) for a in args), "--db", str(db)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("iml: error: ") and problem.format(**fill) in error and error.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_compare_and_the_paper_view_offer_the_report(study_db, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from studio.engine import engine

    db = tmp_path / "dash.duckdb"
    shutil.copy(study_db[0], db)
    monkeypatch.setenv("IML_DB", str(db))
    try:
        for page, label in (("pages/compare.py", "Download the report of 19 runs (HTML)"),
                            ("pages/paper.py", "Download the report of 18 runs (HTML)")):
            at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
            at.run()
            at.switch_page(page)
            at.run()
            assert not at.exception, at.exception
            assert [b.proto.label for b in at.get("download_button")] == [label], page
    finally:
        engine(str(db))[1].join(timeout=60)


@pytest.mark.browser
def test_the_report_draws_every_chart_in_chromium_with_the_network_off(study_db, tmp_path):
    from test_browser import chromium

    db, study, hostile = study_db
    with Store(db) as store:
        (tmp_path / "study.html").write_text(report_html(store, study, STUDY), encoding="utf-8")
        (tmp_path / "hostile.html").write_text(report_html(store, [hostile], "hostile"), encoding="utf-8")
    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        fetched, errors, dialogs = [], [], []
        # Every request but the file itself is recorded and refused: the report must need none.
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://")
                   else (fetched.append(route.request.url), route.abort()))
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

        page.goto((tmp_path / "study.html").as_uri())
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {PAPER_FIGURES}",
                               timeout=30_000)
        drawn = page.evaluate("""() => [...document.querySelectorAll('.plotly-graph-div')].map(plot => ({
            traces: (plot._fullData || []).length, svg: plot.querySelectorAll('.main-svg').length,
            marks: plot.querySelectorAll('.trace, .hm').length, height: plot.getBoundingClientRect().height}))""")
        assert len(drawn) == PAPER_FIGURES
        assert all(d["traces"] and d["svg"] and d["marks"] and d["height"] > 200 for d in drawn), drawn
        page.screenshot(path=tmp_path / "study.png", full_page=True)

        page.goto((tmp_path / "hostile.html").as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length > 0", timeout=30_000)
        assert HOSTILE in page.locator("#notes .iml-text").last.inner_text()
        assert page.locator("main").is_visible()  # the notes' <style> hid nothing
    assert fetched == [] and errors == [] and dialogs == []
