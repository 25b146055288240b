"""The OpenAI-compatible backend with the real `openai` client: against the real llama.cpp server
on 127.0.0.1, and against a fault-injecting fake for 429s, 500s, hangs and keys in errors."""

import os
import subprocess
import sys

import re

import duckdb
import pytest

from iml_core.agents import Phase
from iml_core.attribution import note_units
from iml_core.agents.llm import LLMAgent
from iml_core.backends.openai_compat import OpenAICompatBackend
from iml_core.config import RunConfig
from iml_core.errors import RunFailed
from iml_core.runner import create_run, execute_run
from iml_core.tasks import generate_benchmark

from conftest import free_port, llama_cpp_server_env, wait_until_answers
from fault_server import FaultServer

SECRET = "sk-iml-test-SECRET-7f3a9c"


@pytest.fixture(scope="module")
def llama_server(tiny_model):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_model), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "4096", "--model_alias", "tiny"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=llama_cpp_server_env())
    url = f"http://127.0.0.1:{port}/v1"
    wait_until_answers(f"{url}/models", process, "llama_cpp.server")
    yield url
    process.terminate()
    process.wait(timeout=20)


def openai_config(url, **settings):
    defaults = dict(agent="llm", backend="openai", base_url=url, model="tiny", batch_size=4, eval_size=8,
                    max_note_words=40, temperature=0.8, max_retries=3, timeout=30.0)
    return RunConfig(**{**defaults, **settings})


def test_a_run_against_the_llama_cpp_server_gives_valid_labels(store, llama_server):
    run_id = create_run(store, openai_config(llama_server, steps=2))
    summary = execute_run(store, run_id)
    assert summary["status"] == "completed", summary
    assert all(p["predicted"] in {"Florp", "Zindle", "Quarrow", "Brimlet"} for p in store.predictions(run_id))
    calls = store.model_calls(run_id)
    label_calls = [c for c in calls if c["phase"] in ("infer", "eval")]
    assert all('"label"' in c["response"] for c in label_calls)  # structured output, not free text
    assert all(c["tokens_in"] > 0 for c in calls)
    # With notes to point at, the schema makes the answer name a line of them, next to the label.
    units = {s["step"]: len(note_units(s["notes"])) for s in store.steps(run_id)}
    for p in store.predictions(run_id):
        shown = units[p["step"]] if p["phase"] == "eval" else units[p["step"] - 1]
        assert (p["note_sentence"] is None) if shown == 0 else (1 <= p["note_sentence"] <= shown), (p, shown)
    assert any(p["note_sentence"] for p in store.predictions(run_id))


def test_parallel_requests_keep_the_samples_order(llama_server):
    task = generate_benchmark("paper")
    observations = [s.observation for s in task.samples[:12]]

    def labels(parallel):
        backend = OpenAICompatBackend("tiny", base_url=llama_server, max_parallel=parallel)
        agent = LLMAgent(task, backend, temperature=1.0)
        return [p.raw for p in agent.infer("", observations, Phase(0, 1, "eval"))]

    sequential = labels(1)
    assert labels(6) == sequential
    assert len(set(sequential)) > 1  # different answers, so a shuffled order would show


def test_429_and_500_are_retried_until_the_server_recovers(store):
    with FaultServer(["429", "500", "429"]) as server:
        run_id = create_run(store, openai_config(server.url, steps=1, eval_size=4, max_retries=3,
                                                 structured_output="json_object"))
        summary = execute_run(store, run_id)
    assert summary["status"] == "completed"
    assert len(server.requests) == 3 + 4 + 4 + 1 + 1 + 4  # 3 failures, eval@0, 4 train, induce, revise, eval@1


def test_a_run_shows_retrying_while_the_server_fails_and_running_once_it_answers(store):
    seen = {}

    def look(number):
        if number == 2:  # the second retry of the first request, after two 429s
            run = store.run(run_id)
            seen.update(status=run["status"], notice=run["notice"])

    with FaultServer(["429", "429"], on_request=look) as server:
        run_id = create_run(store, openai_config(server.url, steps=1, eval_size=2, max_retries=3, max_parallel=1,
                                                 structured_output="json_object"))
        execute_run(store, run_id)
    assert seen["status"] == "retrying"
    assert re.fullmatch(r"HTTP 429 from the model server; retry 2 of 3 in \d\.\d s", seen["notice"])
    run = store.run(run_id)
    assert run["status"] == "completed" and run["notice"] is None


def test_garbage_answers_are_kept_raw_counted_wrong_or_handled_by_rule_and_the_run_goes_on(store):
    long_revision = " ".join(f"word{i}" for i in range(30))
    script = ["say:not json at all", 'say:{"label": "Zorp"}',  # step 0: eval
              "say:", 'say:{"label"',  # step 1: train answers empty and cut-off JSON
              "say:", "say:",  # an empty induction, an empty revision
              "ok", "ok",  # eval
              "ok", "ok", "ok", f"say:{long_revision}"]  # step 2: a revision over the cap
    with FaultServer(script) as server:
        run_id = create_run(store, openai_config(
            server.url, steps=2, eval_size=2, batch_size=2, max_parallel=1, momentum=0.0, max_note_words=10,
            initial_notes="Florp are red.", structured_output="json_object"))
        assert execute_run(store, run_id)["status"] == "completed"
    first_eval = [(p["predicted"], p["raw"], p["correct"]) for p in store.predictions(run_id, 0)]
    assert first_eval == [(None, "not json at all", False), (None, '{"label": "Zorp"}', False)]
    train = [(p["predicted"], p["raw"], p["correct"]) for p in store.predictions(run_id, 1) if p["phase"] == "infer"]
    assert train == [(None, "", False), (None, '{"label"', False)]
    steps = store.steps(run_id)
    assert steps[0]["eval_invalid"] == 2 and steps[1]["train_invalid"] == 2
    assert store.batch_notes(run_id, 1) == ["(empty)"]
    assert steps[1]["notes"] == "Florp are red."  # an empty revision keeps the notes
    assert steps[2]["notes"] == " ".join(f"word{i}" for i in range(10)) and steps[2]["words_truncated"] == 20
    assert [c["response"] for c in store.model_calls(run_id)][:6] == [s[len("say:"):] for s in script[:6]]


def test_a_server_that_stays_down_fails_the_run_and_keeps_completed_steps(store):
    # Enough answers for step 0 and step 1 (4 eval, 4 train, induce, revise, 4 eval), then 500s.
    with FaultServer(["ok"] * 14, then="500") as server:
        run_id = create_run(store, openai_config(server.url, steps=3, eval_size=4, max_retries=1,
                                                 structured_output="json_object"))
        with pytest.raises(RunFailed, match="HTTP 500"):
            execute_run(store, run_id)
    run = store.run(run_id)
    assert run["status"] == "failed" and "the model server answered HTTP 500: injected 500" in run["error"]
    assert [s["step"] for s in store.steps(run_id)] == [0, 1]


def test_a_hang_past_the_timeout_is_retried_then_reported(store):
    with FaultServer([], then="hang", hang_seconds=3) as server:
        run_id = create_run(store, openai_config(server.url, steps=1, eval_size=2, timeout=1.0, max_retries=1,
                                                 structured_output="json_object"))
        with pytest.raises(RunFailed, match="did not answer in time"):
            execute_run(store, run_id)
    assert len(server.requests) == 2 * 2  # both eval samples, each tried once more after its timeout
    assert store.run(run_id)["status"] == "failed"


def test_a_server_that_is_not_there_is_named(store):
    run_id = create_run(store, openai_config(f"http://127.0.0.1:{free_port()}/v1", steps=1, max_retries=0,
                                             structured_output="json_object"))
    with pytest.raises(RunFailed, match="cannot reach the model server"):
        execute_run(store, run_id)


def test_structured_output_falls_back_when_the_server_refuses_json_schema(llama_server):
    backend = OpenAICompatBackend("tiny", base_url=llama_server)
    out = backend.label([{"role": "user", "content": "pick"}], ["yes", "no"], temperature=0.5, seed=1, max_tokens=8)
    assert backend._mode == "json_object"  # the llama.cpp server answers json_schema with HTTP 500
    assert out.text in ("yes", "no")


def test_a_passing_5xx_does_not_cost_the_run_its_structured_output():
    with FaultServer(["503"]) as server:  # the first probe of json_schema hits a hiccup, the retry answers
        backend = OpenAICompatBackend("m", base_url=server.url)
        out = backend.label([{"role": "user", "content": "pick"}], ["yes", "no"], temperature=0.5, seed=1,
                            max_tokens=8)
    assert backend._mode == "json_schema" and out.text == "yes"
    assert [r["response_format"]["type"] for r in server.requests] == ["json_schema"] * 3


def test_the_key_reaches_the_server_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    db = tmp_path / "keys.duckdb"
    # The server echoes the key in its error, as OpenAI does for a wrong key.
    echo = {"error": {"message": f"Incorrect API key: {SECRET}"}}
    with FaultServer(["ok"] * 5, then="401", error_body=echo) as server:
        result = subprocess.run(
            [sys.executable, "-m", "iml_core", "run", "--agent", "llm", "--backend", "openai", "--base-url", server.url,
             "--model", "fault-model", "--steps", "2", "--batch-size", "2", "--eval-size", "2", "--max-retries", "0",
             "--structured-output", "json_object", "--db", str(db), "--json"],
            capture_output=True, text=True, env={**os.environ, "OPENAI_API_KEY": SECRET})
    assert any({k.lower(): v for k, v in h.items()}.get("authorization") == f"Bearer {SECRET}"
               for h in server.headers), "the key was not sent"
    assert result.returncode == 1
    assert SECRET not in result.stdout + result.stderr
    assert "HTTP 401" in result.stderr and "***" in result.stderr
    connection = duckdb.connect(str(db), read_only=True)
    tables = [r[0] for r in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    for table in tables:
        columns = [r[0] for r in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]).fetchall()]
        for column in columns:
            hits = connection.execute(
                f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR) LIKE ?',
                [f"%{SECRET}%"]).fetchone()[0]
            assert hits == 0, (table, column)
    connection.close()
    assert SECRET.encode() not in db.read_bytes()


@pytest.mark.parametrize("cap", [1, None])
def test_the_per_endpoint_cap_limits_the_runs_calling_one_server(store, cap):
    from iml_core.config import Submission
    from iml_core.manager import RunManager

    with FaultServer([], delay=0.05) as server:
        manager = RunManager(store)
        run_ids = manager.submit([openai_config(server.url, steps=1, eval_size=3, batch_size=2, max_parallel=1,
                                                seed=seed, structured_output="json_object") for seed in range(4)],
                                 limits=Submission(parallel=4, max_per_endpoint=cap))
        manager.join(timeout=120)
    assert {store.run(i)["status"] for i in run_ids} == {"completed"}
    # Each run sends one request at a time: with the cap, one run at a time reaches the server.
    assert server.most_in_flight == 1 if cap == 1 else server.most_in_flight > 1


def test_frequency_and_presence_penalties_reach_the_server_only_when_set(llama_server):
    plain = OpenAICompatBackend("tiny", base_url=llama_server)
    assert "frequency_penalty" not in plain.identity and "presence_penalty" not in plain.identity
    penalized = OpenAICompatBackend("tiny", base_url=llama_server, frequency_penalty=2.0, presence_penalty=1.5)
    assert (penalized.identity["frequency_penalty"], penalized.identity["presence_penalty"]) == (2.0, 1.5)
    messages = [{"role": "user", "content": "Write your notes about the creatures."}]
    texts = [b.text(messages, temperature=0.0, seed=1, max_tokens=48).raw for b in (plain, penalized, plain)]
    assert texts[0] == texts[2] and texts[1] != texts[0]
