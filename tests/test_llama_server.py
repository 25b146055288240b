"""The managed llama.cpp server (backends/llama_server.py) with the real `llama-server` of this
machine's build and the tiny random-weight model: one server per settings, shared and stopped when
idle or orphaned; labels forced by the grammar; the prefix kept; cached tokens counted by the
server; and a server killed by a real signal mid-step stops its run, names the signal, and the run
resumes to the same steps without repeating a completed call."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from iml_core.backends import PromptTooLong
from iml_core.backends.llama_server import LlamaServerBackend, ServerPool
from iml_core.config import RunConfig
from iml_core.errors import UserError
from iml_core.manager import RunManager
from iml_core.runner import create_run, execute_run

LABELS = ["Florp", "Zindle", "Quarrow", "Brimlet"]
ASK = [{"role": "system", "content": "Notes: creatures with fur are Zindle."}, {"role": "user", "content": "A cat?"}]


def pid_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie still answers kill(0): ask /proc whether it has exited
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def pool():
    servers = ServerPool(idle_seconds=600)
    yield servers
    servers.stop_all()


def test_backends_with_the_same_settings_share_one_server_and_others_get_their_own(pool, tiny_model):
    first = LlamaServerBackend(str(tiny_model), n_ctx=1024, pool=pool)
    second = LlamaServerBackend(str(tiny_model), n_ctx=1024, pool=pool)
    third = LlamaServerBackend(str(tiny_model), n_ctx=2048, pool=pool)
    servers = pool.servers()
    assert len(servers) == 2 and first.key == second.key != third.key
    assert {s.key.n_ctx for s in servers} == {1024, 2048}
    assert first.max_parallel == 1  # a CPU build decodes one sequence at a time by default
    assert first.identity["compute"] == "cpu" and first.identity["build"] == first.build.key


def test_labels_are_forced_by_the_grammar_and_cached_tokens_come_from_the_server(pool, tiny_model):
    backend = LlamaServerBackend(str(tiny_model), n_ctx=1024, pool=pool)
    answers = [backend.label(ASK, LABELS, temperature=1.0, seed=seed, max_tokens=24, sentences=3) for seed in range(6)]
    assert all(a.text in LABELS and 1 <= a.sentence <= 3 for a in answers), [a.raw for a in answers]
    assert all(a.tokens_in > 10 and a.tokens_out > 0 for a in answers)
    # The same prompt again: the server reuses all but the last of its tokens from its slot.
    assert answers[0].tokens_cached == 0 and all(a.tokens_cached >= a.tokens_in - 1 for a in answers[1:])


def test_a_revision_continues_after_the_kept_prefix(pool, tiny_model):
    backend = LlamaServerBackend(str(tiny_model), n_ctx=1024, pool=pool)
    out = backend.text(ASK, temperature=0.8, seed=1, max_tokens=12, prefix="Creatures with fur")
    assert out.text.startswith("Creatures with fur ") and out.text == "Creatures with fur " + out.raw


def test_a_prompt_longer_than_a_slots_context_is_a_setting_to_change(pool, tiny_model):
    backend = LlamaServerBackend(str(tiny_model), n_ctx=256, pool=pool)
    long = [{"role": "user", "content": "fur " * 400}]
    with pytest.raises(PromptTooLong, match="raise n_ctx"):
        backend.text(long, temperature=0.0, seed=0, max_tokens=8)


def test_an_idle_server_is_stopped_and_the_next_call_starts_a_fresh_one(tiny_model):
    pool = ServerPool(idle_seconds=0.5)
    try:
        backend = LlamaServerBackend(str(tiny_model), n_ctx=512, pool=pool)
        first_pid = pool.servers()[0].pid
        assert pid_gone(first_pid, seconds=15), "an unused server is stopped"
        assert pool.servers() == []
        assert backend.label(ASK, LABELS, temperature=0.0, seed=0, max_tokens=8).text in LABELS
        assert pool.servers()[0].pid != first_pid
    finally:
        pool.stop_all()


def test_a_server_whose_parent_died_stops_by_itself(tiny_model, tmp_path):
    # The parent starts a server from a worker thread that then ends (as a run's thread does), then
    # is killed with SIGKILL: no atexit runs, and the server must still go.
    script = textwrap.dedent(f"""
        import os, sys, threading, time
        from iml_core.backends.llama_server import LlamaServerBackend, SERVERS
        threading.Thread(target=lambda: LlamaServerBackend({str(tiny_model)!r}, n_ctx=512)).start()
        deadline = time.monotonic() + 60
        while not SERVERS.servers():
            if time.monotonic() > deadline:  # out now, whatever the starting thread is doing
                print("no llama-server started within 60 s", file=sys.stderr, flush=True)
                os._exit(1)
            time.sleep(0.05)
        time.sleep(1)
        print(SERVERS.servers()[0].pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    line = parent.stdout.readline()  # the child prints the pid, or ends within 60 s saying why on stderr
    assert line.strip(), "the parent process started no llama-server (its stderr is in the captured output)"
    server_pid = int(line)
    os.kill(server_pid, 0)  # alive after the thread that started it ended
    parent.kill()
    parent.wait()
    assert pid_gone(server_pid), "the orphaned server stops within seconds"


def test_a_truncated_gguf_is_refused_with_the_servers_own_words(tiny_model, tmp_path, pool):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny_model.read_bytes()[: tiny_model.stat().st_size // 2])
    with pytest.raises(UserError) as failure:
        LlamaServerBackend(str(broken), n_ctx=512, pool=pool)
    message = str(failure.value)
    assert "llama-server could not start with broken.gguf" in message and "log lines" in message
    assert "complete GGUF file" in message
    assert pool.servers() == []


def killing_config(model, **settings):
    return RunConfig(agent="llm", backend="llama-server", model=str(model), n_ctx=2048, steps=4, batch_size=8,
                     eval_size=24, max_note_words=40, momentum=0.5, temperature=0.8, seed=3, **settings)


def cached_answers(store) -> int:
    with store.held() as cursor:
        return cursor.execute("SELECT count(*) FROM response_cache").fetchone()[0]


@pytest.mark.parametrize("kill", [signal.SIGSEGV, signal.SIGKILL])
def test_a_server_killed_mid_step_fails_one_run_which_resumes_to_the_same_steps(kill, tmp_path, tiny_model):
    from iml_core.backends.llama_server import SERVERS
    from iml_core.store import Store

    # Each run starts on a fresh server, so the two see the same prompt-cache states up to the crash
    # (llama.cpp's numbers depend on how a prompt is split into batches, and so on what is cached).
    SERVERS.stop_all()
    with Store(tmp_path / "clean.duckdb") as clean:
        reference = create_run(clean, killing_config(tiny_model))
        assert execute_run(clean, reference)["status"] == "completed"
        expected = [(s["step"], s["notes"], s["train_accuracy"], s["eval_accuracy"]) for s in clean.steps(reference)]
        calls_uncrashed = len(clean.model_calls(reference))

    SERVERS.stop_all()
    with Store(tmp_path / "crash.duckdb") as store:
        manager = RunManager(store)  # as under the dashboard: runs in worker threads of this process
        run_id = manager.submit([killing_config(tiny_model)])[0]
        neighbour = manager.submit([RunConfig(steps=300, eval_size=50)])[0]  # an offline run beside it
        server = next(s for s in SERVERS.servers() if s.key.model == str(tiny_model.resolve()))
        deadline = time.monotonic() + 120
        while not (store.steps(run_id) and cached_answers(store) >= len(store.steps(run_id)) * 20 + 12):
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.005)
        os.kill(server.pid, kill)
        assert store.run(neighbour)["status"] == "running"
        manager.join(timeout=120)
        run = store.run(run_id)
        assert run["status"] == "failed", run
        assert f"died of {kill.name}" in run["error"] and "log lines" in run["error"] and "resume" in run["error"]
        assert store.run(neighbour)["status"] == "completed"  # the process and its other runs went on
        done_before = len(store.steps(run_id))
        assert 1 <= done_before <= 4
        answered_before = cached_answers(store)
        recorded_before = len(store.model_calls(run_id))

        manager.resume([run_id])  # a fresh server
        manager.join(timeout=120)
        assert store.run(run_id)["status"] == "completed"
        got = [(s["step"], s["notes"], s["train_accuracy"], s["eval_accuracy"]) for s in store.steps(run_id)]
        # The steps before the crash are the uncrashed run's; those after ran on a server whose
        # prompt cache started cold, and may differ (docs/operations.md says how often).
        assert got[:done_before] == expected[:done_before] and len(got) == len(expected)
        calls = store.model_calls(run_id)
        assert len(calls) == calls_uncrashed
        # Each call answered before the crash, in the step it interrupted, comes from the cache:
        # no completed call is asked again.
        resumed = [c for c in calls if c["step"] >= done_before]
        assert answered_before > recorded_before
        assert sum(c["cached"] for c in resumed) == answered_before - recorded_before


def test_two_threads_share_one_server_safely(pool, tiny_model):
    backend = LlamaServerBackend(str(tiny_model), n_ctx=1024, slots=2, pool=pool)
    results, errors = [], []

    def ask(seed):
        try:
            results.append(backend.label(ASK, LABELS, temperature=1.0, seed=seed, max_tokens=8).text)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=ask, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread was still waiting for its answer after 120 s"
    assert not errors and len(results) == 8 and set(results) <= set(LABELS)
    assert len(pool.servers()) == 1 and pool.servers()[0].in_flight == 0


def test_a_probe_names_the_signal_that_ended_its_child_and_this_process_goes_on(starter_model):
    """`doctor --model` and the Models page's Test make their one call in a child process: a model
    that crashes llama.cpp is named (here a real SIGSEGV sent to the child mid-load), not shared."""
    from iml_core.errors import RunFailed
    from iml_core.probe import probe

    failure = []

    def ask():
        try:
            probe(RunConfig(agent="llm", backend="llama-cpp", model=str(starter_model)))
        except RunFailed as e:
            failure.append(str(e))

    asking = threading.Thread(target=ask)
    asking.start()
    child = None
    deadline = time.monotonic() + 30
    while child is None and time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if b"probe_child" in f.read() and int(entry) != os.getpid():
                        child = int(entry)
            except (OSError, ValueError):
                continue
        time.sleep(0.005)
    assert child is not None, "the probe runs in a child process"
    os.kill(child, signal.SIGSEGV)
    asking.join(timeout=60)
    assert failure and "ended the test process with SIGSEGV (signal 11)" in failure[0], failure


def test_the_runs_of_one_model_share_an_endpoint_for_the_per_server_cap(tiny_model, tmp_path):
    from iml_core.manager import endpoint

    def config(**settings):
        return RunConfig(agent="llm", backend="llama-server", model=str(tiny_model), **settings)

    assert endpoint(config(momentum=0.0)) == endpoint(config(momentum=0.9)) == f"llama-server {tiny_model}"
    assert endpoint(config().replace(model=str(tmp_path / "other.gguf"))) != endpoint(config())
    assert endpoint(config().replace(backend="llama-cpp")) is None  # in this process: no server to cap


def test_every_slot_holds_the_whole_context_a_run_asks_for(pool, tiny_model):
    backend = LlamaServerBackend(str(tiny_model), n_ctx=512, slots=4, pool=pool)
    assert pool.servers()[0].slot_ctx == 512
    prompt = [{"role": "user", "content": "fur " * 300}]  # about 300 tokens: more than 512 / 4
    assert backend.text(prompt, temperature=0.0, seed=0, max_tokens=8).tokens_in > 300


def test_iml_serve_runs_the_managed_server_in_the_foreground_for_other_machines(tiny_model, tmp_path):
    # What docs/operations.md's Ray section does: one machine serves, another runs with --backend openai.
    import socket

    from conftest import free_port, wait_until_answers

    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "iml_core", "serve", str(tiny_model), "--port", str(port),
                              "--n-ctx", "1024"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/health", serve, "iml serve", seconds=120)
        command = open(f"/proc/{serve.pid}/cmdline", "rb").read().split(b"\0")
        assert command[0].endswith(b"/bin/llama-server")  # the project's build, in the foreground: the same pid
        assert b"--alias" in command and b"-np" in command
        url = f"http://127.0.0.1:{port}/v1"
        doctor = subprocess.run([sys.executable, "-m", "iml_core", "doctor", "--base-url", url, "--model",
                                 str(tiny_model), "--backend", "openai", "--timeout", "60"],
                                capture_output=True, text=True, timeout=300)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert f"server {url}: answers; models: {tiny_model}" in doctor.stdout
        assert f"model OpenAI-compatible: {tiny_model} at {url}: answered" in doctor.stdout
        # The port is taken now: a second one is refused before it starts anything.
        again = subprocess.run([sys.executable, "-m", "iml_core", "serve", str(tiny_model), "--port", str(port)],
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in again.stderr
    finally:
        serve.send_signal(signal.SIGINT)  # Ctrl-C
        output = serve.communicate(timeout=30)[0]
    assert f"serving {tiny_model} at http://127.0.0.1:{port}/v1" in output
    assert serve.returncode is not None
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))  # nothing listens there any more
