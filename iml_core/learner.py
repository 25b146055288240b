"""The In-Memory Learning loop, written once for every agent (docs/ARCHITECTURE.md §2).

    for k in 1..K:                       accumulation
        minibatch = next B samples of the training stream
        trajectories = (observation, infer(notes, observation), feedback) for each sample
        batch_notes[k] = induce(notes, trajectories)
    notes = revise(notes, batch_notes) with the first ceil(m * W) old words kept   momentum
    every E steps (and after the last): eval accuracy of infer(notes, held-out samples)

How a step turns its experience into new notes is the run's learner (iml_core.learners,
LEARNERS in iml_core.registry); the lines above are IML's, the default. Inference, evaluation,
bookkeeping, budgets, the cache and resume are the loop's, the same for every learner.

Everything random derives from the run's seed and the step number, and whatever a learner carries
between steps is stored with the step (StepRecord.state), so a run resumed at step s continues
exactly as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from iml_core.agents import Agent, ModelCall, Phase, PhaseName, Prediction, Trajectory
from iml_core.config import RunConfig
from iml_core.budget import Budget
from iml_core.progress import StepWatch
from iml_core.agents.rules import RuleApplier
from iml_core.registry import AGENTS, LEARNERS, step_calls
from iml_core.diff import repetition, word_count, words_changed
# Momentum and what a learner's step leaves live with the learners (iml_core.learners); named here
# too, as the loop's vocabulary.
from iml_core.learners import (Candidate, Revision, Update, enforce_revision, momentum_prefix,  # noqa: F401
                               prefix_word_count)
from iml_core.tasks import Sample, Task


# --- where the samples come from ------------------------------------------------------------

class SampleStream:
    """A seeded held-out eval split, and a training stream that walks the rest in a fresh seeded
    order each epoch. Minibatch g is a pure function of (seed, g)."""

    def __init__(self, task: Task, seed: int, eval_size: int):
        order = list(range(len(task.samples)))
        random.Random(f"{seed}/split").shuffle(order)
        self.eval = [task.samples[i] for i in order[:eval_size]]
        self.train = [task.samples[i] for i in order[eval_size:]]
        self.seed = seed
        self._epochs: dict[int, list[int]] = {}

    def _epoch(self, epoch: int) -> list[int]:
        if epoch not in self._epochs:
            self._epochs = {epoch: random.Random(f"{self.seed}/epoch/{epoch}").sample(
                range(len(self.train)), len(self.train))}
        return self._epochs[epoch]

    def minibatch(self, index: int, size: int) -> list[Sample]:
        return self.positions(index * size, (index + 1) * size)

    def positions(self, start: int, end: int) -> list[Sample]:
        """The training stream from position `start` to `end` (excluded), across epochs."""
        n = len(self.train)
        return [self.train[self._epoch(p // n)[p % n]] for p in range(max(0, start), end)]


# --- one step's record ----------------------------------------------------------------------

@dataclass(frozen=True)
class PredictionRecord:
    phase: str  # PhaseName.INFER (a training answer of the inference phase) or PhaseName.EVAL
    minibatch: int | None  # which of the K minibatches; None for eval
    sample_id: int
    predicted: str | None
    label: str
    correct: bool
    raw: str
    note_sentence: int | None = None  # the unit of the notes the answer relied on (iml_core.attribution)


@dataclass
class StepRecord:
    step: int
    notes: str
    train_accuracy: float | None = None
    train_invalid: int = 0
    eval_accuracy: float | None = None
    eval_invalid: int = 0
    # {"train"|"eval": {class: [right, total]}}, by split: "train" names the samples, not a phase
    per_class: dict = field(default_factory=dict)
    notes_words: int = 0
    words_changed: int = 0
    prefix_words: int = 0
    prefix_kept_by_model: bool | None = None
    words_truncated: int = 0
    notes_repetition: float = 0.0  # iml_core.diff.repetition of the notes
    eval_top_class: str | None = None  # the class the eval answers named most often...
    eval_top_share: float | None = None  # ...and the share of the eval answers that named it
    # Rule notes (notes_form rule) are scored both ways at every evaluated step, whichever the run learns
    # by: run by the engine, and read by the model (None where no model reads them: the offline agent).
    rule_eval_accuracy: float | None = None
    model_eval_accuracy: float | None = None
    batch_notes: list[str] = field(default_factory=list)
    predictions: list[PredictionRecord] = field(default_factory=list)
    calls: list[tuple[str, ModelCall]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    candidates: list[Candidate] = field(default_factory=list)  # what the learner weighed, and why it chose
    state: str | None = None  # what the learner carries to the next step (None: nothing but the notes)

    def tokens(self, kind: str) -> int:
        return sum(getattr(call, f"tokens_{kind}") for _, call in self.calls)

    def cost(self) -> float:
        return sum(call.cost for _, call in self.calls)


def score_answers(task: Task, phase: str, minibatch: int | None, samples: Sequence[Sample],
           predictions: Sequence[Prediction]) -> tuple[list[PredictionRecord], float, int, dict]:
    records, per_class = [], defaultdict(lambda: [0, 0])
    for sample, prediction in zip(samples, predictions, strict=True):
        predicted = prediction.label if prediction.label in task.classes else None
        correct = predicted == sample.label
        records.append(PredictionRecord(phase, minibatch, sample.id, predicted, sample.label, correct, prediction.raw,
                                        prediction.sentence))
        per_class[sample.label][0] += correct
        per_class[sample.label][1] += 1
    right = sum(r.correct for r in records)
    invalid = sum(r.predicted is None for r in records)
    return records, right / len(records), invalid, dict(per_class)


class _Clock:
    def __init__(self, watch: StepWatch | None):
        self.seconds: dict[str, float] = defaultdict(float)
        self.watch = watch

    def time(self, phase: str, call, *args):
        if self.watch is not None:
            self.watch.begin_phase(phase)
        start = time.perf_counter()
        try:
            return call(*args)
        finally:
            self.seconds[phase] += time.perf_counter() - start


# --- what a learner may ask in a step ------------------------------------------------------------

class StepTools:
    """A learner's hands in one step: the agent asked in a named phase (timed, budgeted, its calls
    logged with the step), notes scored by applying them to labelled samples, and the labelled
    experience the run has seen so far."""

    def __init__(self, agent: Agent, task: Task, config: RunConfig, stream: SampleStream, record: StepRecord,
                 clock: _Clock, phase: Callable[[PhaseName], Phase]):
        self.agent, self.task, self.config, self.stream = agent, task, config, stream
        # Rule notes are scored by running them: the engine answers, and no model call is spent.
        self.scorer = RuleApplier(task) if config.notes_form == "rule" else agent
        self.record, self.clock, self.phase = record, clock, phase
        self.samples: list[Sample] = []  # this step's training samples, in the order answered

    def ask(self, name: PhaseName, method, *args):
        """method(*args, phase): a call of the agent's in phase `name`."""
        result = self.clock.time(name, method, *args, self.phase(name))
        self.record.calls.extend((name, call) for call in self.agent.drain_calls())
        return result

    def score(self, notes: str, samples: Sequence[Sample]) -> int:
        """How many of `samples` the agent answers right reading `notes`: the notes applied, as
        inference applies them (rule notes: run by the engine). The answer to one note on one sample
        does not depend on the step (its seed is step 0's), so a note scored again on a sample it met
        before is answered by the response cache."""
        predictions = self.ask(PhaseName.SCORE, lambda notes, observations, phase: self.scorer.infer(
            notes, observations, dataclasses.replace(phase, step=0)), notes, [s.observation for s in samples])
        return sum(p.label == s.label for p, s in zip(predictions, samples, strict=True))

    def recent(self, count: int) -> list[Sample]:
        """The last `count` labelled training samples seen, up to the end of this step, oldest first."""
        end = self.record.step * self.config.accumulation * self.config.batch_size
        return self.stream.positions(end - count, end)


# --- the loop ------------------------------------------------------------------------------------

def learning_steps(task: Task, agent: Agent, config: RunConfig, *, after_step: int | None = None,
                   notes: str | None = None, state: str | None = None, watch: StepWatch | None = None,
                   budget: Budget | None = None) -> Iterator[StepRecord]:
    """Yields step 0 (the starting notes, evaluated) and then one record per learning step.
    To resume, pass the last committed step (0 included), its notes and its learner's state.
    `watch` hears where each step is (iml_core.progress); `budget` stops the run before a step or
    model call past its limits."""
    stream = SampleStream(task, config.seed, config.eval_size)
    notes = config.initial_notes if notes is None else notes
    learner = LEARNERS[config.learner].build(config, state)
    eval_observations = [s.observation for s in stream.eval]
    rules = RuleApplier(task) if config.notes_form == "rule" else None
    applier = rules if config.apply == "rule" else agent  # who answers, in inference and evaluation

    def evaluates(step: int) -> bool:
        return step % config.eval_every == 0 or step == config.steps

    def phase(step: int, name: PhaseName) -> Phase:
        return Phase(config.seed, step, name, watch, budget)

    def begin(step: int) -> _Clock:
        """The step's clock, and the watch told what the step will ask of a model."""
        if budget is not None:
            budget.before_step()
        if watch is not None:
            model_reads = applier is agent or AGENTS[config.agent].uses_model  # rule notes: read once more
            expected = {PhaseName.EVAL: len(eval_observations) if (step == 0 or evaluates(step)) and model_reads
                        else 0}
            if step:
                expected |= step_calls(config, len(task.attributes), step)
            watch.begin_step(step, expected)
        return _Clock(watch)

    def evaluate(record: StepRecord, clock: _Clock) -> None:
        predictions = clock.time(PhaseName.EVAL, applier.infer, record.notes, eval_observations,
                                 phase(record.step, PhaseName.EVAL))
        records, record.eval_accuracy, record.eval_invalid, record.per_class["eval"] = score_answers(
            task, PhaseName.EVAL, None, stream.eval, predictions)
        if rules is not None:
            record.rule_eval_accuracy = record.eval_accuracy if applier is rules else score_answers(
                task, PhaseName.EVAL, None, stream.eval, rules.infer(record.notes, eval_observations))[1]
            if applier is agent:
                record.model_eval_accuracy = record.eval_accuracy if AGENTS[config.agent].uses_model else None
            elif AGENTS[config.agent].uses_model:  # the paper's protocol beside it, at its calls' cost
                read = clock.time(PhaseName.EVAL, agent.infer, record.notes, eval_observations,
                                  phase(record.step, PhaseName.EVAL))
                record.model_eval_accuracy = score_answers(task, PhaseName.EVAL, None, stream.eval, read)[1]
        named = Counter(r.predicted for r in records if r.predicted is not None)
        if named:
            record.eval_top_class, count = named.most_common(1)[0]
            record.eval_top_share = count / len(records)
        record.predictions.extend(records)

    def drain(record: StepRecord, phase: PhaseName) -> None:
        record.calls.extend((phase, call) for call in agent.drain_calls())

    if after_step is None:
        clock, start = begin(0), StepRecord(0, notes, notes_words=word_count(notes), notes_repetition=repetition(notes))
        evaluate(start, clock)
        drain(start, PhaseName.EVAL)
        start.seconds = dict(clock.seconds)
        yield start
        after_step = 0

    for step in range(after_step + 1, config.steps + 1):
        clock, record = begin(step), StepRecord(step, notes)
        tools = StepTools(agent, task, config, stream, record, clock, lambda name, step=step: phase(step, name))
        train_predictions: list[Prediction] = []
        for k in range(config.accumulation):
            minibatch = stream.minibatch((step - 1) * config.accumulation + k, config.batch_size)
            predictions = tools.ask(PhaseName.INFER, applier.infer, notes, [s.observation for s in minibatch])
            scored, _, _, _ = score_answers(task, PhaseName.INFER, k, minibatch, predictions)
            trajectories = [
                Trajectory(s.observation, p, r.correct, s.label if config.feedback == "label" else None)
                for s, p, r in zip(minibatch, predictions, scored, strict=True)]
            record.batch_notes.append(learner.induce(tools, notes, trajectories, k))
            record.predictions.extend(scored)
            tools.samples += minibatch
            train_predictions += predictions

        _, record.train_accuracy, record.train_invalid, record.per_class["train"] = score_answers(
            task, PhaseName.INFER, None, tools.samples, train_predictions)

        update = learner.update(tools, notes, record.batch_notes)
        revision = update.revision
        record.candidates, record.state = update.candidates, update.state
        record.notes = revision.notes
        record.notes_words = word_count(revision.notes)
        record.words_changed = words_changed(notes, revision.notes)
        record.notes_repetition = repetition(revision.notes)
        record.prefix_words = revision.prefix_words
        record.prefix_kept_by_model = revision.kept_by_model
        record.words_truncated = revision.words_truncated

        if evaluates(step):
            evaluate(record, clock)
            drain(record, PhaseName.EVAL)
        record.seconds = dict(clock.seconds)
        yield record
        notes = revision.notes
