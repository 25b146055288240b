"""The real-model tier: the starter model (SmolLM2-135M-Instruct, a real chat model with a real
tokenizer and chat template) run for real: in the managed llama-server (the default for a model
here), in this process by llama.cpp, and through `python -m llama_cpp.server` with the openai
client. It asserts what must hold for any real model;
what this small model writes is not judged (it cannot learn the benchmark)."""

import json
import subprocess
import sys

import pytest

from iml_core.attribution import note_units
from iml_core.backends.llama_cpp import LlamaCppBackend
from iml_core.config import RunConfig
from iml_core.diff import words
from iml_core.gguf_header import read_gguf_header
from iml_core.models import server_models
from iml_core.runner import create_run, execute_run
from iml_core.tasks import generate_benchmark

from conftest import free_port, llama_cpp_server_env, wait_until_answers

CLASSES = set(generate_benchmark("paper").classes)
# Small enough to keep the tier within a few minutes on 2 cores: about 0.4 s per answer.
SMALL = dict(batch_size=4, eval_size=8, max_note_words=60, momentum=0.5, temperature=0.2, n_threads=2)


def notes_shown(store, run_id):
    """For each prediction, how many numbered lines the notes it was asked with had."""
    units = {s["step"]: len(note_units(s["notes"])) for s in store.steps(run_id)}
    return [(p, units[p["step"]] if p["phase"] == "eval" else units[p["step"] - 1])
            for p in store.predictions(run_id)]


def assert_learning_steps_hold(store, run_id):
    predictions = store.predictions(run_id)
    assert predictions and all(p["predicted"] in CLASSES for p in predictions), "every label is a class"
    for p, shown in notes_shown(store, run_id):
        assert (p["note_sentence"] is None) if shown == 0 else (1 <= p["note_sentence"] <= shown), (p, shown)
    assert any(shown and p["note_sentence"] for p, shown in notes_shown(store, run_id)), "line numbers are parsed"
    steps = store.steps(run_id)
    for step in steps[1:]:
        batch = store.batch_notes(run_id, step["step"])
        assert batch and all(text.strip() and text != "(empty)" for text in batch), "induction returns text"
    revisions = [c for c in store.model_calls(run_id) if c["phase"] == "revise"]
    assert revisions and all(c["response"].strip() for c in revisions), "revision returns text"
    for before, after in zip(steps, steps[1:], strict=False):
        kept = after["prefix_words"]
        assert words(after["notes"])[:kept] == words(before["notes"])[:kept]
    return steps


@pytest.mark.parametrize("backend", ["llama-server", "llama-cpp"])
def test_the_starter_model_here(store, starter_model, backend):
    run_id = create_run(store, RunConfig(agent="llm", backend=backend, model="starter", steps=2, **SMALL))
    summary = execute_run(store, run_id)
    assert summary["status"] == "completed", summary
    assert store.run(run_id)["config"]["model"] == str(starter_model)
    steps = assert_learning_steps_hold(store, run_id)
    # Under momentum, llama.cpp continues the kept beginning itself: the model never drops it.
    assert steps[2]["prefix_words"] > 0 and steps[2]["prefix_kept_by_model"] is True
    # The samples of a step share the notes: llama.cpp reuses them from its KV cache (the server's
    # own count of the prompt tokens it did not evaluate again).
    calls = store.model_calls(run_id)
    for step in (1, 2):
        for phase in ("infer", "eval"):
            asked = [c for c in calls if c["step"] == step and c["phase"] == phase]
            share = sum(c["tokens_cached"] for c in asked) / sum(c["tokens_in"] for c in asked)
            assert share >= 0.5, (step, phase, share)


def test_the_chat_template_comes_from_the_gguf(starter_model):
    assert read_gguf_header(starter_model).chat_template
    backend = LlamaCppBackend(str(starter_model), n_ctx=2048)
    prompt = backend.render_chat([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}])
    template = backend._llm.metadata["tokenizer.chat_template"]
    assert "<|im_start|>" in template  # SmolLM2's own (ChatML) template...
    assert "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n" in prompt
    assert "[INST]" not in prompt  # ...and not another model's


def test_a_run_naming_the_starter_completes_from_the_command_line(tmp_path, starter_model):
    db = tmp_path / "cli.duckdb"
    result = subprocess.run(
        [sys.executable, "-m", "iml_core", "run", "--model", "starter", "--steps", "1", "--batch-size", "2",
         "--eval-size", "4", "--max-note-words", "40", "--n-threads", "2", "--json", "--db", str(db)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["steps"] == 1
    show = subprocess.run([sys.executable, "-m", "iml_core", "show", "1", "--db", str(db)], capture_output=True,
                          text=True)
    assert "agent llama-server: starter" in show.stdout and str(starter_model) in show.stdout
    assert "backend         llama-server" in show.stdout  # a model here runs in the managed server by default


@pytest.fixture(scope="module")
def starter_server(starter_model, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(starter_model), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "4096", "--n_threads", "2", "--model_alias", "smollm2"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=llama_cpp_server_env())
    url = f"http://127.0.0.1:{port}/v1"
    wait_until_answers(f"{url}/models", process, "llama_cpp.server", log)
    yield url
    process.terminate()
    process.wait(timeout=20)


def test_the_starter_model_through_the_llama_cpp_server(store, starter_server):
    assert server_models(starter_server) == ["smollm2"]
    run_id = create_run(store, RunConfig(agent="llm", backend="openai", base_url=starter_server, model="smollm2",
                                         steps=2, max_parallel=1, **SMALL))
    summary = execute_run(store, run_id)
    assert summary["status"] == "completed", summary
    calls = store.model_calls(run_id)
    answers = [c for c in calls if c["phase"] in ("infer", "eval")]
    assert all(json.loads(c["response"])["label"] in CLASSES for c in answers), "json_object with the schema"
    steps = assert_learning_steps_hold(store, run_id)
    # A server cannot be made to continue a given text: when the model drops the kept beginning,
    # the loop puts it back and records that the model did not keep it.
    assert steps[2]["prefix_words"] > 0 and steps[2]["prefix_kept_by_model"] is not None


def test_the_models_page_offers_the_servers_models(starter_server, tmp_path, monkeypatch):
    from test_dashboard import alerts, app_at

    monkeypatch.setenv("IML_DB", str(tmp_path / "dash.duckdb"))
    at = app_at("pages/models.py")
    at.radio(key="model_backend").set_value("openai")
    at.run()
    at.text_input(key="model_base_url").set_value(starter_server)
    at.run()
    at.button(key="model_list").click()
    at.run()
    assert not at.exception and not alerts(at)
    assert at.selectbox(key="model_name_listed").options == ["smollm2"]
    at.selectbox(key="model_name_listed").set_value("smollm2")
    at.run()
    at.button(key="model_test").click()
    at.run()
    assert any("OpenAI-compatible: smollm2" in s.value and "answered in" in s.value for s in at.success)
    at.text_input(key="model_base_url").set_value(f"http://127.0.0.1:{free_port()}/v1")
    at.run()
    at.button(key="model_list").click()
    at.run()
    assert any("cannot reach a server at http://127.0.0.1:" in a for a in alerts(at))


def test_the_starter_models_baselines_are_stored_and_drawn(store, starter_model):
    from iml_core.evaluation import compute_baselines, oracle_notes
    from iml_core.charts import accuracy_curves, with_baselines

    run_id = create_run(store, RunConfig(agent="llm", backend="llama-server", model="starter", steps=1,
                                         **{**SMALL, "max_note_words": 120}))
    execute_run(store, run_id)
    done = compute_baselines(store, run_id, ["no notes", "in-context", "oracle"])
    assert [e.kind for _, e in done] == ["no notes", "in-context", "oracle"]
    no_notes, in_context, oracle = (e for _, e in done)
    assert no_notes.accuracy == store.steps(run_id)[0]["eval_accuracy"]  # step 0 had no notes: the same answers
    assert all(c.cached for c in no_notes.calls)  # ...from the response cache
    assert in_context.shots >= 2 and all(c.tokens_in > 0 for c in in_context.calls if not c.cached)
    assert oracle.notes == oracle_notes(generate_benchmark("paper"), "llm")
    assert all(p.predicted in CLASSES for _, e in done for p in e.predictions)
    stored = store.baselines([run_id]).set_index("kind")["accuracy"].to_dict()
    assert stored == {e.kind: e.accuracy for _, e in done}
    figure = with_baselines(accuracy_curves(store.steps_frame([run_id])), store.baselines([run_id]))
    labels = [trace.name for trace in figure.data if trace.name and "%" in trace.name]  # the legend's
    assert any(label.startswith(f"oracle notes (ceiling): {100 * oracle.accuracy:.1f}%") for label in labels)
    assert len(labels) == 3


def test_the_user_layout_keeps_the_shared_part_first_so_the_kv_cache_is_reused(store, starter_model):
    from iml_core.evaluation import compute_baselines

    # Notes longer than a sample and its question, as a step's usually are: a later call that reused
    # them has most of its prompt cached; one that evaluated them again would not.
    notes = ("A creature that is red and has a long tail is a Florp. A creature that is red and has a short tail "
             "is a Zindle.\nA creature that is blue and has a long tail is a Brimlet. A creature that is blue and "
             "has a short tail is a Quarrow.\nWings, eyes, food and habitat do not decide the class. When unsure, "
             "look at the colour first and at the tail second.")
    run_id = create_run(store, RunConfig(agent="llm", backend="llama-server", model="starter", steps=1,
                                         prompt_layout="user", initial_notes=notes,
                                         **{**SMALL, "max_note_words": 100}))
    summary = execute_run(store, run_id)
    assert summary["status"] == "completed", summary
    calls = store.model_calls(run_id)
    for step, phase in ((0, "eval"), (1, "infer"), (1, "eval")):
        asked = [c for c in calls if c["step"] == step and c["phase"] == phase]
        assert len(asked) > 1, (step, phase)
        for c in asked:
            system, user = c["prompt"].split("\n\n[user]\n")
            assert "Your notes" not in system and user.startswith("Your notes, one numbered line per sentence:\n")
        assert all(c["tokens_cached"] > 0 for c in asked[1:]), (step, phase)
        if step == 0 or phase == "infer":  # the notes above (step 1's eval reads the model's own)
            shares = [c["tokens_cached"] / c["tokens_in"] for c in asked[1:]]
            assert min(shares) >= 0.5, (step, phase, shares)
    answers = store.predictions(run_id)
    assert all(p["predicted"] in CLASSES for p in answers)
    assert any(p["note_sentence"] for p in answers), "the user layout still asks for a line, and gets one"

    # The plain layout asks for no line: the grammar allows none, and none is stored.
    [(_, plain)] = compute_baselines(store, run_id, ["oracle"], layouts=["plain"])
    assert plain.prompt_layout == "plain" and all(p.predicted in CLASSES for p in plain.predictions)
    assert all(p.note_sentence is None for p in plain.predictions)
    assert all("which line" not in c.prompt and "[1]" not in c.prompt for c in plain.calls)


def test_a_model_is_said_at_the_size_its_makers_name(qwen_model, starter_model):
    from iml_core.models import describe

    # The tensors of Qwen2.5-Coder-1.5B add up to 1.8B: its tied embedding is stored twice.
    qwen = describe("qwen2.5-coder-1.5b", qwen_model, "registry")
    assert qwen.parameters > 1.7e9 and qwen.parameters_text == "1.5B"
    assert describe("starter", starter_model, "registry").parameters_text == "135M"


def test_qwen_applies_the_rung_1_rule_in_the_plain_layout_and_stays_near_the_floor_without_it(qwen_model):
    """Qwen2.5-Coder-1.5B (from the registry's packages, by its catalogue name) answers with the rule
    card as notes, and not by guessing well: with no notes it is near the majority class's share."""
    from iml_core.builders import build_task
    from iml_core.evaluation import majority, oracle_notes, score_notes
    from iml_core.registry import model_agent
    from iml_core.studies import LADDER

    config = RunConfig(agent=model_agent(), backend="llama-server", model="qwen2.5-coder-1.5b",
                       prompt_layout="plain", task=LADDER[0].task(0), eval_size=40).check()
    oracle = score_notes(config, oracle_notes(build_task(config), config.agent), kind="oracle")
    floor = score_notes(config, "", kind="no notes")
    share = majority(config).accuracy
    assert oracle.accuracy >= 0.9, oracle.summary()
    assert floor.accuracy <= share + 0.15, (floor.summary(), share)
    assert oracle.accuracy - floor.accuracy >= 0.25


def test_qwen_learns_the_paper_benchmark_in_rule_form_with_the_bank(store, qwen_model):
    """Qwen2.5-Coder-1.5B with the bank in rule form on the paper's benchmark (4 species by a truth
    table over 2 of 10 attributes): the model says which attributes tell the classes apart, the
    lists are run by the engine (no scoring call), and the notes end holding the true table. The
    same notes read by the model are stored beside, whatever they score."""
    from iml_core.builders import build_task
    from iml_core.registry import model_agent
    from iml_core.truth import TruthScorer

    config = RunConfig(agent=model_agent(), backend="llama-server", model="qwen2.5-coder-1.5b", task="paper",
                       learner="bank", notes_form="rule", apply="rule", steps=3, batch_size=8, eval_size=40,
                       eval_every=3, proposals=1, score_window=32, seed=1).check()
    run_id = create_run(store, config)
    execute_run(store, run_id)
    final = store.steps(run_id)[-1]
    assert final["rule_eval_accuracy"] >= 0.9, final["notes"]
    assert TruthScorer(build_task(config)).score(final["notes"]).rule_recall == 1.0, final["notes"]
    assert final["model_eval_accuracy"] is not None  # the paper's protocol, stored beside
    phases = {c["phase"] for c in store.model_calls(run_id)}
    assert "score" not in phases and "infer" not in phases  # lists are run, never asked about
