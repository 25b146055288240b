"""The baselines that frame a run's learning curve, named once. How each is computed is a table
keyed by them (evaluation.BASELINE_MAKERS), and so is how each is drawn (charts.BASELINE_STYLES);
the store, the ladder, the pages and the command line iterate this enum, never a list of strings."""

from __future__ import annotations

from enum import StrEnum


class Baseline(StrEnum):
    # In the order they are computed, tabled and drawn: the floors first, then what a model is given.
    NO_NOTES = "no notes"
    MAJORITY = "majority"
    IN_CONTEXT = "in-context"
    # The run's own experience, as many of its labelled samples as fit its notes' tokens (most recent
    # first): what a long-context reader gets for the notes' budget (iml_core.evaluation.equal_tokens).
    EQUAL_TOKEN = "equal-token"
    ORACLE = "oracle"

    @property
    def asks_model(self) -> bool:
        """Whether it answers the eval split with the run's model (the majority class asks none)."""
        return self is not Baseline.MAJORITY

    @property
    def of_the_run(self) -> bool:
        """Whether it reads what one run learned (its notes, the samples it saw), so it is that run's
        own; the others are shared by every run of the same task, model and eval split."""
        return self is Baseline.EQUAL_TOKEN

    @property
    def is_floor(self) -> bool:
        """A floor a model reaches without learning: no notes, or always one class."""
        return self in (Baseline.NO_NOTES, Baseline.MAJORITY)

    @property
    def meaning(self) -> str:
        """What it measures, in one line of words for the page that draws it."""
        return _MEANINGS[self]

    @classmethod
    def of(cls, kind: str) -> Baseline | None:
        """The baseline an evaluation kind names, or None for the other kinds (notes, ablation)."""
        return cls._value2member_map_.get(kind)


_MEANINGS = {
    Baseline.NO_NOTES: "the same agent with empty notes: what it knows before learning",
    Baseline.MAJORITY: "always answering the class most training samples have: no reading at all",
    Baseline.IN_CONTEXT: "labelled training samples in the prompt instead of notes",
    Baseline.EQUAL_TOKEN: "the run's own latest samples, as many as fit the tokens its notes take: learning is "
                          "more than compressing experience if the notes beat it",
    Baseline.ORACLE: "the true rule given as notes: the most notes can do for this reader",
}
BASELINES = tuple(Baseline)
