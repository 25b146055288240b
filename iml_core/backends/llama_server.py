"""A GGUF model run by llama.cpp's own server (`llama-server`), which this engine starts, shares and stops.

The model lives in a process of its own, so a crash in llama.cpp (an illegal instruction, a
segfault, a GGML_ASSERT abort, the OOM killer) stops the run it served with the signal named, and
the dashboard and every other run go on. The server decodes its parallel slots in one batch, so
the inference phase sends a minibatch's samples at once.

As in process, the chat is rendered (by the server, with the GGUF's template) and completed raw:
labels are forced by a GBNF grammar sent with the request, and a revision continues after the
momentum prefix, so the model cannot drop it. Cached prompt tokens are the server's own count.

Who owns a server (docs/ARCHITECTURE.md §5): the process-wide `SERVERS` pool. One server per (model
file, GPU layers, context, slots, threads, chat template, build); runs with the same ones share it.
It is stopped after IML_SERVER_IDLE_SECONDS unused (default 300), when this process exits, and, by
the kernel, when this process dies (parent-death signal), so none is left orphaned.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from iml_core import llama_build
from iml_core.backends import BackendError, Completion, Messages, prompt_too_long
from iml_core.backends.llama_cpp import GrammarBackend, check_model_file, compute_of, label_grammar
from iml_core.errors import UserError

IDLE_SECONDS = float(os.environ.get("IML_SERVER_IDLE_SECONDS", "300"))
START_SECONDS = float(os.environ.get("IML_SERVER_START_SECONDS", "600"))  # a 70B model loads for minutes
LOG_LINES = 12  # of the server's log, in the message of a run it failed


def default_slots(compute: str) -> int:
    """Sequences decoded at once. On a CPU one: slots do not share a prefix, so every extra slot
    evaluates the step's notes again (measured 0.30x on a first burst with 4). On a GPU prompt
    evaluation is cheap and decoding batches, so 8."""
    return 1 if compute == "cpu" else 8


def signal_name(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"{signal.Signals(-returncode).name} (signal {-returncode})"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


# What to do, by how the server died; the run itself resumes from its last completed call.
_ADVICE = {
    signal.SIGILL: "llama.cpp was built with an instruction this CPU cannot run; delete the build folder named "
                   "in `iml doctor` and run `iml build` again on this machine",
    signal.SIGKILL: "it was killed, often by the kernel for lack of memory; try fewer GPU layers, a smaller "
                    "context or a smaller quantization",
    signal.SIGABRT: "llama.cpp stopped on a failed check (GGML_ASSERT), often a broken GGUF or too little GPU "
                    "memory; its log lines above say which",
    signal.SIGSEGV: "llama.cpp crashed; `iml doctor --model MODEL` tries one call in a child process",
}


@dataclass(frozen=True)
class ServerKey:
    model: str
    n_gpu_layers: int
    n_ctx: int
    slots: int
    threads: int
    chat_template: str | None
    build: str


def _popen(command: list[str], log_path: Path) -> subprocess.Popen:
    with log_path.open("wb") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One running llama-server: its process, port and log, and the requests in flight."""

    def __init__(self, key: ServerKey, process: subprocess.Popen, port: int, log_path: Path):
        self.key, self.process, self.port, self.log_path = key, process, port, log_path
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.stopping = False  # set when we stop it: its exit is then no crash
        self.slot_ctx = key.n_ctx
        self._connections = threading.local()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def last_log(self, lines: int = LOG_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:])

    def request(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> dict:
        """One HTTP request on this thread's kept-alive connection (a new one costs a round trip
        per call); the JSON answer, with `status` added when it is not 200."""
        connections = self._connections.__dict__
        for attempt in (0, 1):
            connection = connections.get("open")
            reused = connection is not None and connection.timeout == timeout
            if not reused:
                connection = connections["open"] = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                connection.request(method, path, body=json.dumps(body) if body is not None else None,
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException):
                connection.close()
                connections.pop("open", None)
                if not reused or attempt:  # a kept-alive connection the server closed meanwhile: once more
                    raise
        try:
            payload = json.loads(data) if data else {}
        except ValueError:
            payload = {"error": {"message": data.decode("utf-8", "replace")[:300]}}
        if response.status != 200:
            payload.setdefault("error", {})
            payload["status"] = response.status
        return payload

    def died(self) -> BackendError:
        """The error of a run whose server died under it, with the signal, the log and what to do."""
        self.process.wait(timeout=10)
        code = self.process.returncode
        advice = ""
        if code < 0:
            try:
                advice = _ADVICE.get(signal.Signals(-code), "")
            except ValueError:
                pass
        return BackendError(
            f"the model server (llama-server, pid {self.pid}) died of {signal_name(code)} while answering; its last "
            f"log lines:\n{self.last_log()}\nThe run stopped; resume it to go on from its last completed call"
            f"{' (' + advice + ')' if advice else ''}. Log: {self.log_path}")

    def stop(self) -> None:
        """Stops a server we are done with; its log goes with it (a crashed one's log is kept: the
        failed run's message names it)."""
        self.stopping = True
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.log_path.unlink(missing_ok=True)


class ServerPool:
    """Every llama-server this process runs, by what it serves."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS):
        self.idle_seconds = idle_seconds
        self._servers: dict[ServerKey, Server] = {}
        self._starting: dict[ServerKey, threading.Lock] = {}
        self._lock = threading.Lock()
        # Every server is started from this one long-lived thread: the kernel's parent-death signal
        # fires when the *thread* that forked the child ends, and a run's worker thread ends with its
        # run, which would take a shared server down with it.
        self._spawner: ThreadPoolExecutor | None = None

    def servers(self) -> list[Server]:
        with self._lock:
            return list(self._servers.values())

    def acquire(self, key: ServerKey, binary: Path, command: list[str]) -> Server:
        """The live server for `key`, started (and waited for) if there is none; counted as in use
        until `release`."""
        with self._lock:
            starting = self._starting.setdefault(key, threading.Lock())
        with starting:  # one start per key; others wait for it and share the server
            with self._lock:
                server = self._servers.get(key)
                if server is not None and not server.alive():
                    del self._servers[key]  # died since: the next caller gets a fresh one
                    server = None
                if server is not None:
                    server.in_flight += 1
                    return server
            server = self._start(key, binary, command)
            with self._lock:
                self._servers[key] = server
                server.in_flight += 1
            return server

    def release(self, server: Server) -> None:
        with self._lock:
            server.in_flight -= 1
            server.last_used = time.monotonic()

    def forget(self, server: Server) -> None:
        with self._lock:
            if self._servers.get(server.key) is server:
                del self._servers[server.key]

    def _start(self, key: ServerKey, binary: Path, command: list[str]) -> Server:
        if self._spawner is None:
            self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-server-spawner")
            threading.Thread(target=self._reap, name="llama-server-reaper", daemon=True).start()
        port = _free_port()
        logs = llama_build.CACHE / "servers"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"llama-server-{os.getpid()}-{port}.log"
        setpriv = shutil.which("setpriv")
        wrapper = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
        command = [*wrapper, str(binary), *command, "--host", "127.0.0.1", "--port", str(port)]
        process = self._spawner.submit(_popen, command, log_path).result()
        server = Server(key, process, port, log_path)
        deadline = time.monotonic() + START_SECONDS
        while True:
            if not server.alive():
                code = server.process.returncode
                raise UserError(f"llama-server could not start with {Path(key.model).name} ({signal_name(code)}); "
                                f"its last log lines:\n{server.last_log()}\nIs it a complete GGUF file of an "
                                "architecture this llama.cpp knows, and does it fit in memory?")
            try:
                if server.request("GET", "/health", timeout=2).get("status") == "ok":
                    break
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                server.stop()
                raise BackendError(f"llama-server did not become ready within {START_SECONDS:.0f} s; its last log "
                                   f"lines:\n{server.last_log()}")
            time.sleep(0.05)
        slots = server.request("GET", "/slots", timeout=10)
        if isinstance(slots, list) and slots and "n_ctx" in slots[0]:
            server.slot_ctx = int(slots[0]["n_ctx"])
        return server

    def _reap(self) -> None:
        while True:
            time.sleep(min(5.0, max(self.idle_seconds / 4, 0.2)))
            now = time.monotonic()
            with self._lock:
                idle = [s for s in self._servers.values()
                        if s.in_flight == 0 and now - s.last_used > self.idle_seconds]
                for server in idle:
                    del self._servers[server.key]
            for server in idle:
                server.stop()

    def stop_all(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.stop()


SERVERS = ServerPool()
atexit.register(SERVERS.stop_all)


def server_key(path: Path, build: llama_build.Build, *, n_gpu_layers: int, n_ctx: int, n_threads: int | None,
               chat_format: str | None, slots: int) -> ServerKey:
    """What a server for these settings is, and so which one runs share (slots: 0 for the device's default)."""
    return ServerKey(str(path.resolve()), n_gpu_layers, n_ctx, slots or default_slots(compute_of(build, n_gpu_layers)),
                     n_threads or os.cpu_count() or 1, _chat_template_name(chat_format), build.key)


def foreground_command(model: str, *, host: str, port: int, n_gpu_layers: int = -1, n_ctx: int = 4096,
                       n_threads: int | None = None, chat_format: str | None = None, slots: int = 0) -> list[str]:
    """The llama-server command `iml serve` runs in the foreground, for other machines (runs there
    use `--backend openai`): the same build and arguments a managed server of these settings gets,
    on the host and port given, answering to the model's name as given."""
    from iml_core.gguf_header import read_gguf_header
    from iml_core.models import resolve_model

    path = check_model_file(resolve_model(model))
    read_gguf_header(path)
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port} is no port; give one from 1 to 65535 (e.g. 8080)")
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port, or stop what "
                            "holds it") from None
    build = llama_build.require_build()  # the command line builds it here first, when it is missing
    key = server_key(path, build, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, n_threads=n_threads,
                     chat_format=chat_format, slots=slots)
    return [str(build.server), *_server_arguments(key), "--host", host, "--port", str(port), "--alias", model]


def _server_arguments(key: ServerKey) -> list[str]:
    # llama-server splits -c between its slots: each slot gets the whole context a run asks for.
    arguments = ["-m", key.model, "-c", str(key.n_ctx * key.slots), "-np", str(key.slots), "-t", str(key.threads),
                 "-tb", str(key.threads), "-ngl", "all" if key.n_gpu_layers < 0 else str(key.n_gpu_layers),
                 "--no-webui", "--no-warmup"]
    if key.chat_template:
        arguments += ["--chat-template", key.chat_template]
    return arguments


class LlamaServerBackend(GrammarBackend):
    def __init__(self, model_path: str, *, n_gpu_layers: int = -1, n_ctx: int = 4096, n_threads: int | None = None,
                 chat_format: str | None = None, repeat_penalty: float = 1.0, slots: int = 0,
                 pool: ServerPool = SERVERS):
        self._describe("llama-server", model_path, n_gpu_layers=n_gpu_layers, chat_format=chat_format,
                       repeat_penalty=repeat_penalty)
        self.key = server_key(self.path, self.build, n_gpu_layers=n_gpu_layers, n_ctx=n_ctx, n_threads=n_threads,
                              chat_format=chat_format, slots=slots)
        self.max_parallel = self.key.slots
        self._arguments = _server_arguments(self.key)
        self.pool = pool
        # Started now, so a file llama.cpp cannot load is refused before the run is created.
        self._server = self.pool.acquire(self.key, self.build.server, self._arguments)
        self.pool.release(self._server)

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return 0.0  # local compute: no price per token

    def _ask(self, server: Server, path: str, body: dict) -> dict:
        try:
            answer = server.request("POST", path, body)
        except (OSError, http.client.HTTPException):
            try:  # a dying server drops its connections a moment before it can be reaped
                server.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
            if not server.alive() and not server.stopping:
                self.pool.forget(server)
                raise server.died() from None
            raise BackendError(f"the model server (pid {server.pid}) did not answer {path}; its last log lines:\n"
                               f"{server.last_log()}") from None
        if "status" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {"message": str(answer["error"])}
            if error.get("type") == "exceed_context_size_error":
                raise prompt_too_long(int(error.get("n_prompt_tokens", 0)), int(body.get("n_predict", 0)),
                                     int(error.get("n_ctx", server.slot_ctx)))
            message = error.get("message", "")
            raise BackendError(f"the model server answered {path} with HTTP {answer['status']}: {message}")
        return answer

    @contextlib.contextmanager
    def serving(self) -> Iterator[Server]:
        """The server to ask, counted as in use (so the reaper leaves it) until the block ends."""
        server = self._acquire()
        try:
            yield server
        finally:
            self.pool.release(server)

    def _acquire(self) -> Server:
        """The server to ask. One that died between two calls of this backend's run fails the run as
        one that died during a call does: a crash is not papered over by a restart that may crash
        again; the next run (or the resume) starts a fresh one. One stopped for idleness is restarted."""
        previous = self._server
        if not previous.alive() and not previous.stopping:
            self.pool.forget(previous)
            raise previous.died()
        self._server = self.pool.acquire(self.key, self.build.server, self._arguments)
        return self._server

    def render(self, messages: Messages) -> str:
        """The prompt the model sees for these messages, by the GGUF's template (or the override)."""
        with self.serving() as server:
            return self._render(server, messages)

    def _render(self, server: Server, messages: Messages) -> str:
        return self._ask(server, "/apply-template", {"messages": messages})["prompt"]

    def tokens(self, text: str) -> int:
        """How many tokens `text` is for this model (its own tokenizer)."""
        with self.serving() as server:
            return len(self._ask(server, "/tokenize", {"content": text})["tokens"])

    def _grammar(self, labels: Sequence[str], sentences: int) -> str:
        return label_grammar(labels, sentences)  # sent as text with each request

    def _text_grammar(self, grammar: str) -> str:
        return grammar

    def _complete(self, messages: Messages, *, prefix: str = "", max_tokens: int, temperature: float, seed: int,
                  grammar: str | None = None, repeat_penalty: float = 1.0) -> Completion:
        # llama-cpp-python's sampling defaults, so the two ways of running a GGUF sample alike.
        body = {"n_predict": max_tokens, "temperature": temperature, "seed": seed, "top_k": 40, "top_p": 0.95,
                "min_p": 0.05, "repeat_penalty": repeat_penalty, "cache_prompt": True, "stream": False}
        if grammar:
            body["grammar"] = grammar
        with self.serving() as server:
            if prefix:  # rendered here, so the model continues after the prefix and cannot drop it
                prompt = self._render(server, messages) + prefix
                result = self._ask(server, "/completion", {**body, "prompt": prompt})
                content, tokens_in = result["content"], int(result["tokens_evaluated"])
            else:  # one request: the server renders the chat with the GGUF's template
                result = self._ask(server, "/v1/chat/completions",
                                   {**body, "messages": messages, "reasoning_format": "none"})
                content = result["choices"][0]["message"].get("content") or ""
                tokens_in = int(result["usage"]["prompt_tokens"])
        if tokens_in + max_tokens > server.slot_ctx:  # as in process: the answer may not have fit
            raise prompt_too_long(tokens_in, max_tokens, server.slot_ctx)
        tokens_out = int(result.get("tokens_predicted", result.get("usage", {}).get("completion_tokens", 0)))
        return Completion(content, content, tokens_in, tokens_out, int(result.get("timings", {}).get("cache_n", 0)))


# llama-cpp-python's chat format names, as llama-server's built-in template names.
_TEMPLATES = {"llama-2": "llama2", "llama2": "llama2", "llama-3": "llama3", "llama3": "llama3", "chatml": "chatml",
              "mistral-instruct": "mistral-v1", "gemma": "gemma", "phi-3": "phi3", "zephyr": "zephyr",
              "vicuna": "vicuna"}


def _chat_template_name(chat_format: str | None) -> str | None:
    if not chat_format:
        return None
    name = _TEMPLATES.get(chat_format.lower())
    if name is None:
        raise UserError(f"unknown chat format {chat_format!r} for llama-server; use one of "
                        f"{', '.join(sorted(_TEMPLATES))}, or leave it empty for the GGUF's own template")
    return name
