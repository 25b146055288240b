"""Figure 14: the scoring phase of a bank step (6 candidate rules, each applied to a window of 16
samples) through the managed llama-server, on a random-weight model big enough to time (512 wide,
8 layers), ladder rung 1's task, the `plain` layout.

The learner scores rule by rule (iml_core.learner.StepTools.score): every call of one rule shares
the task and the rule and differs only in the sample at the end, so llama.cpp's prompt cache holds
the prefix. The alternative is the very same calls sample by sample (each sample under every rule
in turn). Both go through the same agent and server; each side runs 3 times, interleaved. The
figure is the prompt tokens llama.cpp evaluated (the server's own count of cached tokens).

Measured here (llama.cpp 0.3.36's server): both orders evaluate the same tokens, because the server
keeps earlier prompts' states in host memory (`--cache-ram`, 8 GiB by default) and restores the
best match, so the order of the calls does not matter to it. The target is therefore the cached
share in both orders: at least 0.6 of the prompt tokens come from the cache, as they do when only
the sample at the end is evaluated (0.704 measured here, about 39 of 131 tokens a call). The time
ratio is reported and not the target (it carries each call's fixed overhead and the machine's load)."""

import sys
import tempfile
import time
from pathlib import Path

from common import report
from tiny_gguf import write_tiny_llama

from iml_core.agents import Phase, PhaseName
from iml_core.builders import build_agent, build_task
from iml_core.config import RunConfig
from iml_core.studies import LADDER

RULES, WINDOW, REPEATS = 6, 16, 3


def features(observation_text: str) -> list[str]:
    """"This creature has leathery wings, eats meat, ... and is covered in scales." -> its phrases."""
    body = observation_text.split(" ", 2)[2].rstrip(".")
    head, last = body.rsplit(" and ", 1)
    return [*head.split(", "), last]


def one_feature_rules(task) -> list[str]:
    """Rules as the bank's one-feature proposals read: each names one feature, one sentence a class."""
    first = features(task.samples[0].observation.text)
    other = next(features(s.observation.text) for s in task.samples
                 if all(a != b for a, b in zip(features(s.observation.text), first, strict=True)))
    return [f"A {task.noun} that {a} is a {task.classes[0]}. A {task.noun} that {b} is a {task.classes[1]}."
            for a, b in zip(first, other, strict=True)][:RULES]


def score(agent, rules, window, by_rule: bool) -> tuple[float, int, int]:
    """Seconds, prompt tokens and cached prompt tokens of scoring every rule on every sample."""
    agent.drain_calls()
    phase = Phase(0, 0, PhaseName.SCORE)
    start = time.perf_counter()
    if by_rule:
        for rule in rules:
            agent.infer(rule, window, phase)
    else:
        for observation in window:
            for rule in rules:
                agent.infer(rule, [observation], phase)
    seconds = time.perf_counter() - start
    calls = agent.drain_calls()
    return seconds, sum(c.tokens_in for c in calls), sum(c.tokens_cached for c in calls)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_llama(Path(tmp) / "bench-512x8.gguf", width=512, layers=8, heads=8, ff=1024)
        config = RunConfig(agent="llm", backend="llama-server", model=str(model), task=LADDER[0].task(0),
                           prompt_layout="plain")  # no response cache: build_agent is given none
        task = build_task(config)
        agent = build_agent(config, task)
        rules = one_feature_rules(task)
        window = [s.observation for s in task.samples[:WINDOW]]
        sides = {"by_rule": [], "by_sample": []}
        for _ in range(REPEATS):
            for side in sides:
                sides[side].append(score(agent, rules, window, by_rule=side == "by_rule"))
        _, prompt, cached = sides["by_rule"][-1]
        _, prompt_other, cached_other = sides["by_sample"][-1]
        evaluated, evaluated_other = prompt - cached, prompt_other - cached_other
        share, share_other = cached / prompt, cached_other / prompt_other
        ok = report("scoring_prefix", evaluated, "prompt tokens evaluated", evaluated_other,
                    "cached share of the scoring calls' prompt tokens >= 0.6, rule by rule and sample by sample",
                    min(share, share_other) >= 0.6,
                    prompt_tokens=prompt, cached_share=round(share, 3), cached_share_baseline=round(share_other, 3),
                    time_ratio=round(min(s for s, _, _ in sides["by_sample"]) / min(s for s, _, _ in sides["by_rule"]),
                                     3),
                    seconds_by_rule=[round(s, 3) for s, _, _ in sides["by_rule"]],
                    seconds_by_sample=[round(s, 3) for s, _, _ in sides["by_sample"]])
    sys.exit(0 if ok else 1)
