"""The delta playbook (after ACE): the notes are bullets, one a line, and induction does not rewrite
them: from each minibatch the agent emits operations on the numbered bullets (ADD, EDIT n, REMOVE n;
Agent.operate), applied in order. Each bullet counts the answers that relied on it: helpful when
right, harmful when wrong (a layout that names the line it relied on gives this; under `plain` no
answer names one and the counters stay at zero). A bullet whose harmful answers outnumber its
helpful ones by DROP_MARGIN is dropped; a bullet nearly the same as an earlier one is merged into it.

The bullets and their counters are the learner's state, stored with each step."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Sequence

from iml_core.agents import PhaseName, Trajectory
from iml_core.attribution import note_units
from iml_core.learners import Candidate, Update, enforce_revision

if TYPE_CHECKING:  # the loop's tools: the loop is above the learners
    from iml_core.learner import StepTools

DROP_MARGIN = 3  # harmful answers beyond helpful ones that drop a bullet
SAME = 0.8  # word overlap (Jaccard) above which two bullets say the same and are merged
_OPERATION = re.compile(r"^\s*(?:[-*]\s*)?(ADD|EDIT|REMOVE)\s*(\d+)?\s*:?\s*(.*)$", re.IGNORECASE)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _similar(a: str, b: str) -> bool:
    x, y = _words(a), _words(b)
    return bool(x | y) and len(x & y) / len(x | y) >= SAME


class PlaybookLearner:
    def __init__(self, config, state: str | None):
        self.config = config
        self.bullets: list[dict] | None = json.loads(state) if state else None
        self.operations: list[tuple[int, str]] = []  # (minibatch, line) of the step in flight

    def _start(self, notes: str) -> list[dict]:
        """The bullets carried from the last step, or a run's first notes, one bullet a line."""
        if self.bullets is None:
            self.bullets = [{"text": line.strip(), "helpful": 0, "harmful": 0} for line in notes.splitlines()
                            if line.strip()]
        return self.bullets

    def induce(self, tools: StepTools, notes: str, trajectories: Sequence[Trajectory], minibatch: int) -> str:
        bullets = self._start(notes)
        self._count(bullets, trajectories)
        shown = "\n".join(f"{n}. {b['text']}" for n, b in enumerate(bullets, 1))
        text = tools.ask(PhaseName.INDUCE, tools.agent.operate, shown, trajectories)
        lines = [line.strip() for line in text.splitlines() if _OPERATION.match(line)]
        self.operations += [(minibatch, line) for line in lines]
        return text.strip() or "(no operation)"

    @staticmethod
    def _count(bullets: list[dict], trajectories: Sequence[Trajectory]) -> None:
        """Helpful and harmful answers of a minibatch, by the sentence each relied on, per bullet."""
        owner = [n for n, b in enumerate(bullets) for _ in note_units(b["text"])]
        for t in trajectories:
            if t.prediction.sentence and t.prediction.sentence <= len(owner):
                bullets[owner[t.prediction.sentence - 1]]["helpful" if t.correct else "harmful"] += 1

    def update(self, tools: StepTools, notes: str, batch_notes: Sequence[str]) -> Update:
        bullets, weighed = [dict(b) for b in self._start(notes)], []
        seen = len(bullets)  # every minibatch's operations number the bullets as the step began
        for minibatch, line in self.operations:
            verb, number, text = _OPERATION.match(line).groups()
            verb, index = verb.upper(), int(number) - 1 if number else None
            valid = (verb == "ADD" and text) or (verb != "ADD" and index is not None and 0 <= index < seen
                                                 and bullets[index] is not None and (verb == "REMOVE" or text))
            if valid and verb == "ADD":
                bullets.append({"text": text.strip(), "helpful": 0, "harmful": 0})
            elif valid and verb == "EDIT":
                bullets[index] = {"text": text.strip(), "helpful": 0, "harmful": 0}  # counted anew: new words
            elif valid:
                bullets[index] = None  # removed at the end, so that the numbers stay those the agent saw
            weighed.append(Candidate("operation", line, decision="chosen" if valid else "rejected",
                                     reason="applied" if valid else "names no bullet or says nothing: left out",
                                     minibatch=minibatch))
        self.operations = []
        kept: list[dict] = []
        for bullet in filter(None, bullets):
            said = f"helpful {bullet['helpful']}, harmful {bullet['harmful']}"
            twin = next((k for k in kept if _similar(k["text"], bullet["text"])), None)
            if bullet["harmful"] - bullet["helpful"] >= DROP_MARGIN:
                weighed.append(Candidate("bank", bullet["text"], bullet["helpful"], bullet["helpful"]
                                         + bullet["harmful"], "replaced", f"{said}: dropped as harmful"))
            elif twin is not None:
                twin["helpful"] += bullet["helpful"]
                twin["harmful"] += bullet["harmful"]
                weighed.append(Candidate("bank", bullet["text"], None, None, "replaced",
                                         f"{said}: merged into the nearly same bullet \"{twin['text']}\""))
            else:
                kept.append(bullet)
        self.bullets = kept
        revision = enforce_revision("", "\n".join(b["text"] for b in kept), self.config.max_note_words)
        return Update(revision, weighed, json.dumps(kept))
