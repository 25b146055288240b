"""Figure 1: the inference phase of one step (32 samples, notes of about 400 tokens) with llama.cpp
on a random-weight model big enough to time (512 wide, 8 layers), with our prompt layout (notes
first, sample last) against the same prompts with the sample before the notes."""

import sys
import tempfile
import time
from pathlib import Path

from common import report
from tiny_gguf import write_tiny_llama

from iml_core.agents import Phase, Prediction
from iml_core.agents.llm import LABEL_TOKENS, LLMAgent
from iml_core.backends.llama_cpp import LlamaCppBackend
from iml_core.prompts import fill
from iml_core.tasks import generate_benchmark

SAMPLES, NOTES_TOKENS = 32, 400


class SampleFirstAgent(LLMAgent):
    """The baseline layout: the same text, but the sample comes before the notes."""

    def infer(self, notes, observations, phase):
        out = []
        for o in observations:
            messages = [{"role": "system", "content": fill("induce_system", **self._shared)},
                        {"role": "user", "content": f"{o.text}\n\nYour notes:\n{notes}\n"
                                                    "Which class is it? Answer with the class name only."}]
            c = self._call(phase, "label", messages, key_extra={"sample": o.id},
                           call=lambda seed: self.backend.label(messages, self.task.classes, temperature=0.2,
                                                                seed=seed, max_tokens=LABEL_TOKENS))
            out.append(Prediction(c.text or None, c.raw))
        return out


def notes_of(backend, tokens: int) -> str:
    line = "- Florp: colour is red (98%), tail is long (97%), diet is meat (61%).\n"
    text = ""
    while len(backend._llm.tokenize(text.encode(), add_bos=False)) < tokens:
        text += line.replace("Florp", ["Florp", "Zindle", "Quarrow", "Brimlet"][text.count("\n") % 4])
    return text


def phase_cost(agent, notes, observations, backend):
    backend.text([{"role": "user", "content": "unrelated"}], temperature=0, seed=0, max_tokens=1)  # clear reuse
    agent.drain_calls()
    start = time.perf_counter()
    agent.infer(notes, observations, Phase(0, 1, "train"))
    seconds = time.perf_counter() - start
    calls = agent.drain_calls()
    return seconds, sum(c.tokens_in - c.tokens_cached for c in calls), [c.tokens_in for c in calls]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_llama(Path(tmp) / "bench-512x8.gguf", width=512, layers=8, heads=8, ff=1024)
        backend = LlamaCppBackend(str(model), n_ctx=2048, n_gpu_layers=0)
        task = generate_benchmark("paper")
        observations = [s.observation for s in task.samples[:SAMPLES]]
        notes = notes_of(backend, NOTES_TOKENS)
        ours, evaluated, sizes = phase_cost(LLMAgent(task, backend), notes, observations, backend)
        theirs, evaluated_theirs, _ = phase_cost(SampleFirstAgent(task, backend), notes, observations, backend)
        # The minimum: the shared beginning of the prompts once, plus each sample's own tokens.
        render = LLMAgent(task, backend)
        prompts = []
        for o in observations[:2]:
            system = fill("infer_system", **render._shared, notes=notes.strip())
            messages = [{"role": "system", "content": system},
                        {"role": "user", "content": fill("infer_user", observation=o.text)}]
            prompts.append(backend._llm.tokenize(backend.render_chat(messages).encode(), add_bos=False, special=True))
        shared = next((i for i, (a, b) in enumerate(zip(*prompts)) if a != b), min(map(len, prompts)))
        minimum = sum(sizes) - (len(sizes) - 1) * shared
        ok = report("prefix_reuse", ours, "s", theirs, "baseline/ours >= 3 and evaluated <= 1.25x minimum",
                    theirs / ours >= 3 and evaluated <= 1.25 * minimum, evaluated_tokens=evaluated,
                    evaluated_tokens_baseline=evaluated_theirs, minimum_tokens=minimum,
                    evaluated_over_minimum=round(evaluated / minimum, 3), notes_tokens=shared)
    sys.exit(0 if ok else 1)
