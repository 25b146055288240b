"""The settings of one learning run, their valid ranges and a one-line help for each.

The command line and the dashboard both build their inputs from SETTINGS, so a range or a help
text is written once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from iml_core.errors import UserError

AGENTS = ("offline", "llm")
FEEDBACK_MODES = ("label", "binary")


@dataclass(frozen=True)
class Setting:
    name: str
    low: float
    high: float
    help: str


SETTINGS = {
    s.name: s
    for s in (
        Setting("steps", 1, 10_000, "learning steps; each ends with one revision of the notes"),
        Setting("batch_size", 1, 1024, "samples per minibatch (B)"),
        Setting("accumulation", 1, 64, "minibatches inferred and induced before one revision (K)"),
        Setting("momentum", 0.0, 1.0, "share of the old notes' words a revision must keep as its beginning (m)"),
        Setting("seed", 0, 2**31 - 1, "derives the sample order, the eval split and every random choice"),
        Setting("eval_size", 1, 100_000, "held-out samples scored after each evaluated step"),
        Setting("eval_every", 1, 10_000, "evaluate every E steps (and always after the last)"),
        Setting("max_note_words", 5, 20_000, "word cap on the notes; it wins over the momentum prefix"),
    )
}


@dataclass(frozen=True)
class RunConfig:
    task: str = "paper"
    agent: str = "offline"
    steps: int = 30
    batch_size: int = 16
    accumulation: int = 1
    momentum: float = 0.5
    seed: int = 0
    eval_size: int = 200
    eval_every: int = 1
    max_note_words: int = 300
    feedback: str = "label"
    label_column: str = "label"
    label_noise: float | None = None  # None: the preset's own
    initial_notes: str = ""

    def problems(self) -> list[str]:
        """Every invalid setting, each as a sentence naming the setting, its range and the value given."""
        found = []
        for name, setting in SETTINGS.items():
            value = getattr(self, name)
            is_integer_setting = isinstance(setting.low, int)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    is_integer_setting and not isinstance(value, int)):
                kind = "a whole number" if is_integer_setting else "a number"
                found.append(f"{name} must be {kind}, got {value!r}")
            elif isinstance(value, float) and not math.isfinite(value):
                found.append(f"{name} must be a finite number, got {value!r}")
            elif not setting.low <= value <= setting.high:
                found.append(f"{name} must be between {setting.low} and {setting.high}, got {value!r}")
        if self.agent not in AGENTS:
            found.append(f"agent must be one of {', '.join(AGENTS)}, got {self.agent!r}")
        if self.feedback not in FEEDBACK_MODES:
            found.append(f"feedback must be one of {', '.join(FEEDBACK_MODES)}, got {self.feedback!r}")
        if self.label_noise is not None and not (
                isinstance(self.label_noise, (int, float)) and 0 <= self.label_noise < 1):
            found.append(f"label_noise must be at least 0 and below 1, got {self.label_noise!r}")
        if not self.task or not str(self.task).strip():
            found.append("task is empty; give a preset name or the path of a CSV file")
        return found

    def check(self) -> "RunConfig":
        found = self.problems()
        if found:
            raise UserError("; ".join(found))
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown run setting(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)
