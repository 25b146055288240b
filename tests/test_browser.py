"""The dashboard in a real browser: `streamlit run` on a free local port, driven by Debian's
chromium through Playwright (executable_path: no browser is ever downloaded)."""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from iml_core.config import RunConfig
from iml_core.registry import AGENTS
from iml_core.runner import create_run, execute_run
from iml_core.store import Store

from conftest import free_port, wait_until_answers

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = "<script>alert('x')</script> <img src=x onerror=alert(1)> [click](javascript:alert(2)) :red[red]"


@contextlib.contextmanager
def dashboard(db: Path, tmp_path: Path, env: dict | None = None):
    """`streamlit run` on a free port over `db` (with `env` added to the environment); on the way out,
    the server log must hold no traceback."""
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env={**os.environ, "IML_DB": str(db), **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answers(f"{url}/_stcore/health", process, "streamlit", log_path)
            yield url
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    server_log = log_path.read_text()
    assert "Traceback" not in server_log and "Error" not in server_log, server_log


@pytest.fixture
def server(tmp_path):
    db = tmp_path / "browser.duckdb"
    # A finished run whose notes are hostile, written before the server takes the file.
    with Store(db) as store:
        execute_run(store, create_run(store, RunConfig(steps=2, eval_size=20, momentum=1.0, initial_notes=HOSTILE)))
    with dashboard(db, tmp_path) as url:
        yield url, tmp_path


@contextlib.contextmanager
def chromium():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(server):
    url, tmp_path = server
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.dialogs, page.console_errors = [], []
        page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
        page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
        page.set_default_timeout(30_000)
        yield page, url, tmp_path


def wait_idle(page, timeout: float = 60_000) -> None:
    """Until the app has finished its rerun: Streamlit marks the app `notRunning` between reruns.
    Input sent while a rerun is in flight can be superseded by it, so every action waits first."""
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning",
                                                            timeout=timeout)


def nav(page, title):
    """Open a page from the sidebar once the app is idle."""
    wait_idle(page)
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    expect(page.get_by_role("heading", name=title).first).to_be_visible(timeout=30_000)


def test_start_a_run_watch_it_learn_and_read_its_diff(page):
    page, url, tmp_path = page
    page.goto(url)
    expect(page.get_by_role("heading", name="New run")).to_be_visible()
    # Momentum 0: the rule learner restates its notes each step, so the diff has deletions too.
    momentum = page.get_by_role("slider", name="Momentum")
    wait_idle(page)
    momentum.focus()
    momentum.press("Home")
    expect(momentum).to_have_value("0")
    wait_idle(page)  # the slider reruns the page on release; the click waits for that to land
    page.screenshot(path=tmp_path / "new_run.png", full_page=True)
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_text("Run 2 started.")).to_be_visible()
    wait_idle(page)

    nav(page, "Live")
    progress = page.get_by_text(re.compile(r"step (\d+) of 30"))
    expect(progress.first).to_be_visible()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        points = page.evaluate(
            "() => Math.max(0, ...Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".flatMap(p => (p.calcdata || []).map(t => t.filter(pt => Number.isFinite(pt.x)).length)))")
        if points >= 5:
            break
        time.sleep(0.5)
    assert points >= 5, f"the Live chart drew {points} points within 60 s, not 5"
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible()
    page.screenshot(path=tmp_path / "live.png", full_page=True)

    nav(page, "Notes")
    expect(page.locator("ins").first).to_be_attached()
    expect(page.locator("del").first).to_be_attached()
    assert page.locator("ins").count() > 0 and page.locator("del").count() > 0
    page.screenshot(path=tmp_path / "notes.png", full_page=True)

    for title in ("Runs", "Compare", "Data", "Models"):
        nav(page, title)
        page.screenshot(path=tmp_path / f"{title.lower()}.png", full_page=True)
    assert page.dialogs == []


def test_hostile_notes_show_as_literal_text_and_run_nothing(page):
    page, url, tmp_path = page
    page.goto(url)
    nav(page, "Notes")
    expect(page.get_by_text("<script>alert('x')</script>", exact=False).first).to_be_visible()
    expect(page.get_by_text("[click](javascript:alert(2))", exact=False).first).to_be_visible()
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    page.wait_for_timeout(500)
    assert page.dialogs == [] and page.console_errors == []
    page.screenshot(path=tmp_path / "hostile.png", full_page=True)


def upload(page, name: str, data: bytes) -> None:
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        {"name": name, "mimeType": "text/csv", "buffer": data})


def test_bad_and_hostile_csv_uploads_are_explained_and_shown_literally(page):
    page, url, tmp_path = page
    page.goto(url)
    nav(page, "Data")
    wait_idle(page)
    page.get_by_role("tab", name="Your CSV").click()

    upload(page, "ragged.csv", b"colour,label\nred,a\nblue,b,extra\n")
    expect(page.get_by_role("alert").filter(has_text="row 3 of ragged.csv has 3 cells but the header has 2")
           ).to_be_visible()
    expect(page.get_by_text("Nothing was saved.", exact=False).first).to_be_visible()

    upload(page, "huge.csv", b"colour,label\n" + b"red,a\n" * (21 * 1024 * 1024 // 6))
    expect(page.get_by_text("File must be 20.0MB or smaller", exact=False).first).to_be_visible()

    hostile = (f'colour,label\n"{HOSTILE}",a\n"=HYPERLINK(""http://x"")",b\nred,a\n').encode()
    upload(page, "hostile.csv", hostile)
    expect(page.get_by_role("alert").filter(has_text="look like spreadsheet formulas")).to_be_visible()
    expect(page.get_by_text("<script>alert('x')</script>", exact=False).first).to_be_visible()
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    page.wait_for_timeout(500)
    assert page.dialogs == [] and page.console_errors == []
    page.screenshot(path=tmp_path / "uploads.png", full_page=True)


SOAK_SECONDS = float(os.environ.get("IML_SOAK_SECONDS", "45"))  # the ten minutes: IML_SOAK_SECONDS=600


@pytest.mark.timeout(SOAK_SECONDS + 900)  # the soak itself, then the default's 15 minutes for the rest
def test_four_runs_at_once_and_four_tabs_store_every_step_exactly_once(tmp_path):
    db = tmp_path / "soak.duckdb"
    launched = 0
    with dashboard(db, tmp_path) as url, chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        tabs, dialogs, console_errors = [context.new_page() for _ in range(4)], [], []
        for tab in tabs:
            tab.set_default_timeout(30_000)
            tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            tab.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
            tab.goto(url)
        launcher, watchers = tabs[0], tabs[1:]
        expect(launcher.get_by_role("heading", name="New run")).to_be_visible()
        wait_idle(launcher)
        launcher.get_by_text("Sweep: a grid").click()
        runs_at_once = launcher.get_by_role("spinbutton", name="Runs at once")
        wait_idle(launcher)
        runs_at_once.fill("4")
        runs_at_once.press("Enter")
        expect(launcher.get_by_role("button", name="Queue 18 runs")).to_be_enabled()

        views, turn, next_launch = ["Live", "Runs", "Compare", "Notes"], 0, 0.0
        deadline = time.monotonic() + SOAK_SECONDS
        while time.monotonic() < deadline:
            if time.monotonic() >= next_launch:  # a sweep of 18 runs, 4 at once, every 20 s
                wait_idle(launcher)
                launcher.get_by_role("button", name="Queue 18 runs").click()
                expect(launcher.get_by_text(re.compile(r"Queued runs \d+–\d+\.")).first).to_be_visible()
                launched += 18
                next_launch = time.monotonic() + 20
            for i, tab in enumerate(watchers):
                nav(tab, views[(turn + i) % len(views)])
            turn += 1
        nav(watchers[0], "Live")
        # Exactly 0: "10 run(s) going" holds "0 run(s) going" too.
        expect(watchers[0].get_by_text(re.compile(r"^0 run\(s\) going"))).to_be_visible(timeout=600_000)
        assert dialogs == [] and console_errors == [], (dialogs, console_errors)

    with Store(db) as store:  # the server has stopped and let go of the file
        runs = store.runs()
        assert len(runs) == launched and {r["status"] for r in runs} == {"completed"}
        for run in runs:
            config = RunConfig.from_dict(store.run(run["id"])["config"])
            assert [s["step"] for s in store.steps(run["id"])] == list(range(config.steps + 1))
        with store.held() as cursor:
            assert cursor.execute("""SELECT count(*) FROM (SELECT run_id, step, phase, minibatch, sample_id
                                     FROM predictions GROUP BY ALL HAVING count(*) > 1)""").fetchone()[0] == 0
        for run in runs:
            config = RunConfig.from_dict(store.run(run["id"])["config"])
            evals = len(range(0, config.steps + 1, config.eval_every)) + (config.steps % config.eval_every != 0)
            expected = evals * config.eval_size + config.steps * config.accumulation * config.batch_size
            assert len(store.predictions(run["id"])) == expected
            assert len(cursor.execute("SELECT * FROM batch_notes WHERE run_id = ?", [run["id"]]).fetchall()) == \
                config.steps * config.accumulation


def choose_option(page, label: str, option: str) -> None:
    """Picks an option of a Streamlit selectbox by its label, as a person would: open, type, Enter."""
    wait_idle(page)
    box = page.get_by_role("combobox", name=label)
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option).first.click()
    wait_idle(page)


def new_run_with(page, url: str, model: str) -> None:
    """The model chosen on Models, then New run with the LLM agent."""
    page.goto(url)
    nav(page, "Models")
    choose_option(page, "Model", model)
    wait_idle(page)
    nav(page, "New run")
    choose_option(page, "Agent", AGENTS["llm"].label)


def set_baselines_beside(page, on: bool) -> None:
    """New run's switch for the baselines beside a run (on by default for a model's runs)."""
    wait_idle(page)
    switch = page.get_by_role("switch", name=re.compile("^Baselines beside the runs"))
    if switch.is_checked() != on:
        switch.locator("xpath=ancestor::label").click()
    wait_idle(page)
    expect(switch).to_be_checked(checked=on)


def test_a_chosen_model_survives_a_reload_and_a_new_tab(page, tiny_model):
    page, url, tmp_path = page
    page.goto(url)
    nav(page, "Models")
    choose_option(page, "Model", "Another GGUF file...")
    path = page.get_by_role("textbox", name="Path of the GGUF file")
    path.fill(str(tiny_model))
    path.press("Enter")
    wait_idle(page)
    expect(page.get_by_role("button", name="Test: one real call")).to_be_enabled()

    missing = []
    page.on("response", lambda response: response.status == 404 and missing.append(response.url))
    page.reload()  # the same tab reloaded (still on Models), then a second tab
    expect(page.get_by_role("textbox", name="Path of the GGUF file")).to_have_value(str(tiny_model))
    nav(page, "New run")
    second = page.context.new_page()
    second.goto(url)
    for view in (page, second):
        expect(view.get_by_role("heading", name="New run")).to_be_visible()
        choose_option(view, "Agent", AGENTS["llm"].label)
        expect(view.get_by_text(f"Model: {tiny_model}")).to_be_visible()
        expect(view.get_by_role("button", name="Start run")).to_be_enabled()
    page.screenshot(path=tmp_path / "new_run_llm.png", full_page=True)
    # Reloaded on a page's own path, Streamlit's frontend first asks for its health and host config
    # under that path, is told 404, and then finds them at the root: its own probe, not an error of ours.
    assert all(re.search(r"/models/_stcore/(health|host-config)$", url) for url in missing), missing
    assert page.dialogs == [] and len(page.console_errors) == len(missing), page.console_errors


def test_live_shows_the_phase_of_a_starter_step_as_it_runs(page, starter_model):
    page, url, tmp_path = page
    new_run_with(page, url, "starter")
    set_baselines_beside(page, False)  # the step's own calls, counted on Live
    for name, value in (("Steps", "1"), ("Eval size", "2"), ("Max note words", "40")):
        wait_idle(page)
        box = page.get_by_role("spinbutton", name=name)
        box.fill(value)
        box.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_text(re.compile(r"Run \d+ started"))).to_be_visible(timeout=60_000)
    nav(page, "Live")
    # A starter step takes about a minute here: Live says where it is while it runs.
    said = page.get_by_text(re.compile(r"Step 1: (inference|induction|revision|evaluation), \d+ of \d+ model calls"))
    expect(said).to_be_visible(timeout=180_000)
    if os.environ.get("IML_SCREENSHOTS"):  # docs/live-in-step.png is taken here
        page.screenshot(path=ROOT / "docs" / "live-in-step.png")
    expect(page.get_by_text(re.compile(r"completed: step 1 of 1"))).to_be_visible(timeout=300_000)


PAGE_TITLES = ["New run", "Live", "Runs", "Notes", "Compare", "Paper view", "Ladder", "Data", "Models"]
# Words from the code, and percentages past one decimal ("93.48%").
CODE_WORD = re.compile(r"\b(None|nan|NaN)\b|\d\.\d{2,}%")


# Tables are drawn on a canvas: every string the page draws there is recorded as it is drawn.
RECORD_CANVAS_TEXT = """
window.drawnText = [];
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
    window.drawnText.push(String(text));
    return fillText.call(this, text, ...rest);
};
"""


def shown_text(page) -> tuple[list[str], list[str]]:
    """What a reader sees: the page's text, each table's headers (its grid keeps them in the DOM
    for screen readers), and every string drawn on a canvas since the last call."""
    headers = page.locator('[data-testid="stDataFrame"] th[role="columnheader"]').all_inner_texts()
    drawn = page.evaluate("() => window.drawnText.splice(0)")
    return headers, [page.locator("body").inner_text(), *drawn]


def test_no_page_shows_none_or_a_name_from_the_code(tmp_path):
    from iml_core import evaluation

    db = tmp_path / "words.duckdb"
    with Store(db) as store:  # the dashboard tests' database: a finished run, its ablation and baselines
        run_id = create_run(store, RunConfig(steps=3, eval_size=40, momentum=1.0))
        execute_run(store, run_id)
        evaluation.ablate_run(store, run_id, 3)
        evaluation.compute_baselines(store, run_id)
    seen_tables = 0
    with dashboard(db, tmp_path) as url, chromium() as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.add_init_script(RECORD_CANVAS_TEXT)
        page.set_default_timeout(30_000)
        page.goto(url)
        for title in PAGE_TITLES:
            nav(page, title)
            wait_idle(page)
            page.wait_for_timeout(1_000)  # tables draw after the script has finished
            headers, texts = shown_text(page)
            seen_tables += len(headers) > 0
            assert headers == [h for h in headers if "_" not in h], (title, headers)
            said = [m.group(0) + " in: " + t[max(0, m.start() - 60):m.end() + 60]
                    for t in texts for m in [CODE_WORD.search(t)] if m]
            assert said == [], (title, said)
    assert seen_tables >= 3, f"only {seen_tables} pages showed a table a reader could see"


def test_the_models_page_installs_a_model_with_a_progress_bar_until_verified(tmp_path, monkeypatch):
    """A small catalogue row of the test's own (the tiny GGUF in 6 wheels served to the real pip from a
    local wheelhouse): the bar moves while it installs, and the model ends verified and listed."""
    from tiny_gguf import write_tiny_llama
    from wheelhouse import split_row, use_catalogue

    wheelhouse = tmp_path / "wheelhouse"
    row = split_row("tiny-test", write_tiny_llama(tmp_path / "tiny.gguf").read_bytes(), 6, wheelhouse)
    env = use_catalogue(monkeypatch, tmp_path, [row], wheelhouse)
    with dashboard(tmp_path / "models.duckdb", tmp_path, env) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(url)
        nav(page, "Models")
        page.get_by_role("button", name=re.compile(r"^Install \(1 MB\)$")).click()
        bar = page.get_by_test_id("stProgress").first
        expect(bar).to_be_visible()
        expect(page.get_by_text(re.compile(r"tiny-test: (downloading|verifying) part \d of 6"))).to_be_visible()
        expect(page.get_by_text("Installed, SHA-256 verified")).to_be_visible(timeout=120_000)
        expect(bar).to_have_count(0)
        expect(page.get_by_text("1 model file(s) found")).to_be_visible()  # listed once the page reran
        wait_idle(page)
        choose_option(page, "Model", "tiny-test")  # it is a model to choose now
        wait_idle(page)
        expect(page.get_by_text("Choose a model above.")).to_have_count(0)
    assert (tmp_path / "model-cache" / "tiny-test" / "verified.json").is_file()


def test_a_run_started_in_a_terminal_shows_on_live_and_moves_there(page):
    """The dashboard serving and a command running on its file at once (docs/ARCHITECTURE.md §4)."""
    page, url, tmp_path = page
    db = tmp_path / "browser.duckdb"
    page.goto(url)
    nav(page, "Live")
    # Long enough to outlast an idle Live tab's look for a new run (every 3 s) and still move after it.
    command = subprocess.Popen([sys.executable, "-m", "iml_core", "run", "--steps", "300", "--eval-size", "50",
                                "--db", str(db), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        shown, listed, elsewhere, deadline = set(), "", False, time.monotonic() + 180
        while command.poll() is None and time.monotonic() < deadline and len(shown) < 2:
            progress = page.get_by_text(re.compile(r"running: step \d+ of 300"))
            if progress.count():
                shown.add(int(re.search(r"step (\d+) of", progress.first.inner_text()).group(1)))
                elsewhere |= page.get_by_text(f"goes in process {command.pid} ").count() > 0
                if not listed:  # the command line reads the file beside both
                    listed = subprocess.run([sys.executable, "-m", "iml_core", "runs", "--db", str(db)],
                                            capture_output=True, text=True, timeout=120).stdout
            time.sleep(0.3)
        assert len(shown) >= 2, f"Live showed the command's run at steps {shown} only"
        assert re.search(r"^\s+2\s+(running|completed)\s", listed, re.M), listed
        assert elsewhere, "Live did not say which process runs the command's run"
    finally:
        out, err = command.communicate(timeout=300)
    assert command.returncode == 0 and '"status": "completed"' in out, err
    assert page.dialogs == [] and page.console_errors == [], (page.dialogs, page.console_errors)


def test_a_generated_task_goes_from_data_to_a_started_run_and_new_run_keeps_its_settings(page):
    page, url, tmp_path = page
    page.goto(url)
    nav(page, "Data")
    page.get_by_role("tab", name="Generated tasks").click()
    wait_idle(page)
    spec = page.get_by_test_id("stCode").first.inner_text().strip()
    assert spec.startswith("rules:")
    page.get_by_role("button", name="Use on New run").click()
    expect(page.get_by_text("Added; it is picked on the New run page.")).to_be_visible()

    nav(page, "New run")
    task_box = page.get_by_role("combobox", name="Task")
    expect(task_box).to_have_value(f"{spec.removeprefix('rules:')} (generated)")
    momentum = page.get_by_role("slider", name="Momentum")
    wait_idle(page)
    momentum.focus()
    momentum.press("End")
    expect(momentum).to_have_value("1")
    page.wait_for_timeout(1_000)  # a slider sends its value a moment after the key, then the page reruns
    wait_idle(page)
    nav(page, "Runs")  # another page, and back: everything as it was left
    nav(page, "New run")
    expect(page.get_by_role("slider", name="Momentum")).to_have_value("1")
    expect(task_box).to_have_value(f"{spec.removeprefix('rules:')} (generated)")
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_text("Run 2 started.")).to_be_visible()
    with Store(tmp_path / "browser.duckdb") as store:
        run = store.run(2)
    assert run["task"] == spec and run["config"]["momentum"] == 1.0


def test_a_rules_spec_typed_on_new_run_starts_a_run_on_that_task(page):
    page, url, tmp_path = page
    page.goto(url)
    wait_idle(page)
    spec = "rules:classes=3,attributes=5,values=2,relevant=2,form=table,noise=0,domain=creatures,samples=400,seed=4"
    task_box = page.get_by_role("combobox", name="Task")
    task_box.click()
    page.keyboard.type(spec)
    page.keyboard.press("Enter")
    wait_idle(page)
    expect(task_box).to_have_value(spec)
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_text("Run 2 started.")).to_be_visible()
    with Store(tmp_path / "browser.duckdb") as store:
        assert store.run(2)["task"] == spec


def test_compare_tells_an_llm_run_from_an_offline_run_under_every_grouping(tmp_path, tiny_model):
    from iml_core import comparing

    db = tmp_path / "compare.duckdb"
    with Store(db) as store:
        for config in (RunConfig(steps=2, eval_size=12), RunConfig(
                agent="llm", backend="llama-server", model=str(tiny_model), steps=2, batch_size=2, eval_size=4,
                eval_every=2, max_note_words=20)):
            execute_run(store, create_run(store, config))
    with dashboard(db, tmp_path) as url, chromium() as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(30_000)
        page.goto(url)
        nav(page, "Compare")
        runs = page.get_by_test_id("stMultiSelect").first
        expect(runs).to_contain_text("run 1 · paper · offline rule learner · iml · notes in words")
        expect(runs).to_contain_text("run 2 · paper · tiny-llama.gguf · iml · notes in words")
        for words in comparing.GROUPINGS.values():
            wait_idle(page)
            page.get_by_role("combobox", name="Group by").click()
            page.get_by_role("option", name=words, exact=True).click()
            wait_idle(page)
            assert page.get_by_test_id("stException").count() == 0, words
            chart = page.get_by_test_id("stPlotlyChart").first
            expect(chart).to_contain_text("Eval accuracy by " + words)
            legend = [t.strip() for t in chart.locator(".legendtext").all_text_contents()]
            curves = [t for t in legend if "%" not in t]  # baselines carry their accuracy
            # Both runs share momentum, accumulation, batch size and the task, yet never one curve.
            assert len(curves) == 2, (words, legend)
            assert sum("offline rule learner" in c for c in curves) == 1, (words, legend)
            assert sum("tiny-llama.gguf" in c for c in curves) == 1, (words, legend)


def test_the_recommended_path_with_qwen_learns_a_rung_1_rule_from_new_run(page, qwen_model):
    """The path the README tells a newcomer to take: Qwen2.5-Coder-1.5B chosen on Models, then New
    run, which starts from the settings measured to learn with it (the catalogue's), on ladder rung 1,
    seed 0, where this model applies the true rule it is given 40 of 40 times."""
    from iml_core.builders import build_task
    from iml_core.config import recommended
    from iml_core.studies import LADDER
    from iml_core.truth import TruthScorer

    page, url, tmp_path = page
    advised = recommended("qwen2.5-coder-1.5b")
    spec = LADDER[0].task(0)
    new_run_with(page, url, "qwen2.5-coder-1.5b")
    expect(page.get_by_text("Settings measured to learn with qwen2.5-coder-1.5b")).to_be_visible()
    # What the browser shows, not only what the server holds: the widgets start from the catalogue's.
    expect(page.get_by_role("combobox", name="Learner")).to_have_value(re.compile("^Hypothesis bank"))
    expect(page.get_by_role("spinbutton", name="Steps")).to_have_value(str(advised.settings["steps"]))
    set_baselines_beside(page, False)  # on by default; this test reads the run's own learning
    task_box = page.get_by_role("combobox", name="Task")
    task_box.click()
    page.keyboard.type(spec)
    page.keyboard.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_text("Run 2 started.")).to_be_visible(timeout=60_000)
    nav(page, "Live")
    expect(page.get_by_text(re.compile(rf"completed: step {advised.settings['steps']} of"))).to_be_visible(
        timeout=900_000)
    with Store(tmp_path / "browser.duckdb") as store:
        run, steps = store.run(2), store.steps(2)
    assert run["task"] == spec and {name: run["config"][name] for name in advised.settings} == advised.settings
    final = steps[-1]
    assert final["rule_eval_accuracy"] >= 0.9 and final["model_eval_accuracy"] is not None
    assert TruthScorer(build_task(RunConfig(task=spec))).score(final["notes"]).rule_recall == 1.0, final["notes"]
