"""What the notes know and where learning goes wrong: truth scoring, line attribution, alarms and
cost by phase, each checked against answers worked out by hand."""

from collections import Counter

import pandas as pd
import pytest

from iml_core.agents import Phase
from iml_core.agents.offline import OfflineRuleLearner
from iml_core.analysis import REPETITION_SHARE, STALL_STEPS, alarms
from iml_core.attribution import note_units
from iml_core.config import RunConfig
from iml_core.diff import repetition
from iml_core.runner import create_run, execute_run
from iml_core.agents.llm import rule_card_notes
from iml_core.agents.offline import rule_card_notes as offline_rule_card_notes
from iml_core.tasks import Observation, generate_benchmark, load_task
from iml_core.truth import TruthScorer

from conftest import offline_history
from fault_server import FaultServer

# Florp: red, long tail; Zindle: red, short; Brimlet: blue, long; Quarrow: blue, short
PAPER = generate_benchmark("paper")


def verdicts(score):
    return {v.name: v.verdict for v in score.classes}


def test_complete_rules_in_any_wording_recall_everything():
    notes = ("- Florp: colour is red (97%), tail is long (95%).\n"
             "Zindles are red and have a short tail. Brimlet creatures are blue with long tails.\n"
             "Quarrow: blue, short tail.")
    score = TruthScorer(PAPER).score(notes)
    assert score.rule_recall == 1.0 and score.distractors == 0
    assert set(verdicts(score).values()) == {"complete"}


def test_negated_values_are_not_citations():
    notes = ("Florps are red and never blue, with long tails, not short ones. Zindle: red, short tail. "
             "Brimlets are not red or short-tailed: blue with a long tail. Quarrow: blue, short tail.")
    score = TruthScorer(PAPER).score(notes)
    assert score.rule_recall == 1.0 and set(verdicts(score).values()) == {"complete"}
    assert TruthScorer(PAPER).cited("has no horns, not a long tail") == {}  # a paper creature has no horns


def test_long_runs_are_scored_at_evenly_spaced_steps():
    from iml_core.analysis import truth_curve
    steps = [{"step": i, "notes": "- Florp: colour is red, tail is long." if i % 2 else ""} for i in range(1001)]
    curve = truth_curve(TruthScorer(PAPER), steps, most=11)
    assert curve["step"].tolist() == list(range(0, 1001, 100))
    assert curve["rule_recall"].tolist() == [0.0] * 11  # even steps have empty notes
    assert truth_curve(TruthScorer(PAPER), steps[:5], most=11)["rule_recall"].tolist() == [0, 0.25, 0, 0.25, 0]
    assert truth_curve(TruthScorer(PAPER), steps[:5], most=11)["discovery_rate"].tolist() == [0, 0.25, 0, 0.25, 0]


def test_a_missing_class_and_a_wrong_value_are_named():
    notes = ("- Florp: colour is red, tail is long.\n- Zindle: colour is red, tail is short.\n"
             "- Brimlet: colour is red, tail is long.")  # Brimlet is blue; Quarrow is not described
    score = TruthScorer(PAPER).score(notes)
    assert verdicts(score) == {"Florp": "complete", "Zindle": "complete", "Brimlet": "wrong", "Quarrow": "missing"}
    brimlet = next(v for v in score.classes if v.name == "Brimlet")
    assert brimlet.wrong == ("colour",) and brimlet.recalled == ("tail",)
    assert score.rule_recall == pytest.approx(5 / 8)  # 2 + 2 + 1 + 0 of 8 (class, deciding attribute) pairs


def test_notes_citing_only_distractors_recall_nothing_and_count_them():
    notes = ("Florp eats plants and lives in the forest. Zindle has feathered wings and sings.\n"
             "- Brimlet: size is large (70%).")
    score = TruthScorer(PAPER).score(notes)
    assert score.rule_recall == 0.0
    assert score.distractors == 5  # diet, habitat, wing type, call, size
    assert verdicts(score) == {"Florp": "no rule", "Zindle": "no rule", "Brimlet": "no rule", "Quarrow": "missing"}


def discovery(score):
    return {v.name: v.discovery for v in score.classes}


@pytest.mark.parametrize("notes, rate, by_class", [
    # The rule card as either agent writes it: every rule found and right.
    (rule_card_notes(PAPER), 1.0, {"Florp": 1.0, "Zindle": 1.0, "Brimlet": 1.0, "Quarrow": 1.0}),
    (offline_rule_card_notes(PAPER), 1.0, {"Florp": 1.0, "Zindle": 1.0, "Brimlet": 1.0, "Quarrow": 1.0}),
    ("", 0.0, {"Florp": 0.0, "Zindle": 0.0, "Brimlet": 0.0, "Quarrow": 0.0}),
    # Half the classes, each complete.
    ("Florp: red, long tail. Zindle: red, short tail.", 0.5, {"Florp": 1.0, "Zindle": 1.0, "Brimlet": 0.0,
                                                               "Quarrow": 0.0}),
    # Found but half stated (1/2), found with both colours named (tail right, colour 1/2 right:
    # (1 + 1/2) / 2), found but wrong (0), described by a distractor only (not found).
    ("Florp: red. Zindle: red or blue, short tail. Brimlet: red, short tail. Quarrow eats meat.",
     (0.5 + 0.75 + 0 + 0) / 4, {"Florp": 0.5, "Zindle": 0.75, "Brimlet": 0.0, "Quarrow": 0.0}),
])
def test_the_discovery_rate_is_rules_found_times_how_right_each_is(notes, rate, by_class):
    score = TruthScorer(PAPER).score(notes)
    assert score.discovery_rate == pytest.approx(rate)
    assert discovery(score) == pytest.approx(by_class)


def test_the_discovery_rate_leaves_out_a_class_no_single_attribute_decides():
    # A count rule over 3 attributes cut into {0, 1} and {2, 3} marked values: each class allows
    # every value of every attribute, so no rule can be stated attribute by attribute.
    task = next(t for t in (load_task(f"rules:form=count,relevant=3,attributes=3,seed={seed}") for seed in range(40))
                if not any(TruthScorer(t).deciding.values()))
    score = TruthScorer(task).score(rule_card_notes(task))
    assert score.discovery_rate is None and set(discovery(score).values()) == {None}
    # A task where one class is decided and another is not judges the decided one alone.
    quarrow = load_task("rules:classes=2,relevant=2,values=2,attributes=2,form=count")
    scorer = TruthScorer(quarrow)
    judged = [name for name in quarrow.classes if scorer.deciding[name]]
    assert 0 < len(judged) < 2
    assert scorer.score(rule_card_notes(quarrow)).discovery_rate == 1.0
    assert scorer.score("").discovery_rate == 0.0


def test_the_rule_learner_names_the_line_it_matched():
    learner = OfflineRuleLearner(PAPER.attributes, PAPER.classes)
    notes = ("- Florp: colour is red (90%), diet is plants (90%).\n"
             "- Zindle: colour is red (90%), tail is short (90%).\n"
             "- Brimlet: colour is blue (90%), tail is long (90%).\n"
             "- Quarrow: colour is blue (90%), tail is short (90%).\n"
             "- Florp: tail is long (90%).")
    assert note_units(notes)[4] == "- Florp: tail is long (90%)."

    def observe(**traits):
        return Observation(0, {a.name: a.values[0] for a in PAPER.attributes} | traits, "")

    # Florp's line 1 agrees with red + plants (2 traits), line 5 with the long tail (1): line 1.
    # With meat instead of plants both agree with one trait; the later line wins the tie.
    answers = learner.infer(notes, [observe(colour="red", diet="plants", tail="long"),
                                    observe(colour="red", diet="meat", tail="long"),
                                    observe(colour="blue", tail="short")], Phase(0, 1, "eval"))
    assert [(p.label, p.sentence) for p in answers] == [("Florp", 1), ("Florp", 5), ("Quarrow", 4)]


def test_line_usage_counts_the_eval_and_the_next_steps_training_answers(store):
    run_id = create_run(store, RunConfig(steps=3, eval_size=12, batch_size=8, momentum=0.0))
    execute_run(store, run_id)
    predictions = pd.DataFrame(store.predictions(run_id))
    step = 1
    used = predictions[((predictions.phase == "eval") & (predictions.step == step))
                       | ((predictions.phase == "infer") & (predictions.step == step + 1))]
    assert len(used) == 12 + 8
    # An answer of a class the notes do not describe yet relies on no line.
    described = {u.split(":")[0][2:] for u in note_units(store.notes_at(run_id, step))}
    assert used["note_sentence"].isna().tolist() == [p not in described for p in used["predicted"]]
    used = used.dropna(subset=["note_sentence"])
    by_hand = {int(line): (len(group), int(group.correct.sum()), int((~group.correct).sum()))
               for line, group in used.groupby("note_sentence")}
    usage = store.sentence_usage(run_id, step)
    assert {int(r.note_sentence): (r.used, r.right, r.wrong) for r in usage.itertuples()} == by_hand
    units = note_units(store.notes_at(run_id, step))
    for p in used.itertuples():  # each answer points at a line about the class it chose
        assert units[int(p.note_sentence) - 1].startswith(f"- {p.predicted}:")


def history(*runs):
    """Steps of made-up runs: each a list of (notes words, words changed, eval accuracy)."""
    return pd.DataFrame([{"run_id": run_id, "step": step, "notes_words": w, "words_changed": c, "eval_accuracy": a}
                         for run_id, rows in enumerate(runs, start=1) for step, (w, c, a) in enumerate(rows)])


HEALTHY = [(0, 0, 0.25), (40, 40, 0.5), (45, 12, 0.58), (48, 9, 0.55), (50, 6, 0.7), (52, 4, 0.8),
           (52, 3, 0.85), (53, 2, 0.86), (53, 1, 0.9), (53, 1, 0.9)]


def test_a_healthy_run_raises_no_alarm():
    assert alarms(history(HEALTHY)).empty


def test_each_alarm_fires_at_its_step():
    collapse = HEALTHY[:5] + [(20, 30, 0.7)] + HEALTHY[6:]  # 50 -> 20 words at step 5
    drop = HEALTHY[:6] + [(52, 3, 0.69)] + HEALTHY[7:]  # 80% -> 69% at step 6
    stall = [(0, 0, 0.25), (30, 30, 0.4)] + [(30, 0, 0.4)] * (STALL_STEPS + 2)  # unchanged from step 2
    found = alarms(history(collapse, drop, stall))
    assert list(found[["run_id", "step", "kind"]].itertuples(index=False, name=None)) == [
        (1, 5, "collapse"), (2, 6, "drop"), (3, 1 + STALL_STEPS, "stall")]
    assert found.iloc[0]["message"] == "the notes shrank from 50 to 20 words"
    assert found.iloc[1]["message"] == "eval accuracy fell from 80.0% to 69.0%"
    # The same stall at high accuracy is not a problem: the notes are done.
    assert alarms(history([(0, 0, 0.25), (30, 30, 0.95)] + [(30, 0, 0.95)] * (STALL_STEPS + 2))).empty


def test_phase_costs_add_up_to_the_run_totals(store):
    with FaultServer([]) as server:
        run_id = create_run(store, RunConfig(
            agent="llm", backend="openai", base_url=server.url, model="m", steps=2, batch_size=3, eval_size=4,
            accumulation=2, max_note_words=40, structured_output="json_object", price_in=2.0, price_out=10.0))
        execute_run(store, run_id)
    costs, run, steps = store.phase_costs([run_id]), store.run(run_id), store.steps(run_id)
    assert set(costs["phase"]) == {"infer", "induce", "revise", "eval"}
    assert costs["tokens_in"].sum() == run["tokens_in"] > 0 and costs["tokens_out"].sum() == run["tokens_out"]
    assert costs["cost"].sum() == pytest.approx(run["cost"]) and run["cost"] > 0
    seconds = sum(s[f"seconds_{p}"] for s in steps for p in ("infer", "induce", "revise", "eval"))
    assert costs["seconds"].sum() == pytest.approx(seconds)
    per_phase = costs.groupby("phase")["tokens_in"].sum()
    assert per_phase["induce"] == 2 * 2 * 20  # 2 steps x 2 minibatches x 20 prompt tokens per call
    assert per_phase["infer"] == 2 * 2 * 3 * 20 and per_phase["eval"] == 3 * 4 * 20


# The revision SmolLM2-135M wrote when tried on the benchmark: one sentence until the word cap.
DEGENERATE = " ".join(f"the creature with {trait} is Zindle," for trait in
                      ["fur", "feathers", "scales", "fur", "feathers", "spots"] * 8)
VARIED = ("Red creatures with long tails are Florp. Blue ones that fly are Zindle. A Quarrow has scales and "
          "lives in water; it never sings. Brimlets are small, green and nocturnal, and most of them hum. "
          "When colour and tail disagree, trust the tail.")


def test_repetition_tells_a_repeated_sentence_from_notes_that_say_each_thing_once():
    assert repetition(DEGENERATE) > 0.8
    assert repetition(VARIED) == 0.0
    half = VARIED + " " + " ".join(["Red creatures are Florp."] * 6)  # one sentence said six more times
    assert 0.2 < repetition(half) < REPETITION_SHARE  # noticed, not yet "mostly repeated"
    assert repetition("Florp Florp Florp Florp") == 0.0  # too short to judge
    # The rule learner's own notes are formulaic lines, one per class: they never count as repetition.
    worst = max(r.notes_repetition for seed in range(3)
                for r in offline_history(steps=15, batch_size=8, eval_size=40, seed=seed))
    assert worst < REPETITION_SHARE, worst


def test_repetition_and_one_class_alarms_fire_where_each_streak_begins():
    rows = [(0, 0, 0.25, 0.0, "Florp", 0.3), (40, 40, 0.3, 0.1, "Florp", 0.5),
            (300, 290, 0.25, 0.9, "Zindle", 0.95), (300, 20, 0.25, 0.92, "Zindle", 1.0),
            (80, 250, 0.4, 0.2, "Florp", 0.6), (300, 260, 0.25, 0.7, "Zindle", 0.9)]
    steps = pd.DataFrame([{"run_id": 1, "step": step, "notes_words": w, "words_changed": c, "eval_accuracy": a,
                           "notes_repetition": r, "eval_top_class": top, "eval_top_share": share}
                          for step, (w, c, a, r, top, share) in enumerate(rows)])
    found = alarms(steps)
    flagged = list(found[["step", "kind"]].itertuples(index=False, name=None))
    assert sorted(f for f in flagged if f[1] in ("repetition", "one class")) == [
        (2, "one class"), (2, "repetition"), (5, "one class"), (5, "repetition")]
    messages = dict(zip(zip(found["step"], found["kind"], strict=True), found["message"], strict=True))
    assert messages[(2, "one class")].startswith("95.0% of the eval answers named Zindle")
    assert messages[(2, "repetition")].startswith("90.0% of the notes' 3-word phrases repeat earlier ones")
    assert "penalty" in messages[(2, "repetition")] and "the model" in messages[(2, "one class")]
    # The same steps from the rule learner: no model to blame, no model's setting to try.
    learner = alarms(steps, learners=frozenset({1}))
    assert learner["step"].tolist() == found["step"].tolist()
    assert not any("model" in m or "penalty" in m for m in learner["message"]), learner["message"].tolist()
    # Steps stored before these were measured (NULL) raise neither.
    assert alarms(steps.assign(notes_repetition=None, eval_top_share=None)).query(
        "kind in ['repetition', 'one class']").empty


def test_a_stored_step_records_repetition_and_the_most_named_class(store):
    run_id = create_run(store, RunConfig(steps=2, batch_size=8, eval_size=40))
    execute_run(store, run_id)
    for step in store.steps(run_id):
        named = Counter(p["predicted"] for p in store.predictions(run_id, step["step"]) if p["phase"] == "eval")
        top, count = named.most_common(1)[0]
        assert (step["eval_top_class"], step["eval_top_share"]) == (top, count / 40)
        assert step["notes_repetition"] == repetition(step["notes"])


def test_settling_tells_apart_runs_that_all_end_at_100_percent():
    from iml_core.analysis import settling

    steps = pd.DataFrame(
        [{"run_id": 1, "step": s, "eval_accuracy": a} for s, a in enumerate([0.25, 0.5, 1.0, 1.0, 1.0, 1.0])]
        + [{"run_id": 2, "step": s, "eval_accuracy": a} for s, a in enumerate([0.25, 0.3, 0.5, 0.7, 0.96, 1.0])]
        + [{"run_id": 3, "step": s, "eval_accuracy": a} for s, a in enumerate([0.25, 1.0, 0.8, 1.0, 0.8, 1.0])])
    found = settling(steps)
    assert found["steps_to_reach"].to_dict() == {1: 2, 2: 4, 3: 1}  # the first eval at 95% of the final or more
    assert found.loc[1, "spread_after"] == 0.0 and found.loc[2, "spread_after"] == pytest.approx(0.02)
    assert found.loc[3, "spread_after"] == pytest.approx(pd.Series([1.0, 0.8, 1.0, 0.8, 1.0]).std(ddof=0))


def test_a_warning_clears_once_its_alarm_no_longer_holds():
    from iml_core.analysis import standing

    def steps_of(rows):  # (notes words, words changed, eval accuracy, repetition, top share)
        return pd.DataFrame([{"run_id": 1, "step": step, "notes_words": w, "words_changed": c, "eval_accuracy": a,
                              "notes_repetition": r, "eval_top_class": "Florp", "eval_top_share": share}
                             for step, (w, c, a, r, share) in enumerate(rows)])

    one_class_at_start = [(0, 0, 0.25, 0.0, 1.0), (30, 30, 0.6, 0.0, 0.5), (32, 4, 0.7, 0.0, 0.4)]
    steps = steps_of(one_class_at_start)
    assert alarms(steps)["kind"].tolist() == ["one class"]  # the chart keeps the mark...
    assert standing(alarms(steps), steps).empty  # ...the warning is gone once the answers differ
    still = steps_of(one_class_at_start[:1] + [(30, 30, 0.25, 0.0, 0.95)])
    assert standing(alarms(still), still)["kind"].tolist() == ["one class"]
    recovered = steps_of([(40, 40, 0.8, 0, 0.3), (45, 5, 0.6, 0, 0.3), (47, 2, 0.85, 0, 0.3)])
    assert alarms(recovered)["kind"].tolist() == ["drop"] and standing(alarms(recovered), recovered).empty
    fallen = recovered.iloc[:2]
    assert standing(alarms(fallen), fallen)["kind"].tolist() == ["drop"]
