"""Groups of runs planned together: a grid over some settings, the paper's two experiments, and
a difficulty ladder of generated tasks."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

from iml_core.config import RunConfig
from iml_core.errors import UserError
from iml_core.tasks import is_rules_spec, parse_rules_spec, rules_spec


def grid_configs(base: RunConfig, axes: dict[str, Sequence]) -> list[RunConfig]:
    """Every combination of the axes' values around a base config, the last axis innermost
    (seeds, by convention); an axis with no values makes an empty grid."""
    names = list(axes)
    return [base.replace(**dict(zip(names, values, strict=True))) for values in itertools.product(*axes.values())]


# The paper's two experiments: momentum none / partial / full (one minibatch per revision), and
# accumulation of 1, 2, 4 and 8 minibatches (no momentum); each over three seeds.
PAPER_MOMENTA = (0.0, 0.5, 1.0)
PAPER_ACCUMULATIONS = (1, 2, 4, 8)
PAPER_SEEDS = 3


def paper_study(base: RunConfig) -> list[RunConfig]:
    """The runs of both experiments around `base` (its seed first); the run they share is made once."""
    seeds = range(base.seed, base.seed + PAPER_SEEDS)
    configs = (grid_configs(base, {"momentum": PAPER_MOMENTA, "accumulation": [1], "seed": seeds})
               + grid_configs(base, {"momentum": [0.0], "accumulation": PAPER_ACCUMULATIONS, "seed": seeds}))
    return list(dict.fromkeys(configs))


# The difficulty ladder: generated tasks (iml_core.tasks, `rules:`) from one binary rule to a
# noisy 4-class rule over 3 attributes, among 6 two-valued attributes (the rest distractors).
# Each rung is harder than the last in one or two knobs, so where a model falls off says which.
@dataclass(frozen=True)
class Rung:
    relevant: int
    classes: int
    noise: float

    @property
    def name(self) -> str:
        return f"{self.relevant} relevant, {self.classes} classes, noise {self.noise:g}"

    def task(self, seed: int) -> str:
        return rules_spec(parse_rules_spec(f"rules:classes={self.classes},attributes={LADDER_ATTRIBUTES},"
                                           f"relevant={self.relevant},noise={self.noise},seed={seed}"))


LADDER = (Rung(1, 2, 0.0), Rung(2, 2, 0.0), Rung(2, 3, 0.1), Rung(3, 3, 0.1), Rung(3, 4, 0.2))
LADDER_ATTRIBUTES = 6
LADDER_SEEDS = 3
MOST_LADDER_SEEDS = 10


def ladder_study(base: RunConfig, seeds: int = LADDER_SEEDS, rungs: Sequence[int] | None = None,
                 learners: Sequence[str] | None = None) -> list[RunConfig]:
    """A run per rung (all, or those numbered in `rungs`, from 1), learner (the base's, or each of
    `learners`, compared on the same rules and samples) and seed. Each seed draws both the rule and
    the run's samples, so a rung's result holds over several rules, not one lucky table."""
    if not 1 <= seeds <= MOST_LADDER_SEEDS:
        raise UserError(f"{seeds} seeds per rung asked; give from 1 to {MOST_LADDER_SEEDS}")
    wrong = [n for n in rungs or () if not 1 <= n <= len(LADDER)]
    if wrong:
        raise UserError(f"the ladder has rungs 1 to {len(LADDER)}, not {', '.join(map(str, wrong))}; "
                        "name rungs from that range")
    chosen = [LADDER[n - 1] for n in sorted(set(rungs))] if rungs else LADDER
    return [base.replace(task=rung.task(seed), seed=seed, label_noise=None, learner=learner)
            for rung in chosen for learner in dict.fromkeys(learners or [base.learner])
            for seed in range(base.seed, base.seed + seeds)]


def rung_of(task: str) -> Rung | None:
    """The ladder's rung a run's task is on; None for a task off the ladder."""
    if not is_rules_spec(task):
        return None
    knobs = parse_rules_spec(task)
    rung = Rung(knobs["relevant"], knobs["classes"], knobs["noise"])
    return rung if rung in LADDER and knobs["attributes"] == LADDER_ATTRIBUTES else None
