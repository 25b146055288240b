"""Groups of runs planned together: a grid over some settings, and the paper's two experiments."""

from __future__ import annotations

import itertools
from typing import Sequence

from iml_core.config import RunConfig


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
