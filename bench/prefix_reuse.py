"""Figure 1: the inference phase of one step (32 samples, notes of about 400 tokens) with llama.cpp
on a random-weight model big enough to time (512 wide, 8 layers). Our layout (task, classes and
notes in the system message, the sample last) against the very same words with the sample moved to
the front of the system message. Both are sent through the same backend call, with the same label
grammar; each side runs 3 times, interleaved.

The target is the token figure: the prompt tokens llama.cpp evaluated (what prefix reuse saves)
against the minimum counted from the prompts sent (each prompt's tokens less what it shares with
the prompt before it; llama.cpp keeps one sequence), and against sample-first. It is the same on
every machine. The time ratio is reported beside it and is not the target: it carries each call's
fixed overhead (tokenizing, sampling, the grammar), so it moves from machine to machine (3.17x on
one, 2.53x on a fresh one, with the tokens at the minimum both times)."""

import sys
import tempfile
import time
from pathlib import Path

from common import report
from tiny_gguf import write_tiny_llama

from iml_core.agents.llm import LABEL_TOKENS
from iml_core.attribution import note_units, numbered
from iml_core.backends import LINE_SEPARATOR
from iml_core.backends.llama_cpp import LlamaCppBackend
from iml_core.prompts import fill
from iml_core.tasks import generate_benchmark

SAMPLES, NOTES_TOKENS, REPEATS = 32, 400, 3
CLEAR = [{"role": "user", "content": "unrelated"}]  # sent first, so no side starts with the other's cache


def notes_of(backend, tokens: int) -> str:
    line = "- Florp: colour is red (98%), tail is long (97%), diet is meat (61%).\n"
    text = ""
    while len(backend._llm.tokenize(text.encode(), add_bos=False)) < tokens:
        text += line.replace("Florp", ["Florp", "Zindle", "Quarrow", "Brimlet"][text.count("\n") % 4])
    return text


def layouts(task, notes: str, observations) -> tuple[list, list]:
    """The engine's messages for each sample (as LLMAgent.infer builds them), and the same words
    with the sample first."""
    shared = {"noun": task.noun, "classes": ", ".join(task.classes)}
    system = fill("infer_system", **shared, notes=numbered(note_units(notes)))
    ours, sample_first = [], []
    for o in observations:
        ask = fill("infer_user_line", observation=o.text, example=f"{task.classes[0]}{LINE_SEPARATOR}1")
        question = ask[len(o.text):].lstrip("\n")
        ours.append([{"role": "system", "content": system}, {"role": "user", "content": ask}])
        sample_first.append([{"role": "system", "content": f"{o.text}\n{system}"},
                             {"role": "user", "content": question}])
    return ours, sample_first


def tokens(backend, messages) -> list[int]:
    return backend._llm.tokenize(backend.render_chat(messages).encode(), add_bos=False, special=True)


def minimum_tokens(backend, prompts: list) -> int:
    """Tokens llama.cpp must evaluate at least: each prompt less its common beginning with the one
    before (it always evaluates the last token again)."""
    previous, total = tokens(backend, CLEAR), 0
    for messages in prompts:
        current = tokens(backend, messages)
        common = next((i for i, (a, b) in enumerate(zip(previous, current, strict=False)) if a != b), min(len(previous),
                                                                                           len(current)))
        total += len(current) - min(common, len(current) - 1)
        previous = current
    return total


def phase(backend, task, prompts, sentences: int) -> tuple[float, int]:
    backend.text(CLEAR, temperature=0, seed=0, max_tokens=1)
    start, evaluated = time.perf_counter(), 0
    for i, messages in enumerate(prompts):
        out = backend.label(messages, task.classes, temperature=0.2, seed=i, max_tokens=LABEL_TOKENS,
                            sentences=sentences)
        evaluated += out.tokens_in - out.tokens_cached
    return time.perf_counter() - start, evaluated


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_llama(Path(tmp) / "bench-512x8.gguf", width=512, layers=8, heads=8, ff=1024)
        backend = LlamaCppBackend(str(model), n_ctx=2048, n_gpu_layers=0)
        task = generate_benchmark("paper")
        notes = notes_of(backend, NOTES_TOKENS)
        sentences = len(note_units(notes))
        ours, sample_first = layouts(task, notes, [s.observation for s in task.samples[:SAMPLES]])
        times = {"ours": [], "sample_first": []}
        for _ in range(REPEATS):
            seconds, evaluated = phase(backend, task, ours, sentences)
            times["ours"].append(seconds)
            seconds, evaluated_baseline = phase(backend, task, sample_first, sentences)
            times["sample_first"].append(seconds)
        minimum = minimum_tokens(backend, ours)
        best, baseline = min(times["ours"]), min(times["sample_first"])
        # Sample-first must evaluate at least 3x the tokens ours does, ours at most 1.25x the minimum.
        ok = report("prefix_reuse", evaluated, "prompt tokens evaluated", evaluated_baseline,
                    "sample first / ours >= 3 in tokens evaluated, and ours <= 1.25x the minimum",
                    evaluated_baseline >= 3 * evaluated and evaluated <= 1.25 * minimum, minimum_tokens=minimum,
                    minimum_tokens_baseline=minimum_tokens(backend, sample_first),
                    evaluated_over_minimum=round(evaluated / minimum, 3),
                    time_ratio=round(baseline / best, 3), seconds_ours=[round(t, 3) for t in times["ours"]],
                    seconds_sample_first=[round(t, 3) for t in times["sample_first"]])
    sys.exit(0 if ok else 1)
