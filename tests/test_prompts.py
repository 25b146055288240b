"""Prompt layouts (iml_core.prompts.PROMPT_LAYOUTS): where the inference prompt puts the notes and
whether the answer names a line. Checked on the messages the LLM agent sends, through a recording
stand-in for a backend (written here, named as such: it answers the first class and keeps every
request). The real-model tier checks the KV-cache reuse a layout keeps (tests/test_real_models.py)."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field

import pytest

from iml_core import cli
from iml_core.agents import Phase, PhaseName
from iml_core.agents.llm import LLMAgent
from iml_core.backends import LINE_SEPARATOR, Completion
from iml_core.config import SETTINGS, RunConfig
from iml_core.attribution import note_units
from iml_core.evaluation import Evaluation, baseline_key, oracle_notes
from iml_core.prompts import DEFAULT_LAYOUT, PROMPT_LAYOUTS, PromptLayout
from iml_core.registry import BACKENDS, BackendKind
from iml_core.runner import create_run
from iml_core.store import Store
from iml_core.tasks import load_task

NOTES = "Red creatures are Florp. Blue ones are Zindle.\nThe rest are Quarrow."
SENTENCES = ["Red creatures are Florp.", "Blue ones are Zindle.", "The rest are Quarrow."]


@dataclass
class RecordingBackend:
    """Not a model: the smallest iml_core.backends.Backend that answers the first class (and line 1
    when a line is asked) and keeps what it was asked."""
    model: str = "recording"
    max_parallel: int = 1
    description: str = "recording stand-in"
    identity: dict = field(default_factory=lambda: {"backend": "recording"})
    asked: list = field(default_factory=list)  # (messages, sentences) of each label call

    def label(self, messages, labels, *, temperature, seed, max_tokens, sentences=0) -> Completion:
        self.asked.append((messages, sentences))
        raw = labels[0] + (f"{LINE_SEPARATOR}1" if sentences else "")
        return Completion(raw, labels[0], tokens_in=10, tokens_out=2, sentence=1 if sentences else None)

    def text(self, messages, *, temperature, seed, max_tokens, prefix="") -> Completion:
        return Completion("noted", prefix + "noted", tokens_in=10, tokens_out=1)

    def cost(self, tokens_in, tokens_out) -> float:
        return 0.0


class DictCache(dict):
    def get(self, key):
        return dict.get(self, key)

    def put(self, key, value):
        self[key] = value


@pytest.fixture(scope="module")
def task():
    return load_task("paper")


def asked(task, layout: str, notes: str = NOTES, cache=None, samples: int = 3):
    backend = RecordingBackend()
    agent = LLMAgent(task, backend, cache=cache, layout=layout)
    predictions = agent.infer(notes, [s.observation for s in task.samples[:samples]], Phase(0, 1, PhaseName.INFER))
    return backend, predictions


# --- the default layout is today's, byte for byte --------------------------------------------------

SYSTEM_TODAY = ("You sort each creature into exactly one of these classes: Florp, Zindle, Quarrow, Brimlet.\n"
                "You keep notes of what you learned from earlier answers and their feedback. Use them.\n\n"
                "Your notes, one numbered line per sentence:\n"
                "[1] Red creatures are Florp.\n[2] Blue ones are Zindle.\n[3] The rest are Quarrow.")
ASK_LINE_TODAY = ("\nWhich class is it, and which line of your notes did you rely on most? Answer with the class "
                  "name and the line number, like: Florp | line 1")
ASK_PLAIN_TODAY = "\nWhich class is it? Answer with the class name only."


def test_the_default_layout_sends_the_prompts_of_runs_before_layouts_byte_for_byte(task):
    assert RunConfig().prompt_layout == DEFAULT_LAYOUT == "system"
    backend, _ = asked(task, DEFAULT_LAYOUT)
    for (messages, sentences), sample in zip(backend.asked, task.samples, strict=False):
        assert messages == [{"role": "system", "content": SYSTEM_TODAY},
                            {"role": "user", "content": sample.observation.text + ASK_LINE_TODAY}]
        assert sentences == 3
    empty, _ = asked(task, DEFAULT_LAYOUT, notes="")
    first = task.samples[0].observation.text
    assert empty.asked[0] == ([{"role": "system", "content": SYSTEM_TODAY.split("[1]")[0] + "(no notes yet)"},
                               {"role": "user", "content": first + ASK_PLAIN_TODAY}], 0)


def test_the_default_layouts_cache_keys_are_those_of_runs_before_layouts(task):
    # Computed by the LLM agent before layouts existed, with this stand-in and these notes: the
    # response cache of earlier runs answers the default layout's calls.
    cache = DictCache()
    asked(task, DEFAULT_LAYOUT, notes="", cache=cache, samples=1)
    assert list(cache) == ["fdab091b1fd13bc1c01e9a9a159ff0bcadee0ed4bf9f576ca757479efcaca7f6"]


def test_the_default_in_context_prompt_is_that_of_runs_before_layouts(task):
    backend = RecordingBackend()
    example, sample = task.samples[0], task.samples[1]
    LLMAgent(task, backend).in_context([(example.observation, example.label)], [sample.observation],
                                       Phase(0, 0, PhaseName.EVAL))
    assert backend.asked == [([
        {"role": "system", "content": "You sort each creature into exactly one of these classes: Florp, Zindle, "
                                      "Quarrow, Brimlet.\nHere are 1 creatures whose class is known:\n"
                                      f"- {example.observation.text} Class: {example.label}"},
        {"role": "user", "content": sample.observation.text + ASK_PLAIN_TODAY}], 0)]


# --- every layout: the notes where it says, the shared part first ---------------------------------

@pytest.mark.parametrize("name", list(PROMPT_LAYOUTS))
def test_each_layout_puts_the_notes_where_it_says_and_the_sample_last(task, name):
    layout = PROMPT_LAYOUTS[name]
    backend, predictions = asked(task, name)
    notes_shown = "\n".join(f"[{i}] {s}" for i, s in enumerate(SENTENCES, 1)) if layout.names_line \
        else "\n".join(SENTENCES)
    rendered = []
    for (messages, sentences), sample in zip(backend.asked, task.samples, strict=False):
        system, user = (m["content"] for m in messages)
        assert [m["role"] for m in messages] == ["system", "user"]
        assert system.startswith("You sort each creature into exactly one of these classes: Florp, Zindle")
        holder, other = (user, system) if layout.notes_turn == "user" else (system, user)
        assert notes_shown in holder and "Red creatures" not in other
        assert ("[1]" in holder) == layout.names_line
        # The answer names a line exactly when the layout asks for one, and the grammar allows one.
        assert ("which line of your notes" in user) == layout.names_line
        assert sentences == (3 if layout.names_line else 0)
        # The sample comes last, after the notes: what differs between samples is at the end.
        assert user.index(sample.observation.text) > (user.index(notes_shown) if layout.notes_turn == "user" else -1)
        rendered.append(f"{system}\n{user}")
    # Every sample's prompt begins with the same task, classes and notes: the KV cache holds them.
    shared = os.path.commonprefix(rendered)
    assert shared.startswith("You sort each creature") and notes_shown in shared
    assert task.samples[0].observation.text not in shared
    assert all(p.sentence == (1 if layout.names_line else None) for p in predictions)


@pytest.mark.parametrize("name", list(PROMPT_LAYOUTS))
def test_the_in_context_examples_sit_where_the_layout_puts_notes(task, name):
    backend = RecordingBackend()
    example = task.samples[0]
    LLMAgent(task, backend, layout=name).in_context(
        [(example.observation, example.label)], [s.observation for s in task.samples[1:3]],
        Phase(0, 0, PhaseName.EVAL))
    for (messages, sentences), sample in zip(backend.asked, task.samples[1:3], strict=True):
        system, user = (m["content"] for m in messages)
        holder, other = (user, system) if PROMPT_LAYOUTS[name].notes_turn == "user" else (system, user)
        assert f"- {example.observation.text} Class: {example.label}" in holder
        assert example.observation.text not in other
        assert user.endswith(sample.observation.text + ASK_PLAIN_TODAY) and sentences == 0


def test_layouts_do_not_share_cached_answers(task):
    cache = DictCache()
    keys = {}
    for name in PROMPT_LAYOUTS:
        before = set(cache)
        backend, _ = asked(task, name, cache=cache)
        assert len(backend.asked) == 3, f"{name} was answered from another layout's cache entries"
        keys[name] = set(cache) - before
    assert all(len(k) == 3 for k in keys.values())
    again, _ = asked(task, "user", cache=cache)
    assert again.asked == []  # its own entries do answer it


def test_an_unknown_layout_is_named_with_the_choices(task):
    with pytest.raises(Exception, match="unknown prompt layout 'sideways'; choose one of system, user, plain"):
        LLMAgent(task, RecordingBackend(), layout="sideways")
    assert RunConfig(prompt_layout="sideways").problems() == [
        "Prompt layout must be one of system, user, plain, user-plain, got 'sideways'"]


def test_a_layout_other_than_the_default_is_named_in_the_agents_description(task):
    assert LLMAgent(task, RecordingBackend()).description == "recording stand-in"
    assert LLMAgent(task, RecordingBackend(), layout="user-plain").description == \
        "recording stand-in (prompt layout user-plain)"


def test_the_settings_choices_are_read_from_the_layouts_when_asked(monkeypatch):
    monkeypatch.setitem(PROMPT_LAYOUTS, "later", PromptLayout("later: a layout added later", "infer_system", "",
                                                              True, "infer_examples_system", ""))
    assert "later" in SETTINGS["prompt_layout"].values
    parser = cli.build_parser()
    (commands,) = [a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for command in ("run", "sweep", "evaluate", "baseline"):
        (flag,) = [a for a in commands[command]._actions if a.dest == "prompt_layout"]
        assert "later" in flag.choices, command


# --- a run's settings: a sweep axis, a scorer, and its own baselines -------------------------------

def test_the_layout_is_a_sweep_axis_given_by_repeating_the_flag():
    from iml_core.cli.sweep import sweep_grid

    args = cli.build_parser().parse_args(["sweep", "--prompt-layout", "system", "--prompt-layout", "user-plain",
                                          "--momentum", "0,1"])
    base, axes = sweep_grid(args)
    assert axes == {"prompt_layout": ["system", "user-plain"], "momentum": [0.0, 1.0]}
    one = cli.build_parser().parse_args(["sweep", "--prompt-layout", "plain"])
    assert sweep_grid(one)[0].prompt_layout == "plain" and sweep_grid(one)[1] == {}


def test_runs_differing_only_in_layout_get_baselines_of_their_own(tmp_path):
    config = RunConfig(agent="llm", backend="openai", model="m")
    assert baseline_key(config) != baseline_key(config.replace(prompt_layout="user"))
    assert baseline_key(config) == baseline_key(config.replace(momentum=0.9))  # how it learns is shared
    with Store(tmp_path / "b.duckdb") as store:
        run_id = store.create_run(config.replace(prompt_layout="user"), task_name="paper", task_source={},
                                  agent_description="m")
        for layout, accuracy in (("user", 0.9), ("system", 0.1)):  # the other layout stored last
            store.save_evaluation(Evaluation("oracle", "the rule card", "", "m", accuracy, 0, {}, []),
                                  config.replace(prompt_layout=layout), run_id=run_id)
        frame = store.baselines([run_id])
        assert frame[["kind", "accuracy"]].values.tolist() == [["oracle", 0.9]]
        assert store.runs_frame()["prompt_layout"].tolist() == ["user"]


@pytest.fixture
def recording_backend():
    # One registry row, first: rows are asked in order whether a --model is theirs.
    kind = BackendKind("recording", "In a recording stand-in: answers the first class", (), (),
                       lambda config, on_retry: RecordingBackend(config.model), "remote",
                       lambda model, base_url: model.startswith("recording:"), lambda base_url: [])
    shipped = dict(BACKENDS)
    BACKENDS.clear()
    BACKENDS.update({"recording": kind, **shipped})
    yield kind
    BACKENDS.clear()
    BACKENDS.update(shipped)


def test_baseline_compares_layouts_in_one_call(recording_backend, tmp_path, capsys):
    db = tmp_path / "layouts.duckdb"
    with Store(db) as store:
        run_id = create_run(store, RunConfig(agent="llm", backend="recording", model="recording:a", eval_size=6,
                                             prompt_layout="user"))
    argv = ["baseline", str(run_id), "--kind", "oracle", "--kind", "majority", "--prompt-layout", "system",
            "--prompt-layout", "user", "--db", str(db)]
    assert cli.main([*argv, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["prompt_layout"]) for r in results] == [("oracle", "system"), ("oracle", "user"),
                                                                 ("majority", None)]
    rule = note_units(oracle_notes(load_task("paper"), "llm"))[0]
    with Store(db) as store:
        prompts = {r["prompt_layout"]: store.evaluation_calls(r["evaluation_id"])[0]["prompt"] for r in results[:2]}
        system_turn = {name: prompt.split("[user]")[0] for name, prompt in prompts.items()}
        assert rule in system_turn["system"] and rule not in system_turn["user"] and rule in prompts["user"]
        # The run's own layout's oracle is its baseline; the majority, asked of no model, is stored as its own.
        assert sorted(store.baselines([run_id])["kind"]) == ["majority", "oracle"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "(prompt layout system)" in lines[0] and "(prompt layout user)" in lines[1], lines


def test_baseline_refuses_layouts_for_the_offline_learner(tmp_path, capsys):
    db = tmp_path / "offline.duckdb"
    with Store(db) as store:
        run_id = create_run(store, RunConfig(eval_size=20))
    assert cli.main(["baseline", str(run_id), "--prompt-layout", "user", "--db", str(db)]) == 2
    assert "reads no prompt: prompt layouts apply to a run of a model" in capsys.readouterr().err


# --- the dashboard ---------------------------------------------------------------------------------

def test_new_run_offers_the_layout_for_a_model_and_a_sweep_over_layouts(tmp_path, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("IML_DB", str(tmp_path / "pages.duckdb"))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/new_run.py")
    at.run()
    keys = {w.key for w in at.selectbox}
    assert "prompt_layout" not in keys  # the offline learner reads no prompt
    at.selectbox(key="agent").set_value("llm")
    at.toggle(key="sweep").set_value(True)
    at.run()
    assert not at.exception, at.exception
    setting = SETTINGS["prompt_layout"]
    assert at.selectbox(key="prompt_layout").options == [setting.describe(v) for v in setting.values]
    assert at.selectbox(key="prompt_layout").disabled  # the sweep's layouts are used
    assert at.multiselect(key="sweep_prompt_layouts").value == [DEFAULT_LAYOUT]
