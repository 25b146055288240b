"""Figure 6: peak memory of the dashboard server while 4 offline runs go at once, against the same
server bare (page loaded, nothing running). Runs are started by clicking, in Debian's chromium."""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, report
from conftest import free_port, wait_until_answers
from playwright.sync_api import expect, sync_playwright
from test_browser import CHROMIUM, FLAGS

from iml_core.store import Store


def peak_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "memory.duckdb"
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
            cwd=ROOT, env={**os.environ, "IML_DB": str(db)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{url}/_stcore/health", server, "streamlit")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.goto(url)
            expect(page.get_by_role("button", name="Start run")).to_be_visible()
            time.sleep(2)
            bare = peak_mb(server.pid)
            page.get_by_role("spinbutton", name="Steps").fill("300")
            page.get_by_role("spinbutton", name="Steps").press("Enter")
            page.get_by_text("Sweep: a grid").click()
            expect(page.get_by_role("spinbutton", name="Seeds per cell")).to_be_visible()
            page.get_by_role("spinbutton", name="Seeds per cell").fill("1")
            page.get_by_role("spinbutton", name="Seeds per cell").press("Enter")
            page.get_by_role("spinbutton", name="Runs at once").fill("4")
            page.get_by_role("spinbutton", name="Runs at once").press("Enter")
            expect(page.get_by_role("button", name="Queue 6 runs")).to_be_visible()
            time.sleep(1)
            page.get_by_role("button", name="Queue 6 runs").click()
            expect(page.get_by_text("Queued runs")).to_be_visible()
            page.locator('[data-testid="stSidebarNav"] a', has_text="Live").first.click()
            expect(page.get_by_text("0 run(s) going")).to_be_visible(timeout=600_000)
            browser.close()
        peak = peak_mb(server.pid)
        server.terminate()
        server.wait(timeout=30)
        with Store(db) as store:
            done = [r["status"] for r in store.runs()]
    ok = report("server_memory", peak - bare, "MB more", None, "<= 200 MB more than the bare server",
                peak - bare <= 200 and done.count("completed") == 6,
                bare_peak_mb=round(bare, 1), peak_mb=round(peak, 1), runs=len(done))
    sys.exit(0 if ok else 1)
