"""The dashboard in a real browser: `streamlit run` on a free local port, driven by Debian's
chromium through Playwright (executable_path: no browser is ever downloaded)."""

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
from iml_core.runner import create_run, execute_run
from iml_core.store import Store

from conftest import free_port, wait_until_answers

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HOSTILE = "<script>alert('x')</script> <img src=x onerror=alert(1)> [click](javascript:alert(2)) :red[red]"


@pytest.fixture
def server(tmp_path):
    db = tmp_path / "browser.duckdb"
    # A finished run whose notes are hostile, written before the server takes the file.
    with Store(db) as store:
        execute_run(store, create_run(store, RunConfig(steps=2, eval_size=20, momentum=1.0, initial_notes=HOSTILE)))
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, "IML_DB": str(db)}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_answers(f"{url}/_stcore/health", process, "streamlit", tmp_path / "server.log")
    yield url, tmp_path
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()
    server_log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in server_log, server_log


@pytest.fixture
def page(server):
    url, tmp_path = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.dialogs, page.console_errors = [], []
        page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
        page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
        page.set_default_timeout(30_000)
        yield page, url, tmp_path
        browser.close()


def nav(page, title):
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    expect(page.get_by_role("heading", name=title).first).to_be_visible()


def test_start_a_run_watch_it_learn_and_read_its_diff(page):
    page, url, tmp_path = page
    page.goto(url)
    expect(page.get_by_role("heading", name="New run")).to_be_visible()
    # Momentum 0: the rule learner restates its notes each step, so the diff has deletions too.
    momentum = page.get_by_role("slider", name="Momentum")
    for _ in range(20):  # keys sent while the page is still settling can be lost: press until it holds
        momentum.focus()
        momentum.press("Home")
        if momentum.input_value() == "0":
            break
        page.wait_for_timeout(300)
    expect(momentum).to_have_value("0")
    page.wait_for_timeout(1000)  # the slider reruns the page on release; let that land before the click
    page.screenshot(path=tmp_path / "new_run.png", full_page=True)
    page.get_by_role("button", name="Start run").click()
    expect(page.get_by_text("Run 2 started.")).to_be_visible()

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
    assert points >= 5, points
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
