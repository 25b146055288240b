"""The machine's commands start where only the engine's packages are: `iml doctor`, `iml data` and
`iml build` (test_llama_build.py) import neither plotly nor pandas, which only the commands that
chart or tabulate need (a GPU machine once had no plotly, and `iml doctor` could not start)."""

import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("plotly", "pandas")


def env_without(tmp_path: Path, packages=HEAVY) -> dict:
    """An environment whose Python refuses to import `packages`: a sitecustomize on PYTHONPATH puts a
    finder that raises ImportError for them in front of every other."""
    folder = tmp_path / "blocked"
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n\n\nclass Blocked:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.partition('.')[0] in {tuple(packages)!r}:\n"
        "            raise ImportError(f'{name} is blocked for this test')\n\n\n"
        "sys.meta_path.insert(0, Blocked())\n", encoding="utf-8")
    paths = [str(folder), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def iml_blocked(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iml_core", *args], capture_output=True, text=True,
                          env=env_without(tmp_path), timeout=300)


def test_the_blocker_blocks(tmp_path):
    # Else the tests below would pass whatever the commands import.
    for package in HEAVY:
        result = subprocess.run([sys.executable, "-c", f"import {package}"], capture_output=True, text=True,
                                env=env_without(tmp_path))
        assert result.returncode != 0 and f"{package} is blocked" in result.stderr
    report = iml_blocked(tmp_path, "report", "1", "--out", str(tmp_path / "r.html"), "--db", str(tmp_path / "x.db"))
    assert report.returncode != 0 and "is blocked" in report.stderr


def test_doctor_starts_without_plotly_or_pandas(tmp_path):
    result = iml_blocked(tmp_path, "doctor")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("CPU: ") and "OPENAI_API_KEY" in result.stdout


def test_data_writes_the_benchmark_without_plotly_or_pandas(tmp_path):
    result = iml_blocked(tmp_path, "data", "--dir", str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "paper.csv").read_bytes() == (Path(__file__).parent.parent / "data" /
                                                               "paper.csv").read_bytes()

