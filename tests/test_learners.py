"""Learners (iml_core.learners): IML unchanged byte for byte, the hypothesis bank and the score
gate on the offline rule learner (no model) and on a recording stand-in for a model backend
(tests/test_prompts.py's, named as such), their candidates stored, and resume exact."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest

from iml_core import render
from iml_core.agents import PhaseName
from iml_core.agents.llm import LLMAgent, rule_lines
from iml_core.agents.offline import OfflineRuleLearner
from iml_core.backends import Completion
from iml_core.budget import Budget, Limits
from iml_core.config import RunConfig
from iml_core.errors import BudgetReached
from iml_core.learner import learning_steps
from iml_core.runner import create_run, execute_run
from iml_core.tasks import load_task

from conftest import offline_history
from test_prompts import DictCache, RecordingBackend

RUNG_1 = "rules:classes=2,attributes=6,relevant=1,noise=0.0,seed=1"  # skin decides: scales Florp, fur Zindle


class ProposingBackend(RecordingBackend):
    """Not a model: the recording stand-in, whose written answers are two numbered rules."""

    def text(self, messages, *, temperature, seed, max_tokens, prefix=""):
        return Completion("1. Red ones are Florp.\n2. Blue ones are Zindle.", "1. Red ones are Florp.\n"
                          "2. Blue ones are Zindle.", tokens_in=10, tokens_out=12)


def recorded_run(layout: str, backend=RecordingBackend, **settings):
    config = RunConfig(**{**dict(task="paper", agent="llm", backend="openai", model="recording", steps=3,
                                 batch_size=4, accumulation=2, eval_size=6, eval_every=2, momentum=0.5,
                                 max_note_words=40, prompt_layout=layout), **settings})
    task, cache = load_task("paper"), DictCache()
    records = list(learning_steps(task, LLMAgent(task, backend(), cache=cache, layout=layout), config))
    return records, cache


# Computed by the code before learners were a choice (commit 9aa8429), over every response-cache key,
# every prompt and answer in the model-call log, the notes, batch notes, predictions and momentum
# bookkeeping of a 3-step IML run: a change to any of them changes these.
BEFORE_LEARNERS = {"system": "6b9fcb93d3e59b599cbf4b8a6e1d9813b7e12149c2d0c8317e070a8d2a9dc6c4",
                   "plain": "b358fc279aa725805c8aba11b8f778c544eb1742334fe2196112e456307a0e9b"}


@pytest.mark.parametrize("layout", sorted(BEFORE_LEARNERS))
def test_iml_learner_asks_and_stores_exactly_what_runs_did_before_learners(layout):
    records, cache = recorded_run(layout)
    data = {"keys": sorted(cache), "steps": [
        [r.step, r.notes, r.train_accuracy, r.eval_accuracy, r.batch_notes, r.prefix_words, r.prefix_kept_by_model,
         r.words_truncated, r.words_changed, [[str(p), c.prompt, c.response] for p, c in r.calls],
         [[p.phase, p.minibatch, p.sample_id, p.predicted, p.raw, p.note_sentence] for p in r.predictions]]
        for r in records]}
    assert hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest() == BEFORE_LEARNERS[layout]
    assert all(r.candidates == [] and r.state is None for r in records)


def test_the_bank_finds_the_deciding_attribute_and_says_why_each_candidate_won_or_lost():
    history = offline_history(task=RUNG_1, learner="bank", steps=3, batch_size=8, eval_size=40,
                              proposal_style="one-feature")
    assert history[0].eval_accuracy < 0.7 and history[-1].eval_accuracy == 1.0
    assert history[-1].notes == "- Florp: skin is scales (100%).\n- Zindle: skin is fur (100%)."
    first = history[1].candidates
    assert [c.decision for c in first].count("chosen") == 1
    chosen = next(c for c in first if c.decision == "chosen")
    assert chosen.text == history[1].notes and chosen.right == chosen.scored == 8
    assert all(c.right <= chosen.right and c.reason for c in first)
    assert {c.decision for c in first} <= {"chosen", "kept", "rejected"}
    # The bank is carried: a later step scores the rules it kept again, the notes first.
    later = history[3].candidates
    assert later[0].origin == "notes" and later[0].text == history[2].notes
    assert [c.text for c in later if c.origin in ("notes", "bank")] == json.loads(history[2].state)
    assert later[0].scored == 24  # the window grows to the samples seen: 3 steps of 8
    # Notes right on every sample cannot be beaten by the margin: the proposals are not scored.
    proposals = [c for c in later if c.origin == "proposal"]
    assert proposals and all(c.scored is None and c.decision == "rejected" and "not scored" in c.reason
                             for c in proposals)


def test_a_free_proposal_joins_a_spurious_feature_that_one_feature_proposals_leave_out():
    free = offline_history(task=RUNG_1, learner="bank", steps=2, batch_size=8, eval_size=40, proposal_style="free")
    one = offline_history(task=RUNG_1, learner="bank", steps=2, batch_size=8, eval_size=40)
    assert "colour" in free[-1].notes and "colour" not in one[-1].notes


def test_the_rule_that_is_the_notes_is_replaced_only_by_one_beating_it_by_the_margin():
    held = offline_history(task=RUNG_1, learner="bank", steps=2, batch_size=8, eval_size=40,
                           initial_notes="- Florp: colour is red (100%).\n- Zindle: colour is blue (100%).",
                           margin=1.0)
    assert held[-1].notes.startswith("- Florp: colour is red")
    notes = held[1].candidates[0]
    assert notes.origin == "notes" and notes.decision == "chosen" and "margin" in notes.reason
    moved = offline_history(task=RUNG_1, learner="bank", steps=2, batch_size=8, eval_size=40,
                            initial_notes=held[0].notes, margin=0.0)
    assert "skin" in moved[-1].notes and moved[1].candidates[0].decision in ("replaced", "kept")


class WorseningRevision(OfflineRuleLearner):
    """Injects a fault: the real rule learner, whose revision always writes notes that say the opposite."""

    def revise(self, notes, batch_notes, required_prefix, max_words, phase):
        return "- Florp: skin is fur (100%).\n- Zindle: skin is scales (100%)."


def test_the_gate_keeps_the_notes_when_the_revision_scores_worse_and_keeps_the_rejected_revision():
    config = RunConfig(task=RUNG_1, learner="gated", steps=2, batch_size=8, eval_size=40, momentum=0.0,
                       initial_notes="- Florp: skin is scales (100%).\n- Zindle: skin is fur (100%).")
    task = load_task(RUNG_1)
    records = list(learning_steps(task, WorseningRevision(task.attributes, task.classes), config))
    assert records[-1].notes == config.initial_notes and records[-1].eval_accuracy == 1.0
    old, new = records[1].candidates
    assert (old.origin, old.decision, old.right, old.scored) == ("notes", "chosen", 8, 8)
    assert (new.origin, new.decision, new.right) == ("revision", "rejected", 0)
    assert new.text.startswith("- Florp: skin is fur") and "rejected" in new.reason
    # Without the gate, IML takes the worse revision.
    iml = list(learning_steps(task, WorseningRevision(task.attributes, task.classes), config.replace(learner="iml")))
    assert iml[-1].eval_accuracy == 0.0


def test_scoring_calls_are_their_own_phase_go_through_the_cache_and_count_against_the_budget():
    records, cache = recorded_run("plain", ProposingBackend, learner="bank", proposals=2, score_window=16)
    phases = {str(p) for r in records for p, _ in r.calls}
    assert phases == {"infer", "induce", "score", "eval"}
    first = [c for p, c in records[1].calls if p == PhaseName.SCORE]
    later = [c for p, c in records[2].calls if p == PhaseName.SCORE]
    assert first and not any(c.cached for c in first)
    assert any(c.cached for c in later)  # a kept rule met again on a sample it answered before
    assert records[1].seconds.get("score", 0) > 0
    config = RunConfig(task="paper", agent="llm", backend="openai", model="recording", steps=2, batch_size=4,
                       eval_size=6, learner="bank", proposals=2, max_calls=6 + 4 + 1 + 3)
    task = load_task("paper")
    agent = LLMAgent(task, ProposingBackend(), layout="plain")
    steps = learning_steps(task, agent, config, budget=Budget(Limits.of(config)))
    with pytest.raises(BudgetReached):
        list(steps)
    assert agent.drain_calls()[-1].phase == PhaseName.SCORE  # the budget stopped a scoring call


def test_model_rules_are_read_from_a_numbered_list():
    text = '1. A creature with scales is a Florp.\n2) "A creature with fur is a Zindle."\n\n- Large ones are Florp.\nok'
    assert rule_lines(text, 4) == ["A creature with scales is a Florp.", "A creature with fur is a Zindle.",
                                   "Large ones are Florp."]
    assert rule_lines(text, 1) == ["A creature with scales is a Florp."]


def test_a_bank_needs_the_right_class_as_feedback():
    problems = RunConfig(learner="bank", feedback="binary").problems()
    assert any("bank learner" in p and "--feedback label" in p for p in problems)
    assert RunConfig(learner="gated", feedback="binary").problems() == []


def test_a_bank_run_stores_its_candidates_and_resumes_with_its_bank(store, tmp_path):
    config = RunConfig(task=RUNG_1, learner="bank", steps=4, batch_size=8, eval_size=40, proposal_style="free")
    whole = create_run(store, config)
    execute_run(store, whole)
    stopped, cancel = create_run(store, config), threading.Event()
    execute_run(store, stopped, cancel=cancel, on_step=lambda r: r.step == 2 and cancel.set())
    assert store.run(stopped)["status"] == "cancelled" and len(store.steps(stopped)) == 3
    execute_run(store, stopped)

    def kept(run_id):
        steps = [(s["step"], s["notes"], s["eval_accuracy"], s["learner_state"]) for s in store.steps(run_id)]
        return steps, store.candidates(run_id)

    assert kept(stopped) == kept(whole)
    candidates = store.candidates(whole, 3)
    assert {c["origin"] for c in candidates} >= {"notes", "bank", "proposal"}  # step 3 weighed the bank it held
    assert [c["decision"] for c in candidates].count("chosen") == 1
    shown = render.candidates(candidates + [{**candidates[0], "text": "<script>alert(1)</script>", "minibatch": 0}])
    assert "<script>" not in shown and "&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert shown.count('class="iml-candidate"') == len(candidates) + 1 and "of minibatch 1" in shown
    store.delete_runs([whole])
    assert store.candidates(whole) == []


def test_migration_16_keeps_every_model_call_and_lets_the_score_phase_in(tmp_path):
    from iml_core.store import Store

    path = tmp_path / "fifteen.duckdb"
    with Store(path, migrate_to=15) as old, old.held() as cursor:
        cursor.execute(
            """INSERT INTO model_calls (run_id, step, phase, prompt, response, tokens_in, tokens_out, tokens_cached,
                   duration_ms, cached, served) VALUES (1, 1, 'induce', 'p', 'r', 3, 2, 1, 5.0, false, 'step')""")
        with pytest.raises(Exception, match="CHECK"):
            cursor.execute(
                """INSERT INTO model_calls (run_id, step, phase, prompt, response, tokens_in, tokens_out,
                       tokens_cached, duration_ms, cached, served) VALUES (1, 1, 'score', 'p', 'r', 1, 1, 0, 1.0,
                       false, 'step')""")
    with Store(path) as store:
        assert [(c["id"], c["phase"], c["tokens_cached"]) for c in store.model_calls(1)] == [(1, "induce", 1)]
        with store.held() as cursor:
            cursor.execute(
                """INSERT INTO model_calls (run_id, step, phase, prompt, response, tokens_in, tokens_out,
                       tokens_cached, duration_ms, cached, served) VALUES (1, 2, 'score', 'p', 'r', 1, 1, 0, 1.0,
                       false, 'step')""")
        assert [c["phase"] for c in store.model_calls(1)] == ["induce", "score"]


def test_the_edit_scores_each_feature_of_a_free_rule_alone_and_the_deciding_one_wins():
    free = offline_history(task=RUNG_1, learner="bank", steps=1, batch_size=8, eval_size=40, proposal_style="free",
                           bank_size=1, edit=True)
    edits = [c for c in free[1].candidates if c.origin == "edit"]
    assert {c.text.split(":")[1].split(" is ")[0].strip() for c in edits} == {"skin", "colour"}
    chosen = next(c for c in free[1].candidates if c.decision == "chosen")
    assert chosen.origin == "edit" and chosen.text == "- Florp: skin is scales (100%).\n- Zindle: skin is fur (100%)."
    assert free[1].notes == chosen.text and chosen.right == chosen.scored


WRONG = "- Florp: skin is fur (100%).\n- Zindle: skin is scales (100%).\n- Florp: colour is red (100%)."


def test_the_playbook_drops_a_bullet_that_keeps_misleading_and_learns_the_rule():
    history = offline_history(task=RUNG_1, learner="playbook", steps=4, batch_size=8, eval_size=40,
                              initial_notes=WRONG)
    assert history[0].eval_accuracy == 0.0 and history[-1].eval_accuracy == 1.0
    dropped = [c for c in history[2].candidates if c.decision == "replaced"]
    assert [(c.text, c.reason) for c in dropped] == [("- Florp: colour is red (100%).",
                                                      "helpful 0, harmful 3: dropped as harmful")]
    assert all(c.origin == "operation" and c.decision == "chosen" for c in history[1].candidates)
    bullets = json.loads(history[-1].state)
    assert "\n".join(b["text"] for b in bullets) == history[-1].notes


class OperatingBackend(RecordingBackend):
    """Not a model: the recording stand-in, whose written answers are playbook operations, one naming no bullet."""

    def text(self, messages, *, temperature, seed, max_tokens, prefix=""):
        ops = "ADD: Red ones are Florp.\nEDIT 1: Blue ones are Zindle.\nREMOVE 7\nsome chatter"
        return Completion(ops, ops, tokens_in=10, tokens_out=12)


def test_playbook_operations_from_a_model_are_applied_in_order_and_one_naming_no_bullet_is_rejected():
    records, _ = recorded_run("plain", OperatingBackend, learner="playbook", accumulation=1, steps=1)
    assert records[1].notes == "Red ones are Florp."  # the step began with no bullet: EDIT 1 names none
    decisions = [(c.text, c.decision) for c in records[1].candidates]
    assert decisions == [("ADD: Red ones are Florp.", "chosen"), ("EDIT 1: Blue ones are Zindle.", "rejected"),
                         ("REMOVE 7", "rejected")]


def test_the_ladder_compares_learners_per_rung_on_the_baselines_their_rung_and_seed_share():
    import pandas as pd

    from iml_core import ladder_results
    from iml_core.studies import LADDER, ladder_study

    configs = ladder_study(RunConfig(), seeds=2, rungs=[1], learners=["iml", "bank"])
    assert [(c.learner, c.seed) for c in configs] == [("iml", 0), ("iml", 1), ("bank", 0), ("bank", 1)]
    runs = pd.DataFrame({"id": [1, 2, 3, 4], "task": [c.task for c in configs], "seed": [c.seed for c in configs],
                         "learner": [c.learner for c in configs], "final_eval_accuracy": [0.5, 0.5, 1.0, 0.9]})
    # The shared baselines were computed on the first learner's runs; each run has its own equal-token one.
    baselines = pd.DataFrame([(1, "no notes", 0.5), (2, "no notes", 0.4), (1, "oracle", 1.0), (2, "oracle", 0.9),
                              (1, "equal-token", 0.7), (2, "equal-token", 0.5), (3, "equal-token", 0.45),
                              (4, "equal-token", 0.55)], columns=["run_id", "kind", "accuracy"])
    table = ladder_results.ladder_table(runs, baselines).set_index("learner")
    assert list(table.index) == ["iml", "bank"] and set(table["task"]) == {LADDER[0].name}
    assert table.loc["bank", "no notes"] == table.loc["iml", "no notes"] == pytest.approx(0.45)
    assert table.loc["bank", "oracle"] == pytest.approx(0.95)
    assert table.loc["iml", "equal-token"] == pytest.approx(0.6) and table.loc["bank", "equal-token"] == 0.5
    assert table.loc["bank", "learned"] == pytest.approx(0.95) and bool(table.loc["bank", "learns"])
    assert not table.loc["iml", "learns"]
    verdict = ladder_results.ladder_verdict(table.reset_index())
    assert "With the iml learner it stops learning at rung 1" in verdict
    assert "With the bank learner it learns on every rung" in verdict


def test_the_calls_a_step_is_expected_to_make_are_those_it_makes_not_a_bound():
    from iml_core import analysis
    from iml_core.registry import step_calls

    text_bank = RunConfig(agent="llm", backend="llama-server", model="m", learner="bank", proposals=2, bank_size=3,
                          score_window=32, batch_size=8, steps=6)
    # The window holds the samples seen so far: 8 at step 1, 32 from step 4.
    assert [step_calls(text_bank, 10, step)["score"] for step in (1, 2, 4, 6)] == [5 * 8, 5 * 16, 5 * 32, 5 * 32]
    rule_bank = text_bank.replace(notes_form="rule", apply="rule")
    # A yes/no question per attribute (the paper preset has 10) and one refinement; the engine scores
    # and applies, so no answers and no scoring calls.
    assert step_calls(rule_bank, 10, 3) == {"infer": 0, "induce": 11, "score": 0}
    assert analysis.calls_per_run(rule_bank) == {"infer": 0, "induce": 66, "score": 0, "eval": 7 * 200}


def test_the_bank_scores_a_two_class_rule_again_with_its_classes_swapped_when_it_is_far_below_chance(
        store, monkeypatch):
    """A fault a real model makes on its own time, injected here: the proposal names the deciding
    feature with the two classes the wrong way round (Qwen2.5-Coder-1.5B on rung 1: 0 of 8)."""
    from iml_core.agents.offline import OfflineRuleLearner, rule_card_notes
    from iml_core.builders import build_task
    from iml_core.studies import LADDER

    config = RunConfig(task=LADDER[0].task(0), learner="bank", proposals=1, score_window=16, batch_size=8,
                       steps=2, eval_size=40, seed=1)
    task = build_task(config)
    true_rule = rule_card_notes(task)
    a, b = task.classes
    swapped = true_rule.replace(a, "\0").replace(b, a).replace("\0", b)
    monkeypatch.setattr(OfflineRuleLearner, "propose", lambda self, *args: [swapped])
    run_id = create_run(store, config)
    execute_run(store, run_id)
    weighed = {c["origin"]: c for c in store.candidates(run_id, 1)}
    assert weighed["proposal"]["right"] <= 0.25 * weighed["proposal"]["scored"]
    assert weighed["flip"]["text"] == true_rule and weighed["flip"]["right"] == weighed["flip"]["scored"]
    assert weighed["flip"]["decision"] == "chosen" and store.steps(run_id)[-1]["eval_accuracy"] == 1.0
