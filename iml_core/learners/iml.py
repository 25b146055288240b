"""The paper's In-Memory Learning: a batch note induced from each minibatch, then one revision of
the notes whose beginning momentum keeps (iml_core.learner.momentum_prefix). Its calls, their
order, seeds and cache keys are those of every run before learners were a choice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from iml_core.agents import PhaseName, Trajectory
from iml_core.decision_list import MAX_CHARACTERS
from iml_core.learners import Revision, Update, enforce_revision, momentum_lines, momentum_prefix

MAX_RULE_WORDS = MAX_CHARACTERS  # a list's own bound is its grammar; the word cap would cut its ELSE line

if TYPE_CHECKING:  # the loop's tools: the loop is above the learners
    from iml_core.learner import StepTools



class IMLLearner:
    def induce(self, tools: StepTools, notes: str, trajectories: Sequence[Trajectory], minibatch: int) -> str:
        return tools.ask(PhaseName.INDUCE, tools.agent.induce, notes, trajectories)

    def revise(self, tools: StepTools, notes: str, batch_notes: Sequence[str]) -> Revision:
        cap = tools.config.max_note_words
        if tools.config.notes_form == "rule":  # whole lines kept; a list is never cut by words
            prefix = momentum_lines(notes, tools.config.momentum)
            return enforce_revision(prefix, tools.ask(PhaseName.REVISE, tools.agent.revise, notes, batch_notes,
                                                      prefix, cap), MAX_RULE_WORDS)
        prefix = momentum_prefix(notes, tools.config.momentum, cap)
        revised = tools.ask(PhaseName.REVISE, tools.agent.revise, notes, batch_notes, prefix, cap)
        return enforce_revision(prefix, revised, cap)

    def update(self, tools: StepTools, notes: str, batch_notes: Sequence[str]) -> Update:
        return Update(self.revise(tools, notes, batch_notes))
