"""Figure 15: scoring one candidate decision list on a window of 32 samples, run by the engine
(iml_core.agents.rules.RuleApplier, what the bank does in rule form) against read by a model (the
same list as notes, answered sample by sample through the managed llama-server, as the bank scores
in words). The model is the tiny random-weight GGUF (64 wide, 2 layers): the cheapest model there
is, so the ratio is a floor; a real model's calls cost hundreds of times more. The paper preset's
task, the true table as the list. Each side runs 5 times, interleaved; the fastest of each counts.

Target: the engine is at least 100x faster than the model on the same list and window."""

import sys
import tempfile
import time
from pathlib import Path

from common import report
from tiny_gguf import write_tiny_llama

from iml_core.agents import Phase, PhaseName
from iml_core.agents.rules import RuleApplier
from iml_core.builders import build_agent, build_task
from iml_core.config import RunConfig
from iml_core.decision_list import rule_card_list

WINDOW, REPEATS = 32, 5


def timed(applier, notes: str, window) -> float:
    start = time.perf_counter()
    applier.infer(notes, window, Phase(0, 0, PhaseName.SCORE))
    return time.perf_counter() - start


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_llama(Path(tmp) / "tiny.gguf")
        config = RunConfig(agent="llm", backend="llama-server", model=str(model), task="paper", prompt_layout="plain",
                           notes_form="rule")  # no response cache: build_agent is given none
        task = build_task(config)
        agent, engine = build_agent(config, task), RuleApplier(task)
        notes = rule_card_list(task)
        window = [s.observation for s in task.samples[:WINDOW]]
        agent.infer(notes, window[:1], Phase(0, 0, PhaseName.SCORE))  # the server started before timing
        sides = {"engine": [], "model": []}
        for _ in range(REPEATS):
            sides["engine"].append(timed(engine, notes, window))
            sides["model"].append(timed(agent, notes, window))
        engine_s, model_s = min(sides["engine"]), min(sides["model"])
        ok = report("rule_scoring", engine_s * 1000, "ms per candidate on 32 samples", model_s * 1000,
                    "the engine >= 100x faster than the model (tiny GGUF, managed llama-server)",
                    model_s / engine_s >= 100, window=WINDOW,
                    engine_ms=[round(s * 1000, 3) for s in sides["engine"]],
                    model_ms=[round(s * 1000, 1) for s in sides["model"]])
    sys.exit(0 if ok else 1)
