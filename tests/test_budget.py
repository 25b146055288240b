"""Budgets (iml_core.budget): a run stops as `budget reached` before the model call that would pass
one of its limits, keeps what it finished, and a resume with a higher limit ends where a run
without one does. The fault server (named as such: it reports usage on demand) prices calls; the
real llama.cpp server counts real tokens."""

import json
import subprocess
import sys
import time

import pytest

from iml_core.budget import Budget, Limits, Spent
from iml_core.config import RunConfig
from iml_core.errors import BudgetReached
from iml_core.runner import create_run, execute_run
from iml_core.status import Status
from iml_core.store import Store

from fault_server import FaultServer


def iml(*args):
    return subprocess.run([sys.executable, "-m", "iml_core", *args], capture_output=True, text=True)


def test_a_call_that_would_pass_a_limit_is_refused_before_it_is_made():
    budget = Budget(Limits(cost=0.21, tokens=1_000, calls=9), Spent(calls=2, tokens=50, cost=0.05))
    for _ in range(6):  # each call like the last: 25 tokens, 0.025
        budget.called(budget.before_call("infer"), "infer", 25, 0.025)
    spent = budget.spent()
    assert (spent.calls, spent.tokens, round(spent.cost, 3)) == (8, 200, 0.2)
    with pytest.raises(BudgetReached, match=r"would pass its cost limit of 0.21 \(0.2 spent\).*--max-cost"):
        budget.before_call("infer")  # 0.2 + about 0.025 > 0.21
    assert budget.spent().calls == 8  # nothing was reserved by the refused call
    budget = Budget(Limits(calls=1))
    budget.before_call("eval")  # a call in flight counts at once: a second one at the same time is refused
    with pytest.raises(BudgetReached, match="its 1 model calls are spent"):
        budget.before_call("eval")


def test_a_sweeps_budget_is_spent_by_all_its_runs():
    sweep = Budget(Limits(calls=3), what="the sweep")
    first, second = (Budget(Limits(), parent=sweep) for _ in range(2))
    for run in (first, second, first):
        run.called(run.before_call("infer"), "infer", 10, 0.0)
    with pytest.raises(BudgetReached, match="the sweep stopped"):
        second.before_call("infer")
    assert sweep.spent().calls == 3 and second.spent().calls == 1


def test_each_budget_releases_its_own_reservation_so_a_sweep_keeps_no_phantom_spend():
    sweep = Budget(Limits(tokens=3_150), what="sweep 1", sweep=True)
    for _ in range(30):  # 30 runs of one call each: each run's first call expects nothing, the sweep's 100
        run = Budget(Limits(), parent=sweep)
        run.called(run.before_call("infer"), "infer", 100, 0.0)
    run = Budget(Limits(), parent=sweep)
    run.called(run.before_call("infer"), "infer", 100, 0.0)  # 3,000 spent + about 100 fits in 3,150
    with pytest.raises(BudgetReached, match=r"the sweep's limit of 3,150 tokens \(3,100 spent\).*--sweep-max-tokens"):
        Budget(Limits(), parent=sweep).before_call("infer")


def test_while_no_call_is_measured_one_goes_alone_and_the_others_are_judged_by_it():
    import threading

    budget = Budget(Limits(tokens=100))
    first = budget.before_call("infer")
    outcome = []
    second = threading.Thread(target=lambda: outcome.append(_refusal(budget)))
    second.start()
    second.join(timeout=0.3)
    assert second.is_alive()  # it waits: with nothing measured, it could not be judged
    budget.called(first, "infer", 60, 0.0)
    second.join(timeout=5)
    assert outcome == ["refused"]  # 60 spent and about 60 more would pass 100


def _refusal(budget: Budget) -> str:
    try:
        budget.before_call("infer")
    except BudgetReached:
        return "refused"
    return "made"


def priced(server, **more) -> RunConfig:
    return RunConfig(agent="llm", backend="openai", base_url=server.url, model="m", steps=2, batch_size=2,
                     eval_size=2, max_parallel=1, max_note_words=40, structured_output="json_object",
                     price_in=1000.0, price_out=1000.0, **more)  # 20 + 5 tokens a call: 0.025 each


def test_max_cost_stops_at_the_first_call_that_would_pass_it_and_resume_finishes_like_no_limit(tmp_path):
    with FaultServer([]) as server:
        with Store(tmp_path / "free.duckdb") as store:
            free = create_run(store, priced(server))
            assert execute_run(store, free)["status"] == "completed"
            expected = store.steps(free)[-1]["notes"]
            assert len(store.model_calls(free)) == 14  # eval 2; then per step 2 answers, 1 note, 1 revision, eval 2
        db = str(tmp_path / "capped.duckdb")
        flags = ["--db", db, "--agent", "llm", "--backend", "openai", "--base-url", server.url, "--model", "m",
                 "--steps", "2", "--batch-size", "2", "--eval-size", "2", "--max-parallel", "1", "--max-note-words",
                 "40", "--structured-output", "json_object", "--price-in", "1000", "--price-out", "1000", "--json"]
        run = iml("run", *flags, "--max-cost", "0.21")
        assert run.returncode == 3, run.stderr
        assert "Before it starts: At most 14 model calls; their tokens and cost are measured by this model's first " \
               "run here." in run.stderr
        summary = json.loads(run.stdout)
        assert summary["status"] == Status.BUDGET_REACHED and summary["steps"] == 1
        assert "budget reached" in run.stderr and "--max-cost" in run.stderr
        with Store(db) as store:
            # 8 calls of 0.025 are 0.2; a ninth would make 0.225: step 2's first call was never made.
            assert len(store.model_calls(1)) == 8 and store.run_spent(1).cost == pytest.approx(0.2)
            requests_before = len(server.requests)
        resumed = iml("resume", "1", "--db", db, "--max-cost", "1", "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["status"] == Status.COMPLETED
        with Store(db) as store:
            assert store.steps(1)[-1]["notes"] == expected
            assert RunConfig.from_dict(store.run(1)["config"]).max_cost == 1.0
        assert len(server.requests) - requests_before == 6  # step 2 only
        # Now every phase is measured (25 tokens a call), so the next run's estimate has tokens and cost.
        again = iml("run", *flags, "--seed", "1", "--max-calls", "1")
        assert again.returncode == 3, again.stderr
        assert "At most 14 model calls, about 350 tokens and a cost of 0.35 (at the prices set)." in again.stderr


def test_max_tokens_on_the_real_llama_server_stops_and_resumes_to_the_unlimited_runs_notes(tmp_path, tiny_model):
    from iml_core.backends.llama_server import SERVERS

    config = RunConfig(agent="llm", backend="llama-server", model=str(tiny_model), steps=3, batch_size=2,
                       eval_size=4, max_note_words=20, n_ctx=1024, temperature=0.0)
    # Each run on a fresh server: llama.cpp's numbers depend on what its prompt cache holds.
    SERVERS.stop_all()
    with Store(tmp_path / "free.duckdb") as store:
        free = create_run(store, config)
        assert execute_run(store, free)["status"] == "completed"
        expected = [s["notes"] for s in store.steps(free)]
        total = store.run_spent(free).tokens
    limit = total // 2
    SERVERS.stop_all()
    try:
        with Store(tmp_path / "capped.duckdb") as store:
            capped = create_run(store, config.replace(max_tokens=limit))
            summary = execute_run(store, capped)
            assert summary["status"] == Status.BUDGET_REACHED and "--max-tokens" in summary["error"]
            assert store.run_spent(capped).tokens <= limit
            assert 0 < summary["steps"] < 3
            store.set_limits(capped, config.replace(max_tokens=10 * total))
            assert execute_run(store, capped)["status"] == "completed"
            assert [s["notes"] for s in store.steps(capped)] == expected
    finally:
        SERVERS.stop_all()  # no idle server of this model left for a later test to mistake for its own


def test_max_minutes_stops_an_offline_run_between_steps(tmp_path):
    with Store(tmp_path / "runs.duckdb") as store:
        run_id = create_run(store, RunConfig(steps=10_000, eval_size=20, max_minutes=0.01))
        started = time.monotonic()
        summary = execute_run(store, run_id)
        assert time.monotonic() - started >= 0.6  # 0.01 minutes
        assert summary["status"] == Status.BUDGET_REACHED and "0.01 minutes are up" in summary["error"]
        assert 0 < summary["steps"] < 10_000
        done = summary["steps"]
        store.set_limits(run_id, RunConfig(steps=10_000, eval_size=20, max_minutes=0.02))
        assert execute_run(store, run_id)["steps"] > done  # the committed steps' seconds count as spent


def test_a_sweeps_budget_stops_its_runs_once_they_spent_it_together(tmp_path):
    db = str(tmp_path / "sweep.duckdb")
    with FaultServer([]) as server:
        result = iml("sweep", "--db", db, "--agent", "llm", "--backend", "openai", "--base-url", server.url,
                     "--model", "m", "--steps", "2", "--batch-size", "2", "--eval-size", "2", "--max-parallel", "1",
                     "--max-note-words", "40", "--structured-output", "json_object", "--seed", "0,1,2",
                     "--parallel", "1", "--sweep-max-calls", "20", "--json")
        made = len(server.requests)
    assert result.returncode == 1, result.stderr
    runs = json.loads(result.stdout)["runs"]
    # 14 calls a run: the first completes, the second stops after 6 more, the third before its first.
    assert [r["status"] for r in runs] == [Status.COMPLETED, Status.BUDGET_REACHED, Status.BUDGET_REACHED]
    assert made == 20
    with Store(db) as store:
        assert "sweep" in store.run(runs[2]["run_id"])["error"] and "--sweep-max-calls" in store.run(
            runs[2]["run_id"])["error"]


def test_a_resumed_sweep_run_has_only_its_own_limits(tmp_path):
    from iml_core.config import Submission
    from iml_core.manager import RunManager

    with FaultServer([]) as server, Store(tmp_path / "sweep.duckdb") as store:
        manager = RunManager(store)
        first, second = manager.submit([priced(server), priced(server, seed=1)],
                                       limits=Submission(parallel=1, sweep_max_calls=10))
        manager.join(timeout=120)
        assert [store.run(i)["status"] for i in (first, second)] == [Status.BUDGET_REACHED] * 2
        assert len(store.model_calls(first)) + len(store.model_calls(second)) <= 10
        manager.resume([second])
        manager.join(timeout=120)
        assert store.run(second)["status"] == Status.COMPLETED


def test_a_sweeps_budget_is_refused_on_ray_where_it_cannot_reach_the_workers(tmp_path):
    result = iml("sweep", "--db", str(tmp_path / "x.duckdb"), "--ray-address", "local", "--sweep-max-calls", "5")
    assert result.returncode == 2 and "cannot reach Ray workers" in result.stderr


def test_a_studys_estimate_counts_the_baselines_it_will_compute_once_per_shared_set():
    from iml_core.analysis import estimate
    from iml_core.evaluation import shared_baselines

    with FaultServer([]) as server:
        configs = [priced(server, momentum=m) for m in (0.0, 0.5)]  # same baselines: momentum is how it learns
    shared = shared_baselines(configs)
    measured = {phase: (20.0, 5.0) for phase in ("infer", "induce", "revise", "eval")}
    assert len(shared) == 1
    said = estimate(configs, measured, shared)
    # Each run's own equal-token baseline answers its eval split (2 calls) too.
    assert said.calls == 2 * 14 + 3 * 2 + 2 * 2 and said.tokens == 25 * said.calls
    assert said.cost == pytest.approx(0.025 * said.calls)
