"""The LLM agent on the real llama.cpp with a tiny random-weight model: its output is gibberish,
so these tests check structure: valid labels, the forced prefix, logged calls, reused KV cache,
and the response cache."""

import pytest

from iml_core.config import RunConfig
from iml_core.diff import words
from iml_core.errors import UserError
from iml_core.attribution import note_units
from iml_core.backends.llama_cpp import check_model_file, label_grammar
from iml_core.prompts import PROMPTS
from iml_core.runner import create_run, execute_run
from iml_core.tasks import parse_csv_task


def llm_config(model, **settings):
    defaults = dict(agent="llm", backend="llama-cpp", model=str(model), n_ctx=4096, batch_size=4, eval_size=8,
                    max_note_words=60, momentum=0.5, temperature=0.8)
    return RunConfig(**{**defaults, **settings})


def test_a_three_step_run_keeps_every_structural_promise(store, tiny_model):
    run_id = create_run(store, llm_config(tiny_model, steps=3))
    summary = execute_run(store, run_id)
    assert summary["status"] == "completed" and summary["steps"] == 3
    run = store.run(run_id)
    assert run["agent_description"] == "llama.cpp: tiny-llama.gguf"
    assert run["prompts"] == PROMPTS  # the exact prompt texts travel with the run

    predictions = store.predictions(run_id)
    assert len(predictions) == 3 * 4 + 4 * 8  # train samples, and eval at steps 0..3
    classes = {"Florp", "Zindle", "Quarrow", "Brimlet"}
    assert all(p["predicted"] in classes for p in predictions), "the grammar allows only class names"

    steps = store.steps(run_id)
    units = {s["step"]: len(note_units(s["notes"])) for s in steps}
    for p in predictions:  # the grammar also makes every answer name a line of the notes it was shown
        shown = units[p["step"]] if p["phase"] == "eval" else units[p["step"] - 1]
        assert (p["note_sentence"] is None) if shown == 0 else (1 <= p["note_sentence"] <= shown), (p, shown)
    assert any(p["note_sentence"] for p in predictions)
    for before, after in zip(steps, steps[1:], strict=False):
        n = after["prefix_words"]
        assert words(after["notes"])[:n] == words(before["notes"])[:n]
        if n:
            assert after["prefix_kept_by_model"] is True  # forced by continuing the prompt
    assert any(s["prefix_words"] > 0 for s in steps[2:])

    calls = store.model_calls(run_id)
    assert {c["phase"] for c in calls} == {"infer", "induce", "revise", "eval"}
    assert all(c["tokens_in"] > 0 and c["tokens_out"] > 0 and not c["cached"] for c in calls)
    assert sum(s["tokens_in"] for s in steps) == sum(c["tokens_in"] for c in calls) == run["tokens_in"]
    # The samples of a step share the notes: from the second on, llama.cpp reuses that prefix.
    train_1 = [c for c in calls if c["step"] == 1 and c["phase"] == "infer"]
    assert train_1[0]["prompt"].split("[user]")[0] == train_1[1]["prompt"].split("[user]")[0]
    assert all(c["tokens_cached"] > 0.5 * c["tokens_in"] for c in train_1[1:])


def test_a_repeated_run_is_answered_by_the_response_cache(store, tiny_model):
    first = create_run(store, llm_config(tiny_model, steps=2, seed=4))
    execute_run(store, first)
    second = create_run(store, llm_config(tiny_model, steps=2, seed=4))
    execute_run(store, second)
    calls = store.model_calls(second)
    assert calls and all(c["cached"] for c in calls), "no model call the second time"
    assert store.run(second)["tokens_in"] == 0
    assert [s["notes"] for s in store.steps(second)] == [s["notes"] for s in store.steps(first)]
    assert [p["predicted"] for p in store.predictions(second)] == [p["predicted"] for p in store.predictions(first)]

    uncached = create_run(store, llm_config(tiny_model, steps=1, seed=4, cache=False))
    execute_run(store, uncached)
    assert not any(c["cached"] for c in store.model_calls(uncached))


def test_class_names_with_quotes_and_backslashes_still_come_out_exactly(store, tiny_model, tmp_path):
    rows = "colour,label\n" + "".join(f"{c},{l}\n" for c, l in
                                       [("red", '"a""b"'), ("blue", "c\\d"), ("green", "e: f")] * 6)
    task = parse_csv_task(rows.encode(), "odd.csv")
    assert set(task.classes) == {'a"b', "c\\d", "e: f"}
    path = tmp_path / "odd.csv"
    path.write_text(rows)
    run_id = create_run(store, llm_config(tiny_model, task=str(path), steps=1, eval_size=6, batch_size=6))
    execute_run(store, run_id)
    assert {p["predicted"] for p in store.predictions(run_id)} <= set(task.classes)
    assert all(p["predicted"] is not None for p in store.predictions(run_id))
    assert label_grammar(['a"b', "c\\d"]) == 'root ::= label\nlabel ::= "a\\"b" | "c\\\\d"'
    assert label_grammar(["x"], sentences=2) == 'root ::= label " | line " number\nlabel ::= "x"\nnumber ::= "1" | "2"'


def test_bad_model_paths_are_refused_before_a_run_starts(store, tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    for path, problem in [(tmp_path / "missing.gguf", "no model file"), (tmp_path, "is a folder"),
                          (tmp_path / "notes.txt", "is not a GGUF model")]:
        with pytest.raises(UserError, match=problem):
            check_model_file(path)
        with pytest.raises(UserError, match=problem):
            create_run(store, llm_config(path, steps=1))
    assert store.runs() == []


def test_repeat_penalty_reaches_llama_cpp_and_the_cache_key_only_when_set(tiny_model):
    from iml_core.backends.llama_cpp import LlamaCppBackend

    plain = LlamaCppBackend(str(tiny_model))
    assert "repeat_penalty" not in plain.identity  # answers cached before penalties existed still count
    penalized = LlamaCppBackend(str(tiny_model), repeat_penalty=1.8)
    assert penalized.identity["repeat_penalty"] == 1.8
    messages = [{"role": "user", "content": "Write your notes about the creatures."}]
    texts = [b.text(messages, temperature=0.0, seed=1, max_tokens=48).raw for b in (plain, penalized, plain)]
    assert texts[0] == texts[2] and texts[1] != texts[0]  # greedy output changes only with the penalty
    # Labels are never penalized: a class name the notes mention is no repetition.
    labels = [b.label(messages, ["Florp", "Zindle"], temperature=0.0, seed=1, max_tokens=8).raw
              for b in (plain, penalized)]
    assert labels[0] == labels[1]


def test_sampling_settings_are_checked_stored_and_taken_by_the_cli(tmp_path, tiny_model):
    import json
    import subprocess
    import sys

    assert RunConfig(repeat_penalty=0.5).problems() == ["Repeat penalty must be between 1.0 and 2.0, got 0.5"]
    assert RunConfig(frequency_penalty=3.0).problems() == ["Frequency penalty must be between -2.0 and 2.0, got 3.0"]
    db = tmp_path / "p.duckdb"
    result = subprocess.run(
        [sys.executable, "-m", "iml_core", "run", "--model", str(tiny_model), "--repeat-penalty", "1.3",
         "--steps", "1", "--batch-size", "2", "--eval-size", "2", "--max-note-words", "20", "--json", "--db", str(db)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    from iml_core.store import Store
    with Store(db) as store:
        config = store.run(1)["config"]
    assert (config["agent"], config["backend"], config["repeat_penalty"]) == ("llm", "llama-server", 1.3)
    assert json.loads(result.stdout)["status"] == "completed"
