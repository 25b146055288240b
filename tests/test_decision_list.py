"""Notes a program can apply (issue 35): decision lists parsed against the task, never executed;
run by the engine; written by a model under a grammar generated from the task; learned in rule
form by the offline learner; scored both ways; and a run in words stores what it always did."""

import json
import subprocess
import sys

import pytest

from iml_core.builders import build_task
from iml_core.config import RunConfig
from iml_core.agents.rules import RuleApplier
from iml_core.decision_list import CONDITION_COST, RuleError, RuleForm, fit, rule_card_list, simplest_fits
from iml_core.learner import SampleStream
from iml_core.learners import momentum_lines
from iml_core.prompts import RULE_PROMPTS
from iml_core.runner import _prompts, create_run, execute_run
from iml_core.studies import LADDER
from iml_core.tasks.files import load_task
from iml_core.truth import TruthScorer

PAPER = build_task(RunConfig(task="paper"))
FORM = RuleForm(PAPER.attributes, PAPER.classes)


def accuracy(text: str) -> float:
    rules = FORM.parse(text)
    return sum(rules.apply(s.features) == s.label for s in PAPER.samples) / len(PAPER.samples)


def test_the_true_table_as_a_list_sorts_every_sample_and_reads_back_as_written():
    text = rule_card_list(PAPER)
    assert text.splitlines()[0] == "IF colour = red AND tail = long THEN Florp" and text.splitlines()[-1] == \
        "ELSE Quarrow"
    assert accuracy(text) == 1.0
    assert str(FORM.parse(text)) == text
    # Keywords in any case and spaces as a writer leaves them: the same list.
    assert str(FORM.parse(text.lower().replace("florp", "Florp").replace("zindle", "Zindle")
                          .replace("brimlet", "Brimlet").replace("quarrow", "Quarrow") + "\n\n")) == text
    assert TruthScorer(PAPER).score(text).rule_recall == 1.0


@pytest.mark.parametrize("text,fault", [
    ("import os; os.system('touch /tmp/iml-pwned')", "line 1: 'import' where IF or ELSE must begin the line"),
    ("IF colour = red THEN Florp\n$(touch /tmp/iml-pwned)\nELSE Zindle", "line 2: '$(touch' where IF or ELSE"),
    ("__import__('os').system('id')", "line 1: \"__import__('os').system('id')\" where IF or ELSE"),
    ("IF colour = green THEN Florp\nELSE Zindle", "line 1: 'green' is not a value of colour (values: red, blue)"),
    ("IF color = red THEN Florp\nELSE Zindle", "line 1: 'color' is not an attribute of this task"),
    ("IF colour = red THEN Dog\nELSE Florp", "line 1: 'Dog' where a class must be"),
    ("IF colour = red THEN Florp", "line 1: the list has no ELSE line"),
    ("ELSE Florp\nIF colour = red THEN Zindle", "line 1: ELSE must be the last line"),
    ("", "the decision list is empty"),
    ("IF colour = red THEN " + "x" * 200_000, "200,021 characters long, over the 20,000 allowed"),
])
def test_hostile_or_broken_text_gets_the_line_and_word_at_fault_and_nothing_runs(text, fault, tmp_path):
    with pytest.raises(RuleError) as caught:
        FORM.parse(text)
    assert fault in str(caught.value)
    assert len(str(caught.value)) < 400  # a word at fault is named, never echoed whole
    assert not (tmp_path / "iml-pwned").exists()


def test_the_cli_refuses_hostile_notes_with_exit_2_and_no_traceback(tmp_path):
    hostile = tmp_path / "notes.txt"
    hostile.write_text("IF colour = red THEN Florp\n`rm -rf ~`\nELSE Zindle\n" + "y" * 100_000)
    for notes in (["--notes-file", str(hostile)], ["--notes", "os.system('touch pwned')"]):
        done = subprocess.run([sys.executable, "-m", "iml_core", "evaluate", *notes, "--task", "paper",
                               "--notes-form", "rule", "--apply", "rule", "--db", str(tmp_path / "e.duckdb")],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("iml: error: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "pwned").exists()


def test_rule_apply_needs_rule_notes_and_the_playbook_has_no_rule_form():
    with pytest.raises(Exception, match="Applied by rule runs the notes as a decision list"):
        RunConfig(apply="rule").check()
    with pytest.raises(Exception, match="the playbook learner edits numbered bullets"):
        RunConfig(notes_form="rule", learner="playbook").check()


def test_notes_that_are_no_list_answer_nothing_when_run():
    answers = RuleApplier(PAPER).infer("Florp are red.", [s.observation for s in PAPER.samples[:3]])
    assert [a.label for a in answers] == [None] * 3 and "no decision list" in answers[0].raw


def test_fitting_to_the_samples_finds_the_table_and_momentum_keeps_whole_lines():
    fitted = fit([(s.features, s.label) for s in PAPER.samples[:64]], FORM)
    assert accuracy(str(fitted)) == 1.0
    assert {a for line in fitted.lines for a, _ in line.conditions} == {"colour", "tail"}
    text = "IF colour = red AND tail = long THEN Florp\nIF colour = red THEN Zindle\nIF tail = long THEN Brimlet\n" \
           "ELSE Quarrow"
    assert momentum_lines(text, 0.5) == "IF colour = red AND tail = long THEN Florp\nIF colour = red THEN Zindle"
    assert momentum_lines(text, 0.0) == ""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_fit_to_noisy_labels_reads_the_rule_s_attributes_where_covering_grows_a_line_per_wrong_label(seed):
    """Rung 3 (2 of 6 attributes decide 3 classes, a tenth of the labels wrong), the 32 samples a
    bank's window holds at step 6: covering fits the wrong labels with spurious conditions; the
    list worth most reads only the rule's attributes and sorts as the rule does, its noise aside."""
    task = load_task(LADDER[2].task(seed))
    form = RuleForm(task.attributes, task.classes)
    relevant = {a for row in task.rule_card["table"] for a in row["when"]}
    window = [(s.features, s.label) for s in SampleStream(task, seed, 40).positions(16, 48)]

    def read(rules):
        return {a for line in rules.lines for a, _ in line.conditions}

    def accuracy(rules):
        return sum(rules.apply(s.features) == s.label for s in task.samples) / len(task.samples)

    covered = fit(window, form, max_conditions=3)
    best, *others = simplest_fits(window, form, count=3)
    assert read(covered) - relevant  # what the fix is for: on each of these seeds covering reads noise
    assert read(best) == relevant, str(best)
    assert accuracy(best) >= 0.88 > accuracy(covered)
    assert best.worth(window) >= covered.worth(window)
    assert len(others) == 2 and all(o.worth(window) <= best.worth(window) for o in others)
    assert best.worth(window) == sum(best.apply(f) == label for f, label in window) - CONDITION_COST * best.conditions


def test_a_model_writes_only_valid_lists_under_the_grammar(tiny_model):
    """A random-weight model, bound by the grammar made from the task, writes a list the parser takes."""
    from iml_core.backends.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend(str(tiny_model), n_ctx=512)
    messages = [{"role": "user", "content": "Write a decision list."}]
    for seed in range(5):
        out = backend.text(messages, temperature=1.0, seed=seed, max_tokens=160, grammar=FORM.grammar(max_lines=3))
        rules = FORM.parse(out.text)
        assert len(rules.lines) <= 3
        answer = backend.text(messages, temperature=1.0, seed=seed, max_tokens=24, grammar=FORM.conditions_grammar())
        FORM.parse(f"IF {answer.text} THEN Florp\nELSE Zindle")


def test_the_offline_learner_in_rule_form_learns_the_paper_table_and_both_scores_are_stored(store):
    run_id = create_run(store, RunConfig(task="paper", notes_form="rule", apply="rule", momentum=0.0, steps=6,
                                         batch_size=8, accumulation=2, eval_size=200, seed=1))
    summary = execute_run(store, run_id)
    steps = store.steps(run_id)
    final = steps[-1]
    assert summary["final_eval_accuracy"] >= 0.9, final["notes"]
    assert final["rule_eval_accuracy"] == final["eval_accuracy"] and final["model_eval_accuracy"] is None
    assert all(s["rule_eval_accuracy"] is not None for s in steps)
    FORM.parse(final["notes"])  # every learner's notes in rule form are a list
    assert TruthScorer(PAPER).score(final["notes"]).rule_recall == 1.0
    assert store.run(run_id)["config"]["notes_form"] == "rule"


def test_the_bank_in_rule_form_scores_by_running_the_lists(store):
    run_id = create_run(store, RunConfig(task="paper", learner="bank", notes_form="rule", apply="rule", steps=3,
                                         batch_size=8, eval_size=100, seed=2, score_window=32))
    execute_run(store, run_id)
    candidates = store.candidates(run_id)
    assert {c["origin"] for c in candidates} >= {"proposal"}
    assert all(c["scored"] == min(32, 8 * c["step"]) for c in candidates if c["right"] is not None)
    assert store.run(run_id)["final_eval_accuracy"] >= 0.9
    assert store.model_calls(run_id) == []  # nothing asked a model: the offline agent, run by the engine


def test_the_bank_in_rule_form_ranks_lists_by_worth_not_by_samples_right(store):
    """Starting notes fitted to every one of the first 8 samples (rung 3, rule seed 3: 6 conditions)
    lose to a list of 1 condition that sorts 2 fewer: right less CONDITION_COST a condition, 5 to 5.5,
    which beats the notes by more than the margin (0.4 samples of 8)."""
    task = load_task(LADDER[2].task(3))
    form = RuleForm(task.attributes, task.classes)
    first = [(s.features, s.label) for s in SampleStream(task, 3, 40).positions(0, 8)]
    overfit = fit(first, form, max_conditions=3, min_cover=1)
    run_id = create_run(store, RunConfig(task=LADDER[2].task(3), learner="bank", notes_form="rule", apply="rule",
                                         proposals=1, steps=1, batch_size=8, eval_size=40, seed=3,
                                         initial_notes=str(overfit)))
    execute_run(store, run_id)
    step = {c["origin"]: c for c in store.candidates(run_id) if c["step"] == 1}
    assert step["notes"]["right"] == 8 and step["notes"]["decision"] == "replaced"
    assert step["proposal"]["decision"] == "chosen" and step["proposal"]["right"] < 8
    assert form.parse(step["proposal"]["text"]).conditions < overfit.conditions
    assert "worth 5.5" in step["proposal"]["reason"] and "worth 5," in step["notes"]["reason"]


def test_notes_in_words_rank_below_any_list_in_rule_form(store):
    """Notes that are no list sort nothing; a list of many conditions that sorts little is worth
    less than 0, and still replaces them."""
    run_id = create_run(store, RunConfig(task="paper", learner="bank", notes_form="rule", apply="rule", proposals=1,
                                         steps=1, batch_size=8, eval_size=40, seed=1,
                                         initial_notes="A creature with scales is a Florp."))
    execute_run(store, run_id)
    notes = next(c for c in store.candidates(run_id) if c["origin"] == "notes")
    assert notes["decision"] == "replaced" and "no decision list, worth less than any" in notes["reason"]
    FORM.parse(store.steps(run_id)[-1]["notes"])


def test_a_run_in_words_stores_what_it_stored_before(store):
    config = RunConfig(task="paper", steps=2, eval_size=20)
    stored = config.to_dict()
    assert "notes_form" not in stored and "apply" not in stored  # the config JSON of a text run is unchanged
    assert RunConfig.from_dict(stored) == config
    assert not set(RULE_PROMPTS) & set(_prompts(config.replace(agent="llm", learner="bank")))
    assert set(RULE_PROMPTS) <= set(_prompts(config.replace(agent="llm", notes_form="rule")))
    run_id = create_run(store, config)
    execute_run(store, run_id)
    assert all(s["rule_eval_accuracy"] is None and s["model_eval_accuracy"] is None for s in store.steps(run_id))
    assert json.loads(json.dumps(store.run(run_id)["config"])) == stored


@pytest.mark.parametrize("reading", ["aligned", "stepwise"])
def test_the_model_reads_a_list_in_the_list_s_words_or_a_line_at_a_time(tiny_model, tmp_path, capsys, reading):
    from iml_core.cli import main
    from iml_core.store import Store

    db = tmp_path / "reading.duckdb"
    assert main(["evaluate", "--oracle", "--task", "paper", "--notes-form", "rule", "--apply", "model",
                 "--rule-reading", reading, "--backend", "llama-server", "--model", str(tiny_model),
                 "--eval-size", "4", "--db", str(db), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    oracle = FORM.parse(rule_card_list(PAPER))
    with Store(db) as store:
        calls = store.evaluation_calls(result["evaluation_id"])
        predictions = store.evaluation_predictions(result["evaluation_id"])
    assert f"(rule reading {reading})" in result["agent"]
    if reading == "aligned":  # one call a sample, the sample written as the list's conditions
        assert len(calls) == 4
        assert all("This creature has: " in c["prompt"] and " = " in c["prompt"].split("This creature has: ")[1]
                   for c in calls)
    else:  # a yes/no question per line, from the top, until one is answered yes
        assert 4 <= len(calls) <= 4 * len(oracle.lines)
        assert all("Does it have " in c["prompt"] and c["response"].strip() in ("yes", "no") for c in calls)
        for prediction in predictions:  # the class is the line the model said yes to, else the ELSE line's
            line = prediction["note_sentence"]
            expected = oracle.lines[line - 1].label if line <= len(oracle.lines) else oracle.default
            assert prediction["predicted"] == expected
        # it stops at the first yes: a sample decided at line k asked k questions (the ELSE line none)
        assert len(calls) == sum(min(p["note_sentence"], len(oracle.lines)) for p in predictions)
