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

from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:
    from iml_core.agents import Trajectory
    from iml_core.learner import StepTools, Update

# How the bank asks for candidate rules: `free` leaves their form to the model; `one-feature`
# asks for rules that each name a single feature, since a free rule tends to join the deciding
# feature with a spurious one (issue 29).
PROPOSAL_STYLES = {"free": "each candidate rule as the model writes it",
                   "one-feature": "each candidate rule names one feature (one attribute's value) only"}


class Learner(Protocol):
    def induce(self, tools: StepTools, notes: str, trajectories: Sequence[Trajectory], minibatch: int) -> str:
        """What a minibatch taught, as the batch note stored for it."""
        ...

    def update(self, tools: StepTools, notes: str, batch_notes: Sequence[str]) -> Update:
        """The notes after the step, from the notes before it and the step's batch notes."""
        ...


def percent(right: int, scored: int) -> str:
    return f"{right} of {scored} right ({100 * right / scored:.1f}%)" if scored else "not scored"
