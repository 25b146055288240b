"""Sweeps on a real local Ray cluster (ray.init on this machine, 2 CPUs): steps computed on Ray
workers, committed by this process, exactly once; a killed worker; cancel; the command line."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from iml_core.cluster import LOCAL_ONLY_ENV, LOOPBACK, RaySteps

os.environ.setdefault(*LOCAL_ONLY_ENV)  # before Ray is imported: the test cluster serves this machine only
import ray  # noqa: E402 (`make test` installs requirements-ray.txt: without Ray this file fails, never skips)
from iml_core.config import RunConfig
from iml_core.manager import RunManager
from iml_core.runner import create_run, execute_run
from iml_core.studies import grid_configs



@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network here, and none wanted
    ray.init(num_cpus=2, resources={"endpoint-a": 1}, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    assert [node["NodeManagerAddress"] for node in ray.nodes()] == [LOOPBACK]  # serves this machine only
    yield
    ray.shutdown()


def local_history(tmp_path, config):
    """The same run computed here, one step after another: what the cluster must reproduce."""
    from iml_core.store import Store
    with Store(tmp_path / f"local-{abs(hash(config))}.duckdb") as store:
        run_id = create_run(store, config)
        execute_run(store, run_id)
        return [(s["step"], s["notes"], s["eval_accuracy"]) for s in store.steps(run_id)]


def test_a_2x2x2_sweep_on_ray_stores_every_step_once_and_matches_local_runs(cluster, store, tmp_path):
    base = RunConfig(steps=6, eval_size=60, batch_size=8)
    configs = grid_configs(base, {"momentum": [0.0, 0.5], "accumulation": [1, 2], "seed": [0, 1]})
    manager = RunManager(store, max_parallel=2, source=RaySteps())
    run_ids = manager.submit(configs, study="ray sweep")
    manager.join(timeout=300)
    assert {store.run(i)["status"] for i in run_ids} == {"completed"}
    with store.held() as cursor:
        duplicates = cursor.execute("""SELECT count(*) FROM (SELECT run_id, step, phase, minibatch, sample_id
                                       FROM predictions GROUP BY ALL HAVING count(*) > 1)""").fetchone()[0]
    assert duplicates == 0
    for run_id, config in zip(run_ids, configs, strict=True):
        steps = store.steps(run_id)
        assert [s["step"] for s in steps] == list(range(7))
        assert len(store.predictions(run_id)) == 7 * 60 + 6 * 8 * config.accumulation
    # Computed on workers, the notes and accuracies are those of a local run with the same seed.
    first, last = run_ids[0], run_ids[-1]
    for run_id, config in ((first, configs[0]), (last, configs[-1])):
        assert [(s["step"], s["notes"], s["eval_accuracy"]) for s in store.steps(run_id)] == \
            local_history(tmp_path, config)


def test_a_killed_worker_is_retried_from_the_last_committed_step(cluster, store, tmp_path):
    config = RunConfig(steps=120, eval_size=600, batch_size=32, momentum=0.5)
    source = RaySteps(worker_retries=2)
    manager = RunManager(store, max_parallel=1, source=source)
    (run_id,) = manager.submit([config])
    deadline = time.monotonic() + 120
    while len(store.steps(run_id)) < 6 or source.worker(run_id) is None:
        assert time.monotonic() < deadline, "the run did not get going on the cluster"
        time.sleep(0.05)
    killed = source.worker(run_id)["pid"]
    os.kill(killed, signal.SIGKILL)
    manager.join(timeout=300)
    run = store.run(run_id)
    assert run["status"] == "completed" and run["notice"] is None, run
    assert len(source.losses[run_id]) == 1 and "after step" in source.losses[run_id][0]
    assert [s["step"] for s in store.steps(run_id)] == list(range(121))  # each step once, none lost
    assert [(s["step"], s["notes"], s["eval_accuracy"]) for s in store.steps(run_id)] == \
        local_history(tmp_path, config)


def test_cancel_stops_the_running_tasks_and_the_queued_runs(cluster, store):
    configs = [RunConfig(steps=2000, eval_size=100, seed=seed) for seed in range(4)]
    source = RaySteps()
    manager = RunManager(store, max_parallel=2, source=source)
    run_ids = manager.submit(configs)
    deadline = time.monotonic() + 120
    while sum(len(store.steps(i)) >= 3 for i in run_ids) < 2:
        assert time.monotonic() < deadline, "two runs did not reach step 3 on the cluster within 120 s"
        time.sleep(0.05)
    for run_id in manager.busy():
        manager.cancel(run_id)
    manager.join(timeout=60)
    assert manager.busy() == [] and source.workers == {}
    assert [store.run(i)["status"] for i in run_ids] == ["cancelled"] * 4
    counts = [len(store.steps(i)) for i in run_ids]
    assert counts[2:] == [0, 0] and all(3 <= c < 2001 for c in counts[:2])
    time.sleep(1.5)  # the tasks are gone: nothing more arrives
    assert [len(store.steps(i)) for i in run_ids] == counts


def test_the_sweep_command_runs_a_grid_file_on_the_cluster(cluster, tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('task = "paper"\nsteps = 3\neval_size = 40\nmomentum = [0.0, 0.9]\naccumulation = [1, 2]\n'
                    'seeds = 2\n')
    result = subprocess.run(
        [sys.executable, "-m", "iml_core", "sweep", "--grid", str(grid), "--ray-address", "auto", "--json",
         "--db", str(tmp_path / "sweep.duckdb")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ray_address"] == "auto" and len(summary["runs"]) == 8
    cells = {(r["momentum"], r["accumulation"], r["seed"]) for r in summary["runs"]}
    assert cells == {(m, k, s) for m in (0.0, 0.9) for k in (1, 2) for s in (0, 1)}
    assert all(r["status"] == "completed" and r["steps"] == 3 and r["final_eval_accuracy"] is not None
               for r in summary["runs"])
    assert "8/8]" in result.stderr


def test_an_llm_run_on_the_cluster_shows_retrying_while_its_server_fails(cluster, store):
    from fault_server import FaultServer

    seen = {}

    def look(number):
        if number == 2:  # the second retry of the first request, after two 429s
            deadline = time.monotonic() + 5  # the driver picks notices up every POLL_SECONDS
            while store.run(run_id)["status"] != "retrying" and time.monotonic() < deadline:
                time.sleep(0.05)
            seen.update(store.run(run_id))

    with FaultServer(["429", "429"], on_request=look) as server:
        config = RunConfig(agent="llm", backend="openai", base_url=server.url, model="m", steps=1, eval_size=2,
                           batch_size=2, max_parallel=1, max_retries=3, max_note_words=40,
                           structured_output="json_object")
        manager = RunManager(store, max_parallel=1, source=RaySteps())
        (run_id,) = manager.submit([config])
        manager.join(timeout=120)
    assert seen["status"] == "retrying" and seen["notice"].startswith("HTTP 429 from the model server; retry")
    run = store.run(run_id)
    assert run["status"] == "completed" and run["notice"] is None
    assert len(store.model_calls(run_id)) == 2 + 2 + 1 + 1 + 2  # eval@0, train, induce, revise, eval@1


def test_live_sees_where_a_cluster_run_is_inside_its_step(cluster, store):
    from fault_server import FaultServer

    from iml_core.progress import WATCHES

    seen = {}

    def look(number):
        if number == 5:  # the revision of step 1, held until the driver shows it
            deadline = time.monotonic() + 10  # the worker posts, and the driver relays, every POLL_SECONDS
            while time.monotonic() < deadline:
                now = WATCHES.now(run_id)
                if now is not None and (now.step, now.phase) == (1, "revise"):
                    seen["now"] = now
                    return
                time.sleep(0.05)

    with FaultServer([], on_request=look) as server:
        config = RunConfig(agent="llm", backend="openai", base_url=server.url, model="m", steps=1, eval_size=2,
                           batch_size=2, max_parallel=1, max_note_words=40, structured_output="json_object")
        manager = RunManager(store, max_parallel=1, source=RaySteps())
        (run_id,) = manager.submit([config])
        manager.join(timeout=120)
    assert store.run(run_id)["status"] == "completed"
    now = seen["now"]  # requests 0-1 eval step 0; in step 1: 2-3 inference, 4 induction, 5 revision
    assert (now.answered, now.expected, now.calls) == (0, 1, 3) and now.step_seconds > 0
    assert WATCHES.now(run_id) is None  # nothing is kept once the run is over


def test_the_dashboard_runs_a_sweep_on_the_cluster_and_cancels_it_whole(cluster, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from studio.engine import engine
    from test_dashboard import APP

    db = str(tmp_path / "dash.duckdb")
    monkeypatch.setenv("IML_DB", db)
    monkeypatch.setenv("IML_RAY_ADDRESS", "auto")  # this process is already connected: the engine joins it
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.toggle(key="sweep").set_value(True)
    at.number_input(key="steps").set_value(2000)
    at.number_input(key="eval_size").set_value(50)
    at.run()
    at.button(key="launch").click()
    at.run()
    assert not at.exception
    store, manager = engine(db)
    assert isinstance(manager.source, RaySteps)
    run_ids = [r["id"] for r in store.runs()]
    assert len(run_ids) == 18
    deadline = time.monotonic() + 120
    while sum(len(store.steps(i)) >= 2 for i in run_ids) < 2:
        assert time.monotonic() < deadline, "two runs of the dashboard's sweep did not reach step 2 within 120 s"
        time.sleep(0.05)

    at.switch_page("pages/live.py")
    at.run()
    running = next(i for i in run_ids if store.run(i)["status"] == "running")
    at.selectbox(key="live_run").set_value(running)
    at.run()
    assert any(c.value.startswith("Computed on the Ray cluster: node ") for c in at.caption)
    at.button(key=f"cancel_study_{running}").click()
    at.run()
    manager.join(timeout=60)
    assert {store.run(i)["status"] for i in run_ids} == {"cancelled"}
    assert manager.source.workers == {}  # no Ray task is left running
    assert sum(len(store.steps(i)) > 0 for i in run_ids) <= 4  # the queued ones never started


def test_runs_get_the_resources_they_ask_for_and_impossible_requests_are_refused(cluster, store, tmp_path):
    from iml_core.cluster import Resources, check_feasible
    from iml_core.errors import UserError

    # The cluster has one "endpoint-a": runs that each need it go one at a time, whatever max_parallel says.
    source = RaySteps(Resources(num_cpus=1, custom={"endpoint-a": 1}))
    manager = RunManager(store, max_parallel=2, source=source)
    run_ids = manager.submit([RunConfig(steps=60, eval_size=300, seed=seed) for seed in range(2)])
    free_cpus = []  # each run holds 1 of the 2 CPUs while it runs: both at once would leave 0
    deadline = time.monotonic() + 120
    while manager.busy():
        assert time.monotonic() < deadline, f"runs {manager.busy()} still busy after 120 s"
        free_cpus.append(ray.available_resources().get("CPU", 0.0))
        time.sleep(0.02)
    manager.join(timeout=120)
    assert {store.run(i)["status"] for i in run_ids} == {"completed"}
    assert min(free_cpus) == 1.0, sorted(set(free_cpus))

    with pytest.raises(UserError, match=r"each run asks for 1 GPU but the Ray cluster has 0 \(it has: CPU 2, "):
        check_feasible(Resources(num_gpus=1))
    with pytest.raises(UserError, match="each run asks for 1 vllm-70b but the Ray cluster has 0"):
        check_feasible(Resources(custom={"vllm-70b": 1}))


def test_after_a_lost_worker_the_new_task_repeats_no_completed_call(cluster, store):
    from fault_server import FaultServer

    source = RaySteps()

    def kill_mid_step(number):
        if number == 9:  # step 2's second training answer: its first one (request 8) has completed
            os.kill(source.worker(run_id)["pid"], signal.SIGKILL)

    with FaultServer([], on_request=kill_mid_step) as server:
        config = RunConfig(agent="llm", backend="openai", base_url=server.url, model="m", steps=2, eval_size=2,
                           batch_size=2, max_parallel=1, max_note_words=40, structured_output="json_object")
        manager = RunManager(store, max_parallel=1, source=source)
        (run_id,) = manager.submit([config])
        manager.join(timeout=120)
    assert store.run(run_id)["status"] == "completed" and len(source.losses[run_id]) == 1
    # 14 calls in all (2 eval, then per step 2 train, induce, revise, 2 eval); only the one the
    # lost worker was waiting for is asked again.
    assert len(server.requests) == 15
    step_2 = [c for c in store.model_calls(run_id) if c["step"] == 2]
    assert [c["cached"] for c in step_2] == [True] + [False] * 5
    # Every answer reached the database's cache too: a rerun here would cost nothing.
    with store.held() as cursor:
        assert cursor.execute("SELECT count(*) FROM response_cache").fetchone()[0] == 14
