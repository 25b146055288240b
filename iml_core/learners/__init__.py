"""Learners: how a step turns its experience into new notes (docs/ARCHITECTURE.md §2).

The loop (iml_core.learner) infers each minibatch with the notes and asks the run's learner two
things: what this minibatch taught (`induce`, once per minibatch, its text stored as the batch
note), and what the notes are now (`update`, once per step). Inference, evaluation, bookkeeping,
budgets, the response cache and resume stay the loop's. A learner calls the agent only through the
step's tools (iml_core.learner.StepTools), so its calls are timed, budgeted, cached and logged like
every other; and whatever it carries to the next step it returns as `state`, stored with the step,
so a resumed run continues as if it had never stopped.

- iml: the paper's In-Memory Learning: induce per minibatch, revise with momentum.
- bank: a hypothesis bank (after HypoGeniC): candidate rules proposed per minibatch, each scored by
  applying it to recent labelled experience; the notes are the bank's best rule.
- gated: IML whose revision replaces the notes only if it scores at least as well on the step's
  samples (after GEPA's acceptance test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol, Sequence

from iml_core.diff import take_words, word_count, words

if TYPE_CHECKING:  # the loop's, which is above the learners: they use its tools, never import it
    from iml_core.agents import Trajectory
    from iml_core.learner import StepTools

# How the bank asks for candidate rules: `free` leaves their form to the model; `one-feature`
# asks for rules that each name a single feature, since a free rule tends to join the deciding
# feature with a spurious one (issue 29).
PROPOSAL_STYLES = {"free": "each candidate rule as the model writes it",
                   "one-feature": "each candidate rule names one feature (one attribute's value) only"}


# --- momentum and the word cap ------------------------------------------------------------

def prefix_word_count(momentum: float, notes_words: int, max_words: int) -> int:
    """ceil(m * W), computed on the decimal the user typed (0.3 * 10 is 3, not 3.0000000000000004),
    and never more than the cap: when the cap and the prefix collide, the cap wins."""
    return min(math.ceil(Fraction(str(momentum)) * notes_words), max_words)


def momentum_prefix(notes: str, momentum: float, max_words: int) -> str:
    return take_words(notes, prefix_word_count(momentum, word_count(notes), max_words))


def momentum_lines(notes: str, momentum: float) -> str:
    """Momentum for a decision list: its first ceil(m * n) IF lines (n of them), whole, the line-level
    form of "begin with the old notes' words"; the ELSE line is never kept, since the lines that
    follow the kept ones come before it."""
    lines = [line.strip() for line in notes.splitlines() if line.strip().upper().startswith("IF ")]
    return "\n".join(lines[:math.ceil(Fraction(str(momentum)) * len(lines))])


@dataclass(frozen=True)
class Revision:
    notes: str
    prefix_words: int
    kept_by_model: bool | None  # None when momentum required nothing
    words_truncated: int


def enforce_revision(prefix: str, revised: str, max_words: int) -> Revision:
    """The notes a revision may leave: they begin with the momentum prefix (when the agent dropped
    it, the rule is: the prefix, then everything the agent wrote) and hold at most max_words words."""
    required = words(prefix)
    kept = words(revised)[:len(required)] == required
    notes = revised if kept else prefix + ("\n" + revised.strip() if revised.strip() else "")
    total = word_count(notes)
    if total > max_words:
        notes = take_words(notes, max_words)
    return Revision(notes, len(required), kept if required else None, max(0, total - max_words))


@dataclass
class Candidate:
    """A note a learner weighed in a step: where it came from, what applying it to labelled
    experience scored (right of scored; None when it was not scored), and what became of it."""
    origin: str  # "proposal" (of a minibatch), "bank", "notes" (the notes before the step), "revision", "edit", "flip"
    text: str
    right: int | None = None
    scored: int | None = None
    decision: str = ""  # one of DECISIONS
    reason: str = ""  # why, in words, with the scores that decided it
    minibatch: int | None = None

    @property
    def accuracy(self) -> float | None:
        return None if not self.scored else self.right / self.scored


# chosen: it is the notes now; kept: it stays (in a bank) without being the notes; rejected: it
# did not win a place; replaced: it was the notes or in the bank, and a better one took its place.
DECISIONS = ("chosen", "kept", "rejected", "replaced")


@dataclass(frozen=True)
class Update:
    """What a learner's step leaves: the notes (with how momentum and the cap shaped them), the
    candidates it weighed, and what it carries to the next step."""
    revision: Revision
    candidates: list[Candidate] = field(default_factory=list)
    state: str | None = None


class Learner(Protocol):
    def induce(self, tools: StepTools, notes: str, trajectories: Sequence[Trajectory], minibatch: int) -> str:
        """What a minibatch taught, as the batch note stored for it."""
        ...

    def update(self, tools: StepTools, notes: str, batch_notes: Sequence[str]) -> Update:
        """The notes after the step, from the notes before it and the step's batch notes."""
        ...


def percent(right: int, scored: int) -> str:
    return f"{right} of {scored} right ({100 * right / scored:.1f}%)" if scored else "not scored"
