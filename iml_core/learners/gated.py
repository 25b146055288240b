"""Score-gated revision (after GEPA's acceptance test): IML's induction and revision, but the
revised notes replace the old only if, applied to the step's own training samples, they answer at
least as many right as the old notes did. The old notes' score is their inference answers to those
samples, already given; the revision's is measured (phase score). The rejected revision is kept
with both scores as a candidate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from iml_core.agents import PhaseName
from iml_core.learners import Candidate, Revision, Update, percent
from iml_core.learners.iml import IMLLearner

if TYPE_CHECKING:  # the loop's tools: the loop is above the learners
    from iml_core.learner import StepTools



class GatedLearner(IMLLearner):
    def update(self, tools: StepTools, notes: str, batch_notes: Sequence[str]) -> Update:
        revision = self.revise(tools, notes, batch_notes)
        n = len(tools.samples)
        old_right = (tools.score(notes, tools.samples) if tools.config.notes_form == "rule" else  # both run
                     sum(p.correct for p in tools.record.predictions if p.phase == PhaseName.INFER))
        new_right = old_right if revision.notes == notes else tools.score(revision.notes, tools.samples)
        accepted = new_right >= old_right
        said = f"the revision answered {percent(new_right, n)} of the step's samples, the notes {percent(old_right, n)}"
        old = Candidate("notes", notes, old_right, n, "replaced" if accepted else "chosen",
                        said + ("; the revision is no worse, so it replaces them" if accepted
                               else "; the notes stay"))
        new = Candidate("revision", revision.notes, new_right, n, "chosen" if accepted else "rejected",
                        said + ("; accepted: no worse than the notes" if accepted
                                else "; rejected: worse than the notes"))
        return Update(revision if accepted else Revision(notes, 0, None, 0), [old, new])
