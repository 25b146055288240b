"""CI never goes green on a test that did not run: a planted skipped test fails the run under CI."""

import os
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")


def run_pytest(folder: Path, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
                          capture_output=True, text=True, env=env, cwd=folder)


def test_a_skipped_test_fails_the_run_under_ci(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text())
    (tmp_path / "test_planted.py").write_text(
        "import pytest\n\n"
        "def test_runs():\n    assert True\n\n"
        "def test_planted_skip():\n    pytest.skip('no way to run this here')\n")
    under_ci = run_pytest(tmp_path, ci=True)
    assert under_ci.returncode == 1, under_ci.stdout
    assert "test_planted_skip was skipped (no way to run this here); under CI a skip is a failure" in under_ci.stdout
    assert run_pytest(tmp_path, ci=False).returncode == 0  # a developer's run reports it as skipped
    (tmp_path / "test_planted.py").write_text("def test_runs():\n    assert True\n")
    assert run_pytest(tmp_path, ci=True).returncode == 0
