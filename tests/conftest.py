import os

import pytest

from iml_core.agents.offline import OfflineRuleLearner
from iml_core.config import RunConfig
from iml_core.learner import learning_steps
from iml_core.store import Store
from iml_core.tasks import load_task

_tasks = {}


def pytest_sessionfinish(session, exitstatus):
    """Under CI a skipped test fails the run: a test that could not run has checked nothing, and
    a green run must not hide it."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if os.environ.get("CI") and skipped and exitstatus == pytest.ExitCode.OK:
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reason = reason.removeprefix("Skipped: ")
            print(f"\nCI: {report.nodeid} was skipped ({reason}); under CI a skip is a failure")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# The slow tiers (markers registered in pyproject.toml): `make test-fast` deselects them, `make test`
# runs everything. A test is in a tier by its file, or by a fixture it uses: the tiny GGUF and the
# starter model are there to be run by llama.cpp.
TIER_BY_FILE = {"test_browser.py": "browser", "test_cluster.py": "cluster", "test_disk.py": "disk",
                "test_real_models.py": "real_model", "test_llama_cpp.py": "real_model",
                "test_llama_server.py": "real_model", "test_llama_build.py": "real_model"}
TIER_BY_FIXTURE = {"starter_model": "real_model", "tiny_model": "real_model", "qwen_model": "real_model"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        tiers = {TIER_BY_FILE.get(item.path.name)} | {TIER_BY_FIXTURE.get(f) for f in getattr(item, "fixturenames", ())}
        for tier in sorted(tiers - {None}):
            item.add_marker(getattr(pytest.mark, tier))


def task_for(config: RunConfig):
    key = (config.task, config.label_noise)
    if key not in _tasks:
        _tasks[key] = load_task(config.task, label_noise=config.label_noise)
    return _tasks[key]


def offline_history(**settings):
    """Every step record of an offline run with these settings (no database)."""
    config = RunConfig(**settings).check()
    task = task_for(config)
    return list(learning_steps(task, OfflineRuleLearner(task.attributes, task.classes), config))


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs.duckdb") as s:
        yield s


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny random-weight LLaMA GGUF written by the tests themselves (nothing downloaded)."""
    from tiny_gguf import write_tiny_llama
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama.gguf")


def catalogue_model_path(name: str, make_target: str):
    """A catalogue model that `make test` installs; missing, the tests that need it fail, saying how to
    get it: they never skip quietly."""
    from iml_core.catalogue import catalogue_model

    path = catalogue_model(name).installed()
    if path is None:
        pytest.fail(f"the model {name} is not installed here: run `{make_target}` (or `iml models --install "
                    f"{name}`), then the tests again")
    return path


@pytest.fixture(scope="session")
def starter_model():
    """The starter model (a real chat model from a registry package)."""
    return catalogue_model_path("starter", "make model")


@pytest.fixture(scope="session")
def qwen_model():
    """Qwen2.5-Coder-1.5B-Instruct from the registry's packages: the first model here that applies a rule."""
    return catalogue_model_path("qwen2.5-coder-1.5b", "make model-qwen")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answers(url: str, process, what: str, log_path=None, seconds: float = 60) -> None:
    """Polls a local server's URL until it answers; fails with its log if it dies or takes too long."""
    import time
    import urllib.request
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                log = log_path.read_text() if log_path else ""
                raise AssertionError(f"{what} did not start: {log}") from None
            time.sleep(0.3)


def llama_cpp_server_env() -> dict:
    """The environment for `python -m llama_cpp.server`: llama-cpp-python's Python code loads this
    machine's build of libllama (iml_core.llama_build), which a fresh child does not know of."""
    import os

    from iml_core import llama_build
    return {**os.environ, "LLAMA_CPP_LIB_PATH": str(llama_build.require_build().lib)}
