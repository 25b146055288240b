"""Figure 8: the engine's time per inference call with the starter model (SmolLM2-135M-Instruct, a
real chat model) against bare llama.cpp calls (llama-cpp-python's create_completion) on the very
same prompt tokens, grammar, seeds and sampling. 24 eval samples with notes; each side 6 times,
interleaved and taking turns to go first, from the same KV-cache state; the median of each side.
What the engine adds: the response-cache key, logging, parsing the answer."""

import statistics
import sys
import time

from common import report

from iml_core.agents import Phase
from iml_core.agents.llm import LABEL_TOKENS, LLMAgent
from iml_core.attribution import note_units
from iml_core.backends.llama_cpp import LlamaCppBackend, compiled_label_grammar
from iml_core.models import starter_model_path
from iml_core.tasks import generate_benchmark

SAMPLES, REPEATS = 24, 6
NOTES = ("Florp creatures are red and have long tails. Zindle creatures are blue and fly. "
         "Quarrow creatures have scales and live in water. Brimlet creatures are small and green.")


class Recorder:
    """Stands between the agent and the backend to keep the exact requests the engine made."""

    def __init__(self, backend):
        self.backend, self.requests = backend, []
        self.identity, self.description, self.max_parallel = backend.identity, backend.description, 1

    def label(self, messages, labels, **kwargs):
        self.requests.append((messages, kwargs))
        return self.backend.label(messages, labels, **kwargs)

    def cost(self, tokens_in, tokens_out):
        return 0.0


def reset(backend) -> None:
    backend.text([{"role": "user", "content": "unrelated"}], temperature=0, seed=0, max_tokens=1)


if __name__ == "__main__":
    model = starter_model_path()
    if model is None:
        sys.exit("the starter model is not installed: run `make model`")
    backend = LlamaCppBackend(str(model), n_ctx=2048, n_threads=2)
    task = generate_benchmark("paper")
    observations = [s.observation for s in task.samples[:SAMPLES]]
    recorder = Recorder(backend)
    agent = LLMAgent(task, recorder, temperature=0.2)
    engine_seconds, bare_seconds = [], []
    grammar = compiled_label_grammar(tuple(task.classes), len(note_units(NOTES)))
    def engine_side(repeat: int) -> None:
        reset(backend)
        start = time.perf_counter()
        answers = agent.infer(NOTES, observations, Phase(repeat, 0, "eval"))
        engine_seconds.append((time.perf_counter() - start) / SAMPLES)
        assert all(a.label in task.classes for a in answers)

    def bare_side(repeat: int) -> None:
        requests = recorder.requests[-SAMPLES:]  # what the engine sent in this repeat
        reset(backend)
        start = time.perf_counter()
        for messages, kwargs in requests:
            prompt = backend._llm.tokenize(backend.render_chat(messages).encode(), add_bos=False, special=True)
            backend._llm.create_completion(prompt, max_tokens=kwargs["max_tokens"], temperature=kwargs["temperature"],
                                           seed=kwargs["seed"], grammar=grammar)
        bare_seconds.append((time.perf_counter() - start) / SAMPLES)

    engine_side(-1)  # the engine's requests of this repeat are what the bare side replays
    for repeat in range(REPEATS):
        sides = (engine_side, bare_side) if repeat % 2 else (bare_side, engine_side)
        for side in sides:
            side(repeat)
    engine_seconds.pop(0)
    engine, bare = statistics.median(engine_seconds), statistics.median(bare_seconds)
    ok = report("starter_call", engine, "s per call", bare, "engine <= 1.05x bare llama.cpp", engine <= 1.05 * bare,
                engine_over_bare=round(engine / bare, 3), calls=SAMPLES, max_tokens=LABEL_TOKENS,
                seconds_engine=[round(t, 4) for t in engine_seconds],
                seconds_bare=[round(t, 4) for t in bare_seconds])
    sys.exit(0 if ok else 1)
