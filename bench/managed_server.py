"""Figures 9-11: the managed llama-server against llama.cpp in this process, with the starter model
(SmolLM2-135M-Instruct) on the paper benchmark.

- managed_server_step: steps 0 and 1 of a run (eval 40, B8, no response cache) through the server
  with the slots it chooses for this machine, against the same run in process; 3 rounds, the two
  taking turns to go first, and each figure is the median of its side. The two write different
  notes (their answers differ in a few percent of calls), so a step's length differs a little.
  Target: no slower (at most 1.05x).
  The same run at 1, 2 and 4 slots is reported beside it (on a CPU slots do not share a prefix).
- server_start: seconds from spawning llama-server to its /health answering, against loading the
  same model in process (`Llama(...)`).
- server_call: the engine's time per label call through the server (template, tokenize, complete)
  against a bare /completion of the same rendered prompt and grammar on the same server, each
  from the same warm slot; medians of 6 interleaved rounds of 24 calls. Target: at most 1.05x.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import report

from iml_core.agents import Phase
from iml_core.agents.llm import LABEL_TOKENS, LLMAgent
from iml_core.attribution import note_units
from iml_core.backends.llama_cpp import label_grammar
from iml_core.backends.llama_server import SERVERS, LlamaServerBackend, ServerPool
from iml_core.config import RunConfig
from iml_core.llama_build import import_llama_cpp, require_build
from iml_core.models import starter_model_path
from iml_core.runner import create_run, execute_run
from iml_core.store import Store
from iml_core.tasks import generate_benchmark

THREADS = 2  # both sides on the same cores
STEP = dict(agent="llm", model="starter", steps=1, batch_size=8, eval_size=40, max_note_words=60, momentum=0.5,
            temperature=0.2, n_threads=THREADS, n_ctx=4096, cache=False)
NOTES = ("Florp creatures are red and have long tails. Zindle creatures are blue and fly. "
         "Quarrow creatures have scales and live in water. Brimlet creatures are small and green.")
SAMPLES, ROUNDS = 24, 6


ANSWERS: dict[str, list[str]] = {}  # each configuration's answers, in order, to compare


def run_seconds(folder: Path, **settings) -> float:
    with Store(folder / f"{time.monotonic_ns()}.duckdb") as store:
        run_id = create_run(store, RunConfig(**STEP, **settings))  # loads the model / starts the server first
        started = time.perf_counter()
        summary = execute_run(store, run_id)
        seconds = time.perf_counter() - started
        assert summary["status"] == "completed", summary
        name = f"{settings['backend']} {settings.get('slots', 0)}"
        ANSWERS.setdefault(name, [p["predicted"] for p in store.predictions(run_id)])
        return seconds


def same(a: str, b: str) -> str:
    pairs = list(zip(ANSWERS[a], ANSWERS[b], strict=True))
    return f"{sum(x == y for x, y in pairs)}/{len(pairs)}"


def step_figures(folder: Path) -> bool:
    default_slots = LlamaServerBackend("starter", n_threads=THREADS).max_parallel
    server, in_process = [], []
    for round_ in range(3):
        sides = [("server", server), ("in process", in_process)]
        for name, times in (sides if round_ % 2 == 0 else sides[::-1]):
            backend = "llama-server" if name == "server" else "llama-cpp"
            times.append(run_seconds(folder, backend=backend))
    value, baseline = statistics.median(server), statistics.median(in_process)
    ok = report("managed_server_step", value, "s for steps 0-1", baseline, "server <= 1.05x in process",
                value <= 1.05 * baseline, slots=default_slots,
                answers_same_as_in_process=same("llama-server 0", "llama-cpp 0"),
                seconds_server=[round(t, 2) for t in server],
                seconds_in_process=[round(t, 2) for t in in_process])
    for slots in (1, 2, 4):
        if slots == default_slots:
            continue
        seconds = run_seconds(folder, backend="llama-server", slots=slots)
        report(f"managed_server_step_{slots}_slots", seconds, "s for steps 0-1", baseline, "reported", True,
               slots=slots,
               answers_same_as_default_slots=same("llama-server 0", f"llama-server {slots}"))
    SERVERS.stop_all()
    return ok


def start_figure(model: Path) -> bool:
    pool = ServerPool()
    started = time.perf_counter()
    LlamaServerBackend(str(model), n_threads=THREADS, n_ctx=2048, pool=pool)
    server_seconds = time.perf_counter() - started
    pool.stop_all()
    Llama = import_llama_cpp().Llama
    started = time.perf_counter()
    llm = Llama(model_path=str(model), n_ctx=2048, n_threads=THREADS, verbose=False)
    load_seconds = time.perf_counter() - started
    llm.close()
    return report("server_start", server_seconds, "s to /health", load_seconds, "reported (loading in process is "
                  "the baseline)", True)


def call_figure(model: Path) -> bool:
    backend = LlamaServerBackend(str(model), n_threads=THREADS, n_ctx=2048)
    task = generate_benchmark("paper")
    observations = [s.observation for s in task.samples[:SAMPLES]]
    requests = []

    class Recorder:
        identity, description, max_parallel = backend.identity, backend.description, 1

        def label(self, messages, labels, **kwargs):
            requests.append((messages, kwargs))
            return backend.label(messages, labels, **kwargs)

        def cost(self, tokens_in, tokens_out):
            return 0.0

    agent = LLMAgent(task, Recorder(), temperature=0.2)
    grammar = label_grammar(task.classes, len(note_units(NOTES)))
    engine_seconds, bare_seconds = [], []
    agent.infer(NOTES, observations, Phase(-1, 0, "eval"))  # the requests the bare side replays
    prompts = [backend.render(messages) for messages, _ in requests[-SAMPLES:]]
    kwargs = [k for _, k in requests[-SAMPLES:]]

    def engine_side(round_: int) -> None:
        started = time.perf_counter()
        agent.infer(NOTES, observations, Phase(round_, 0, "eval"))
        engine_seconds.append((time.perf_counter() - started) / SAMPLES)

    def bare_side(round_: int) -> None:
        started = time.perf_counter()
        with backend.serving() as server:
            for prompt, k in zip(prompts, kwargs, strict=True):
                server.request("POST", "/completion", {
                    "prompt": prompt, "n_predict": k["max_tokens"], "temperature": k["temperature"], "seed": k["seed"],
                    "top_k": 40, "top_p": 0.95, "min_p": 0.05, "grammar": grammar, "cache_prompt": True})
        bare_seconds.append((time.perf_counter() - started) / SAMPLES)

    for round_ in range(ROUNDS):
        for side in ((engine_side, bare_side) if round_ % 2 else (bare_side, engine_side)):
            side(round_)
    engine, bare = statistics.median(engine_seconds), statistics.median(bare_seconds)
    SERVERS.stop_all()
    return report("server_call", engine, "s per call", bare, "engine <= 1.05x bare /completion",
                  engine <= 1.05 * bare, engine_over_bare=round(engine / bare, 3), calls=SAMPLES,
                  max_tokens=LABEL_TOKENS)


if __name__ == "__main__":
    model = starter_model_path()
    if model is None:
        sys.exit("the starter model is not installed: run `make model`")
    print(f"# build {require_build().key}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        results = [start_figure(model), call_figure(model), step_figures(Path(folder))]
    sys.exit(0 if all(results) else 1)
