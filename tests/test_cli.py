import json
import os
import re
import subprocess
import sys

import pytest

from fault_server import FaultServer
from test_store import hold_lock


def iml(*args, env=None):
    return subprocess.run([sys.executable, "-m", "iml_core", *args], capture_output=True, text=True, env=env)


def test_run_json_prints_one_summary_and_the_run_is_stored(tmp_path):
    db = tmp_path / "cli.duckdb"
    result = iml("run", "--steps", "5", "--batch-size", "8", "--eval-size", "50", "--seed", "3", "--db", str(db),
                 "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["run_id"] == 1 and summary["status"] == "completed" and summary["steps"] == 5
    assert 0 <= summary["final_eval_accuracy"] <= summary["best_eval_accuracy"] <= 1
    assert summary["db"] == str(db)

    runs = iml("runs", "--db", str(db))
    assert runs.returncode == 0
    assert "rule learner (no LLM)" in runs.stdout and "completed" in runs.stdout

    show = iml("show", "1", "--db", str(db))
    assert show.returncode == 0
    assert "momentum" in show.stdout and "notes after step 5" in show.stdout

    notes = iml("notes", "1", "--step", "5", "--db", str(db))
    assert notes.returncode == 0
    assert notes.stdout.strip() and notes.stdout.strip() in show.stdout


@pytest.mark.parametrize("flags, problem", [
    (["--momentum", "1.5"], "argument --momentum: Momentum must be between 0.0 and 1.0, got 1.5"),
    (["--steps", "abc"], "argument --steps: Steps must be a whole number, got 'abc'"),
    (["--batch-size", "0"], "Batch size must be between 1 and 1024, got 0"),
    (["--agent", "gpt"], "argument --agent: invalid choice: 'gpt'"),
    (["--task", "nope.csv"], "no such task file: nope.csv"),
    (["--eval-size", "3190"], "use an eval size of at most 3184"),
])
def test_bad_flags_exit_2_with_one_line_naming_the_problem(tmp_path, flags, problem):
    db = tmp_path / "bad.duckdb"
    result = iml("run", *flags, "--db", str(db))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_bad_input_writes_no_run(tmp_path):
    db = tmp_path / "bad.duckdb"
    assert iml("run", "--momentum", "-1", "--db", str(db)).returncode == 2
    assert iml("run", "--eval-size", "4000", "--db", str(db)).returncode == 2
    assert "no runs" in iml("runs", "--db", str(db)).stdout


def test_unknown_run_id_is_bad_input(tmp_path):
    result = iml("show", "7", "--db", str(tmp_path / "x.duckdb"))
    assert result.returncode == 2 and "there is no run 7" in result.stderr


def test_a_locked_database_names_the_holder_and_the_way_out(tmp_path):
    db = tmp_path / "locked.duckdb"
    holder = hold_lock(db)
    try:
        result = iml("run", "--steps", "1", "--db", str(db), env={**os.environ, "IML_DB_WAIT": "1"})
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2
    assert f"in use by process {holder.pid}" in result.stderr and "--db" in result.stderr
    assert "IML_DB_WAIT" in result.stderr
    assert "Traceback" not in result.stderr


def test_iml_db_environment_variable_chooses_the_file(tmp_path):
    import os
    env = {**os.environ, "IML_DB": str(tmp_path / "env.duckdb")}
    assert iml("run", "--steps", "1", "--eval-size", "20", "--json", env=env).returncode == 0
    assert (tmp_path / "env.duckdb").exists()


@pytest.mark.real_model  # it names this machine's llama.cpp build
def test_doctor_reports_llama_cpp_gpu_offload_and_a_server(tmp_path):
    with FaultServer([]) as server:
        result = iml("doctor", "--base-url", server.url)
    assert result.returncode == 0, result.stderr
    assert "llama.cpp 0.3.36-" in result.stdout and "GPU offload: " in result.stdout
    assert f"server {server.url}: answers; models: fault-model" in result.stdout
    down = iml("doctor", "--base-url", "http://127.0.0.1:9/v1", "--timeout", "2")
    assert down.returncode == 1 and "cannot reach a server at http://127.0.0.1:9/v1" in down.stdout
    assert iml("doctor", "--base-url", "not a url").returncode == 2


def test_sweep_flags_make_the_grid_and_json_lists_every_run(tmp_path):
    result = iml("sweep", "--momentum", "0,0.5", "--accumulation", "1,2", "--seed", "4", "--steps", "2",
                 "--eval-size", "20", "--json", "--db", str(tmp_path / "s.duckdb"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [(r["accumulation"], r["momentum"]) for r in summary["runs"]] == [(1, 0.0), (1, 0.5), (2, 0.0), (2, 0.5)]
    assert all(r["status"] == "completed" and r["steps"] == 2 for r in summary["runs"])
    assert summary["study"] == "sweep 1" and summary["ray_address"] is None


@pytest.mark.parametrize("grid, problem", [
    ("momentum = [0.0, 0.5]\nmomentun = 1\n", "unknown settings: momentun; known ones:"),
    ("momentum = [0.0,\n", "is not valid TOML"),
    ("momentum = []\n", "momentum has no values; give at least one"),
    ("seed = [0, 1]\nseeds = 2\n", "give either several seeds (--seed 0,1,2) or a count (--seeds 3), not both"),
])
def test_a_bad_grid_file_is_named_and_runs_nothing(tmp_path, grid, problem):
    path = tmp_path / "grid.toml"
    path.write_text(grid)
    result = iml("sweep", "--grid", str(path), "--db", str(tmp_path / "s.duckdb"))
    assert result.returncode == 2 and problem in result.stderr, result.stderr
    assert not (tmp_path / "s.duckdb").exists()


def test_doctor_makes_one_real_call_to_a_model(tiny_model):
    result = iml("doctor", "--model", str(tiny_model))
    assert result.returncode == 0, result.stderr
    assert re.search(r"model llama-server: tiny-llama\.gguf: answered '(yes|no)' in \d+\.\d\d s \(\d+ tokens in",
                     result.stdout), result.stdout
    in_process = iml("doctor", "--model", str(tiny_model), "--backend", "llama-cpp")
    assert re.search(r"model llama\.cpp: tiny-llama\.gguf: answered '(yes|no)' in ", in_process.stdout), in_process
    missing = iml("doctor", "--model", str(tiny_model) + ".missing")
    assert missing.returncode == 2 and "no model file" in missing.stderr


def test_a_mistyped_command_points_at_a_help_that_exists():
    result = iml("runz")
    assert result.returncode == 2 and "(see `python -m iml_core --help`)" in result.stderr
    result = iml("run", "--stepz", "3")
    assert result.returncode == 2 and "(see `python -m iml_core run --help`)" in result.stderr
    assert subprocess.run([sys.executable, "-m", "iml_core", "run", "--help"], capture_output=True).returncode == 0


def test_show_json_reads_a_run_without_sql(tmp_path):
    from iml_core.store import Store
    from iml_core.truth import TruthScorer
    from iml_core.tasks import generate_benchmark

    db = tmp_path / "show.duckdb"
    assert iml("run", "--steps", "3", "--eval-size", "40", "--eval-every", "2", "--db", str(db)).returncode == 0
    result = iml("show", "1", "--json", "--db", str(db))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    with Store(db) as store:
        steps = store.steps(1)
    assert report["config"]["eval_every"] == 2 and report["status"] == "completed"
    assert [s["step"] for s in report["steps"]] == [0, 1, 2, 3]
    assert [s["eval_accuracy"] for s in report["steps"]] == [s["eval_accuracy"] for s in steps]
    assert report["steps"][1]["eval_accuracy"] is None  # step 1 was not evaluated
    assert [(s["notes_words"], s["words_changed"]) for s in report["steps"]] == [
        (s["notes_words"], s["words_changed"]) for s in steps]
    scorer = TruthScorer(generate_benchmark("paper"))
    assert [s["rule_recall"] for s in report["steps"]] == [scorer.score(s["notes"]).rule_recall for s in steps]
    assert [s["discovery_rate"] for s in report["steps"]] == [scorer.score(s["notes"]).discovery_rate for s in steps]
    assert set(report["steps"][3]["verdicts"]) == {"Florp", "Zindle", "Quarrow", "Brimlet"}
    assert set(report["steps"][3]["phases"]) == {"infer", "induce", "revise", "eval"}
    seconds = sum(p["seconds"] for s in report["steps"] for p in s["phases"].values())
    assert abs(seconds - sum(s[f"seconds_{p}"] for s in steps for p in ("infer", "induce", "revise", "eval"))) < 1e-9


def test_the_offline_learner_learns_a_generated_task_and_show_reports_its_discovery_rate(tmp_path):
    db = str(tmp_path / "rules.duckdb")
    spec = "rules:classes=2,attributes=3,relevant=1"
    run = iml("run", "--task", spec, "--agent", "offline", "--db", db, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["final_eval_accuracy"] == 1.0
    report = json.loads(iml("show", "1", "--json", "--db", db).stdout)
    assert report["task"] == ("rules:classes=2,attributes=3,values=2,relevant=1,form=table,noise=0,domain=creatures,"
                              "samples=1000,seed=0")
    assert report["config"]["task"] == spec
    first, last = report["steps"][0], report["steps"][-1]
    assert first["discovery_rate"] == 0.0 and first["notes_words"] == 0  # empty notes discover nothing
    assert last["discovery_rate"] == 1.0 and last["rule_recall"] == 1.0 and last["eval_accuracy"] == 1.0

    bad = iml("run", "--task", "rules:classes=3", "--db", db)
    assert bad.returncode == 2 and "classes=3 needs at least 3 combinations" in bad.stderr, bad.stderr


def test_ladder_runs_every_rung_over_three_seeds_with_its_baselines(tmp_path):
    import pandas as pd

    from iml_core import ladder_results
    from iml_core.studies import LADDER

    result = iml("ladder", "--steps", "20", "--eval-size", "100", "--db", str(tmp_path / "ladder.duckdb"), "--json")
    assert result.returncode == 0, result.stderr
    ladder = json.loads(result.stdout)
    rungs = ladder["rungs"]
    assert [r["rung"] for r in rungs] == [1, 2, 3, 4, 5] and len(ladder["run_ids"]) == 15
    assert all(r["seeds"] == 3 and None not in (r["no notes"], r["majority"], r["in-context"], r["oracle"])
               for r in rungs)
    first = rungs[0]  # one binary rule: the rule learner finds it, and its oracle notes hold it
    assert first["learned"] == 1.0 and first["oracle"] == 1.0 and first["applies"] and first["learns"]
    assert rungs[-1]["learned"] < first["learned"]  # the ladder gets harder
    assert ladder["verdict"].startswith("It applies the rule it is given on every rung measured (5 of 5). It stops "
                                        "learning at rung 4 (3 relevant, 3 classes, noise 0.1)")
    without_baselines = ladder_results.ladder_table(pd.DataFrame([
        {"id": i, "task": rung.task(0), "final_eval_accuracy": 0.9} for i, rung in enumerate(LADDER)]),
        pd.DataFrame(columns=["run_id", "kind", "accuracy"]))
    assert (ladder_results.ladder_verdict(without_baselines)
            == "Not measured yet: no rung's baselines have been computed.")


def test_one_table_of_exit_codes_and_a_command_s_code_from_its_runs_statuses():
    from iml_core.cli.exits import Exit, exit_for
    from iml_core.status import Status

    assert [int(code) for code in Exit] == [0, 1, 2, 3, 130]
    assert exit_for([Status.COMPLETED]) == Exit.OK
    assert exit_for([Status.COMPLETED, Status.BUDGET_REACHED]) == Exit.BUDGET_REACHED
    assert exit_for([Status.BUDGET_REACHED, Status.FAILED]) == Exit.FAILED
    assert exit_for([Status.CANCELLED]) == Exit.FAILED
