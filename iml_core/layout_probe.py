"""Which prompt layout a model can read, measured: its oracle (the rule card written as notes) on
ladder rungs, in each layout.

A model's oracle depends on the layout more than on anything a run learns (Qwen2.5-Coder-1.5B
applies the rung-1 rule 40 of 40 times when asked for the class alone, and 23 of 40 when also asked
for a line). So the probe is stored with the model, and New run and the ladder suggest its best
layout, saying what it was measured on. Without a probe here, a catalogue row may carry one measured
elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from iml_core.background import BackgroundJob, BackgroundJobs
from iml_core.baseline_kinds import Baseline
from iml_core.builders import build_task
from iml_core.catalogue import catalogue, model_cache
from iml_core.config import RunConfig
from iml_core.errors import UserError
from iml_core.evaluation import oracle_notes, score_notes
from iml_core.models import resolve_model
from iml_core.prompts import PROMPT_LAYOUTS
from iml_core.registry import model_agent
from iml_core.studies import LADDER

PROBE_SAMPLES = 40
PROBE_SEED = 0
LAYOUTS_FILE = "layouts.json"


@dataclass(frozen=True)
class LayoutScore:
    rung: int
    task: str
    layout: str
    right: int
    total: int
    invalid: int
    top_share: float  # the share of answers naming the most-named class: 1.0 is one class for everything
    seconds: float

    @property
    def accuracy(self) -> float:
        return self.right / self.total if self.total else 0.0


@dataclass(frozen=True)
class LayoutAdvice:
    layout: str
    reason: str  # what it was measured on, in a sentence


def _probe_file(model: str) -> Path:
    """A catalogue model's probe lives in its folder; any other model's under probes/, by its path."""
    rows = catalogue()
    if model in rows:
        return rows[model].folder / LAYOUTS_FILE
    key = hashlib.sha256(os.path.realpath(resolve_model(model)).encode()).hexdigest()[:16]
    return model_cache() / "probes" / f"{key}.json"


def probe_layouts(model: str, *, backend: str = "llama-server", rungs: Sequence[int] = (1,),
                  layouts: Sequence[str] | None = None, samples: int = PROBE_SAMPLES,
                  on_score: Callable[[LayoutScore], None] = lambda s: None) -> dict:
    """The oracle of `model` in each layout on each rung (seed 0, `samples` eval samples, no response
    cache so the seconds are real); stored with the model, and returned."""
    scores = []
    for rung in rungs:
        task = LADDER[rung - 1].task(PROBE_SEED)
        for layout in layouts or list(PROMPT_LAYOUTS):
            config = RunConfig(agent=model_agent(), backend=backend, model=model, prompt_layout=layout, task=task,
                               seed=PROBE_SEED, eval_size=samples, cache=False).check()
            evaluation = score_notes(config, oracle_notes(build_task(config), config.agent), kind=Baseline.ORACLE,
                                     source="the rule card")
            named = [p.predicted for p in evaluation.predictions if p.predicted is not None]
            top = max((named.count(c) for c in set(named)), default=0)
            score = LayoutScore(rung, task, layout, sum(p.correct for p in evaluation.predictions),
                                evaluation.eval_size, evaluation.invalid, top / evaluation.eval_size,
                                round(evaluation.seconds, 1))
            on_score(score)
            scores.append(score)
    best = best_layout(scores)
    result = {"model": model, "backend": backend, "measured_at": time.strftime("%Y-%m-%d"),
              "samples": samples, "best": best.layout, "best_rung": best.rung, "best_task": best.task,
              "best_right": best.right, "scores": [asdict(s) for s in scores]}
    path = _probe_file(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def best_layout(scores: Sequence[LayoutScore]) -> LayoutScore:
    """The first rung's best score. A tie there (the 1.5B: 40 of 40 in two layouts) goes to the
    layout that does better on the harder rungs; the seconds, noise on a shared machine, decide last."""
    first = [s for s in scores if s.rung == min(s.rung for s in scores)]
    overall = {layout: sum(s.right for s in scores if s.layout == layout) for layout in {s.layout for s in scores}}
    return max(first, key=lambda s: (s.accuracy, overall[s.layout], -s.seconds))


def stored_probe(model: str) -> dict | None:
    try:
        return json.loads(_probe_file(model).read_text(encoding="utf-8"))
    except (OSError, ValueError, UserError):  # never probed, or no such model (a run says so when it starts)
        return None


def suggested_layout(model: str) -> LayoutAdvice | None:
    """The layout to suggest for a model: its probe here, else its catalogue row's; None when neither."""
    probe = stored_probe(model)
    if probe is not None:
        return LayoutAdvice(probe["best"], (
            f"measured here on {probe['measured_at']}: with the rule card as notes it answered {probe['best_right']} "
            f"of {probe['samples']} right on ladder rung {probe['best_rung']} ({probe['best_task']}) in the "
            f"{probe['best']} layout, the best of the layouts probed (`iml models --probe`)"))
    row = catalogue().get(model)
    if row is not None and row.layout:
        return LayoutAdvice(row.layout["best"], f"measured for the catalogue: {row.layout['measured']}")
    return None


@dataclass
class ProbeJob(BackgroundJob):
    planned: int = 0
    scores: list[LayoutScore] = field(default_factory=list)


_PROBES: BackgroundJobs[ProbeJob] = BackgroundJobs("probe")


def start_probe(model: str) -> ProbeJob:
    """Probes every layout on rung 1 in a background thread (or returns the probe already running)."""
    return _PROBES.start(ProbeJob(model, len(PROMPT_LAYOUTS)),
                         lambda job: probe_layouts(model, on_score=job.scores.append))


def probe_job(model: str) -> ProbeJob | None:
    return _PROBES.get(model)
