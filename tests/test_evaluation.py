"""Scoring notes without learning, the baselines of a run, and which lines of the notes matter."""

import json
import subprocess
import sys

import pytest

from iml_core.backends import PromptTooLong
from iml_core.config import RunConfig
from iml_core.errors import UserError
from iml_core.evaluation import ablate, baseline, in_context, oracle_notes, score_notes
from iml_core.learner import SampleStream
from iml_core.runner import create_run, execute_run
from iml_core.tasks import generate_benchmark

PAPER = generate_benchmark("paper")


def test_the_rule_learner_reads_oracle_notes_and_a_class_s_line_carries_that_class():
    config = RunConfig(eval_size=200, seed=3)
    notes = oracle_notes(PAPER, "offline")
    assert notes.splitlines()[0] == "- Florp: colour is red (100%), tail is long (100%)."
    whole = score_notes(config, notes, kind="oracle")
    assert whole.accuracy >= 0.95 and whole.invalid == 0
    # With all four lines, any one is redundant: each of its class's samples contradicts the three
    # other lines, so the learner names the class the notes leave undescribed. Nothing changes.
    _, _, effects = ablate(config, notes, source="oracle")
    assert [(e.change, e.answers_changed) for e in effects] == [(0.0, 0)] * 4
    # With two lines, a class's line is what tells it from the two undescribed classes: without it,
    # its samples fall to a three-way tie, broken at random, and only that class suffers.
    two = "\n".join(notes.splitlines()[:2])
    whole, without, effects = ablate(config, two, source="oracle, Florp and Zindle")
    assert whole.per_class["Florp"][0] == whole.per_class["Florp"][1]
    florp_right, florp_total = without[0].per_class["Florp"]
    assert florp_right / florp_total < 0.5 and effects[0].change < 0 and effects[0].answers_changed > 0
    assert without[0].per_class["Zindle"] == whole.per_class["Zindle"]  # Zindle keeps its line


def test_oracle_notes_for_a_language_model_are_plain_sentences():
    assert oracle_notes(PAPER, "llm").splitlines() == [
        "A creature that is red and has a long tail is a Florp.",
        "A creature that is red and has a short tail is a Zindle.",
        "A creature that is blue and has a long tail is a Brimlet.",
        "A creature that is blue and has a short tail is a Quarrow."]


def test_the_baselines_of_an_offline_run(store):
    config = RunConfig(steps=4, eval_size=100, seed=1)
    execute_run(store, run_id := create_run(store, config))
    no_notes = baseline("no notes", config)
    assert no_notes.accuracy == store.steps(run_id)[0]["eval_accuracy"]  # the floor is step 0
    majority = baseline("majority", config)
    top = majority.notes_source.removeprefix("always ")
    assert majority.accuracy == sum(p.label == top for p in majority.predictions) / 100
    fitted = in_context(config, 12)
    assert fitted.shots == 12 and fitted.notes.startswith("- ")
    assert "fitted on 12 training examples" in fitted.notes_source
    stream = SampleStream(PAPER, 1, 100)
    words = [len(f"{s.text} {s.label}".split()) for s in stream.minibatch(0, 20)]
    shots = in_context(config).shots  # as many examples as fit the 300-word cap
    assert sum(words[:shots]) <= 300 < sum(words[:shots + 1])
    with pytest.raises(UserError, match=r"99999 in-context examples asked, but the training stream of paper has "
                                        r"3100; give --shots from 1 to 3100"):
        in_context(config, 99999)


def test_the_in_context_prompt_is_exact(store, tiny_model):
    config = RunConfig(agent="llm", backend="llama-cpp", model=str(tiny_model), eval_size=3, seed=2)
    evaluation = in_context(config, 2, cache=store.responses)
    stream = SampleStream(PAPER, 2, 3)
    examples, asked = stream.minibatch(0, 2), stream.eval  # the first two of the training stream
    system = ("You sort each creature into exactly one of these classes: Florp, Zindle, Quarrow, Brimlet.\n"
              "Here are 2 creatures whose class is known:\n"
              + "\n".join(f"- {s.text} Class: {s.label}" for s in examples))
    assert [c.prompt for c in evaluation.calls] == [
        f"[system]\n{system}\n\n[user]\n{s.text}\nWhich class is it? Answer with the class name only." for s in asked]
    assert all(p.predicted in PAPER.classes for p in evaluation.predictions)  # the label grammar holds
    again = in_context(config, 2, cache=store.responses)
    assert all(c.cached for c in again.calls)
    assert [p.predicted for p in again.predictions] == [p.predicted for p in evaluation.predictions]


def iml(*args):
    return subprocess.run([sys.executable, "-m", "iml_core", *args], capture_output=True, text=True)


def test_evaluate_baseline_and_ablate_from_the_command_line(tmp_path):
    db = str(tmp_path / "e.duckdb")
    assert iml("run", "--steps", "5", "--eval-size", "100", "--db", db).returncode == 0
    scored = iml("evaluate", "1", "--step", "5", "--json", "--db", db)
    assert scored.returncode == 0, scored.stderr
    result = json.loads(scored.stdout)
    assert {"evaluation_id", "accuracy", "invalid", "per_class", "eval_size", "notes_source"} <= set(result)
    shown = json.loads(iml("show", "1", "--json", "--db", db).stdout)
    assert result["accuracy"] == shown["steps"][5]["eval_accuracy"] and result["notes_source"] == "run 1 step 5"
    transfer = json.loads(iml("evaluate", "1", "--step", "5", "--task", "noisy", "--json", "--db", db).stdout)
    assert transfer["eval_size"] == 100 and transfer["evaluation_id"] == result["evaluation_id"] + 1
    oracle = json.loads(iml("evaluate", "--oracle", "--json", "--db", db).stdout)
    assert oracle["accuracy"] >= 0.95 and oracle["kind"] == "oracle"
    baselines = json.loads(iml("baseline", "1", "--json", "--db", db).stdout)
    assert [b["kind"] for b in baselines] == ["no notes", "majority", "in-context", "equal-token", "oracle"]
    ablation = json.loads(iml("ablate", "1", "--step", "5", "--eval-size", "60", "--json", "--db", db).stdout)
    assert ablation["eval_size"] == 60 and len(ablation["sentences"]) >= 4
    assert all(abs(line["change"] - (line["accuracy_without"] - ablation["accuracy"])) < 1e-12
               for line in ablation["sentences"])

    from iml_core.store import Store
    with Store(db) as store:
        before = len(store.evaluations_frame())
    csv = tmp_path / "t.csv"
    csv.write_text("colour,label\n" + "red,a\nblue,b\n" * 20)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    for args, problem in [
        (["evaluate", "1", "--step", "9"], "run 1 has no step 9; its steps go from 0 to 5"),
        (["evaluate", "--oracle", "--task", str(csv), "--eval-size", "10"], "has no rule card"),
        (["baseline", "1", "--kind", "in-context", "--shots", "99999"], "99999 in-context examples asked"),
        (["evaluate", "--notes-file", str(empty)], "are empty"),
    ]:
        failed = iml(*args, "--db", db)
        assert failed.returncode == 2 and problem in failed.stderr and failed.stderr.count("\n") == 1, failed.stderr
    with Store(db) as store:
        assert len(store.evaluations_frame()) == before  # bad input wrote nothing


def test_in_context_examples_that_overflow_the_context_name_both_numbers(store, tiny_model):
    config = RunConfig(agent="llm", backend="llama-cpp", model=str(tiny_model), eval_size=2, n_ctx=512)
    with pytest.raises(PromptTooLong, match=r"the prompt has (\d+) tokens and the answer may take 24, more than the "
                                        r"context of 512; raise n_ctx, or lower the note word cap or the in-context"):
        in_context(config, 40, cache=store.responses)
    assert len(store.evaluations_frame()) == 0


def test_the_cost_of_missing_baselines_is_told_before_they_are_computed(store):
    from fault_server import FaultServer

    from iml_core.evaluation import compute_baselines, plan_baselines

    with FaultServer([]) as server:  # a fake server, named as such: it answers every call with 20 + 5 tokens
        config = RunConfig(agent="llm", backend="openai", base_url=server.url, model="m", steps=1, batch_size=2,
                           eval_size=4, max_note_words=40, structured_output="json_object", price_in=2.0,
                           price_out=10.0)
        run_id = create_run(store, config)
        execute_run(store, run_id)
        plan = plan_baselines(store, [run_id])
        assert plan.missing == {run_id: ["no notes", "majority", "in-context", "equal-token", "oracle"]}
        assert plan.model_calls == 4 * 4 and plan.tokens == 16 * 25  # the majority class asks no model
        assert plan.cost == pytest.approx(16 * (20 * 2.0 + 5 * 10.0) / 1e6)
        requests = len(server.requests)
        compute_baselines(store, run_id)
        assert len(server.requests) - requests <= plan.model_calls  # at most: the cache answers no notes
    assert plan_baselines(store, [run_id]).missing == {}


def test_a_study_s_baselines_started_beside_its_runs_score_each_run_s_last_notes(store):
    import threading
    import time

    from iml_core.evaluation import baselines_job, learned_so_far

    # Two runs that differ only in how they learn share one set of baselines, on the first.
    configs = [RunConfig(steps=4, eval_size=60, seed=2), RunConfig(steps=4, eval_size=60, seed=2, momentum=0.5)]
    run_ids = [create_run(store, config) for config in configs]
    failures = []
    job = threading.Thread(target=lambda: _catching(baselines_job(store, run_ids, poll_seconds=0.05), failures))
    job.start()
    # The job has begun (the shared baselines are stored) before either run has learned a step:
    # what the dashboard does when it queues a study with its baselines beside it.
    deadline = time.monotonic() + 60
    while "oracle" not in set(store.baselines(run_ids)["kind"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.is_alive(), "the job ended before the runs it waits for ran"
    for run_id in run_ids:
        execute_run(store, run_id)
    job.join(timeout=60)
    assert not job.is_alive() and failures == []
    stored = store.baselines(run_ids)
    assert sorted(stored[stored["run_id"] == run_ids[0]]["kind"]) == [
        "equal-token", "in-context", "majority", "no notes", "oracle"]
    assert list(stored[stored["run_id"] == run_ids[1]]["kind"]) == ["equal-token"]
    own = store.evaluations_frame(run_ids).query("kind == 'equal-token'").set_index("run_id")
    for run_id in run_ids:
        _, seen = learned_so_far(store, run_id)
        assert seen == 4 * configs[0].batch_size * configs[0].accumulation
        assert f"of {seen} training samples seen" in own.loc[run_id, "notes_source"]


def _catching(work, failures: list) -> None:
    try:
        work()
    except Exception as e:  # the test asserts none, with its message
        failures.append(repr(e))


def test_every_baseline_kind_is_computed_drawn_and_stored_by_one_table_each():
    from iml_core.baseline_kinds import Baseline
    from iml_core.charts import BASELINE_STYLES
    from iml_core.evaluation import BASELINE_MAKERS
    from iml_core.store import Served

    assert set(BASELINE_MAKERS) == set(BASELINE_STYLES) == set(Baseline)
    assert all(Served.evaluation(kind) == Served.BASELINE for kind in Baseline)
    assert Served.evaluation("notes") == Served.EVALUATION and Baseline.of("ablation") is None
    with pytest.raises(UserError, match="unknown baseline 'floor'; choose from no notes, majority"):
        baseline("floor", RunConfig())
