"""The agent interface: what the learning loop asks of any agent, LLM or not.

The loop (iml_core.learner) owns the order of phases, momentum, the word cap and all bookkeeping;
an agent only answers three questions: what is this sample (infer), what did this batch of
experience have in common (induce), and how should the notes read now (revise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, Sequence

from iml_core.tasks import Observation


@dataclass(frozen=True)
class Prediction:
    label: str | None  # None when the output named no class; it then counts as wrong
    raw: str
    sentence: int | None = None  # the sentence of the notes (iml_core.attribution, from 1) the answer relied on


@dataclass(frozen=True)
class Trajectory:
    observation: Observation
    prediction: Prediction
    correct: bool
    # What the environment told after the action: the right class in `label` feedback mode,
    # nothing (None) in `binary` mode, where `correct` is all the agent learns.
    true_label: str | None


class PhaseName(StrEnum):
    """The phases of a step, by the one name each has in code, timers, the model-call log and SQL
    (how pages call them lives in studio/)."""
    INFER = "infer"  # the training answers of the minibatches
    INDUCE = "induce"
    REVISE = "revise"
    EVAL = "eval"  # the held-out answers
    # A candidate note applied to labelled experience to measure it (iml_core.learners): its own
    # name, so its seeds and cache keys are its own and no other phase's change.
    SCORE = "score"

    @property
    def seed_name(self) -> str:
        """The name a call's seed is derived from, and through the seed its response-cache key: "train"
        for inference, as before the phases had one name. Renaming it would change every inference
        call's seed and key, so a stored run would resume with different answers and none of its
        cached ones."""
        return "train" if self is PhaseName.INFER else self.value


@dataclass(frozen=True)
class Phase:
    """Where in a run a call happens; agents use it to log model calls and to seed random choices."""
    run_seed: int
    step: int
    name: PhaseName
    # Told of each model call as it is made (iml_core.progress.StepWatch), for the Live page; no
    # part of any seed or cache key.
    watch: object | None = field(default=None, compare=False)
    # Checked before each model call and told what it spent (iml_core.budget.Budget).
    budget: object | None = field(default=None, compare=False)


@dataclass
class ModelCall:
    phase: str
    prompt: str
    response: str
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    duration_ms: float = 0.0
    cached: bool = False  # answered from the response cache: no model was called
    error: str | None = None
    cost: float = 0.0


class Agent(Protocol):
    # How the agent is named wherever it appears (the offline learner says it is no LLM).
    description: str

    def infer(self, notes: str, observations: Sequence[Observation], phase: Phase) -> list[Prediction]: ...

    def induce(self, notes: str, trajectories: Sequence[Trajectory], phase: Phase) -> str: ...

    def revise(self, notes: str, batch_notes: Sequence[str], required_prefix: str, max_words: int,
               phase: Phase) -> str:
        """New notes. They should begin with `required_prefix` (the momentum prefix); the loop
        repairs them when they do not and records that the agent did not keep it by itself."""
        ...

    def propose(self, notes: str, trajectories: Sequence[Trajectory], count: int, style: str,
                phase: Phase) -> list[str]:
        """Up to `count` candidate rules written from labelled experience (iml_core.learners: the
        bank learner); `style` is one of iml_core.learners.PROPOSAL_STYLES."""
        ...

    def operate(self, bullets: str, trajectories: Sequence[Trajectory], phase: Phase) -> str:
        """Operations on a playbook's numbered bullets, one a line: ADD: text, EDIT n: text, REMOVE n
        (the playbook learner)."""
        ...

    def simplify(self, rule: str, phase: Phase) -> list[str]:
        """The rule rewritten once per feature it names, that feature alone kept (the bank's edit)."""
        ...

    def in_context(self, examples: Sequence[tuple[Observation, str]], observations: Sequence[Observation],
                   phase: Phase) -> tuple[str, list[Prediction], str]:
        """The in-context baseline: answers learned from labelled examples at once, without notes
        written step by step; (the notes it read, if any, its answers, how it used the examples)."""
        ...

    def count_tokens(self, text: str) -> tuple[int, str]:
        """`text`'s length as this agent's prompt counts it, and how it was counted (the equal-token baseline)."""
        ...

    def drain_calls(self) -> list[ModelCall]:
        """The model calls made since the last drain, for the step's record."""
        ...
