"""Scoring notes without learning, and what frames a learning curve.

- score_notes: any notes, read by any agent or model, on a task's eval split (the run's own split
  when its seed and eval size are given): transfer, when the notes came from another run.
- The baselines of a run, on its task, agent, model, seed and eval split: no notes (the zero-shot
  floor), in-context (K labelled training examples in the prompt, no notes), oracle notes (written
  from the benchmark's rule card), and the majority class; and one of the run's own, equal-token:
  the labelled experience it saw, most recent first, in as many prompt tokens as its notes take.
- ablate: the notes once whole and once without each numbered sentence: which sentences carry the accuracy.

Every evaluation asks the agent exactly as a step's evaluation does (same split, same per-call
seeds), so a repeated one is answered by the response cache.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Callable
from dataclasses import dataclass, field

from iml_core.agents import ModelCall, Phase, PhaseName, Prediction
from iml_core.attribution import note_units
from iml_core.baseline_kinds import Baseline
from iml_core.builders import build_agent, build_task, task_moved
from iml_core.config import RUN_SETTINGS, RunConfig
from iml_core.agents.rules import RuleApplier
from iml_core.decision_list import rule_card_list
from iml_core.diff import word_count
from iml_core.errors import IMLError, RunFailed, UserError
from iml_core.registry import AGENTS
from iml_core.status import GOING
from iml_core.learner import PredictionRecord, SampleStream, score_answers
from iml_core.prompts import fill
from iml_core.tasks import Sample, Task

DEFAULTS = RunConfig()
KINDS = ("notes", *Baseline, "ablation")


@dataclass
class Evaluation:
    kind: str  # one of KINDS
    notes_source: str  # where the notes came from: "run 3 step 5", "file notes.txt", "oracle", ...
    notes: str
    agent_description: str
    accuracy: float
    invalid: int
    per_class: dict
    predictions: list[PredictionRecord]
    calls: list[ModelCall] = field(default_factory=list)
    seconds: float = 0.0
    shots: int | None = None  # in-context: the examples in the prompt
    removed_sentence: int | None = None  # ablation: the sentence left out (None: the notes whole)
    prompt_layout: str | None = None  # how a model was asked (iml_core.prompts); None: no model was
    # Rule notes (notes form rule) scored both ways: run by the engine, and read by the model (None: no model)
    both: dict | None = None

    @property
    def eval_size(self) -> int:
        return len(self.predictions)

    def summary(self) -> dict:
        return {"kind": self.kind, "notes_source": self.notes_source, "accuracy": self.accuracy,
                "invalid": self.invalid, "per_class": self.per_class, "eval_size": self.eval_size,
                "shots": self.shots, "removed_sentence": self.removed_sentence, "agent": self.agent_description,
                "prompt_layout": self.prompt_layout,
                "tokens_in": sum(c.tokens_in for c in self.calls), "tokens_out": sum(c.tokens_out for c in self.calls),
                "cost": sum(c.cost for c in self.calls), "seconds": self.seconds,
                **({} if self.both is None else self.both)}


def _eval_split(task: Task, config: RunConfig) -> list[Sample]:
    return SampleStream(task, config.seed, config.eval_size).eval


def score_notes(config: RunConfig, notes: str, *, kind: str = "notes", source: str = "text", cache=None,
                removed_sentence: int | None = None) -> Evaluation:
    """The eval accuracy of `notes` read by the config's agent on its task's eval split."""
    task = build_task(config)
    agent = build_agent(config, task, cache=cache)
    samples = _eval_split(task, config)
    observations, phase = [s.observation for s in samples], Phase(config.seed, 0, PhaseName.EVAL)
    rules, both = None, None
    if config.notes_form == "rule":
        rules = RuleApplier(task)
        rules.form.parse(notes)  # notes that are no decision list: the parser's error, and nothing scored
    started = time.perf_counter()
    answers = (rules if config.apply == "rule" else agent).infer(notes, observations, phase)
    seconds = time.perf_counter() - started
    records, accuracy, invalid, per_class = score_answers(task, "eval", None, samples, answers)
    if rules is not None:  # both, named so that nobody takes one for the other
        model_read = (answers if config.apply == "model" else agent.infer(notes, observations, phase)) \
            if config.uses_model else None
        both = {"rule_applied_accuracy": score_answers(task, "eval", None, samples,
                                                       rules.infer(notes, observations))[1],
                "model_applied_accuracy": None if model_read is None else
                score_answers(task, "eval", None, samples, model_read)[1]}
    return Evaluation(kind, source, notes, agent.description, accuracy, invalid, per_class, records,
                      agent.drain_calls(), seconds, removed_sentence=removed_sentence,
                      prompt_layout=_layout(config), both=both)


def _layout(config: RunConfig) -> str | None:
    return config.prompt_layout if config.uses_model else None


def oracle_notes(task: Task, agent: str, notes_form: str = "text") -> str:
    """The rule card written as notes the way the agent reads notes (iml_core.registry.AgentKind), or
    as a decision list in rule form."""
    if not task.rule_card:
        raise UserError(f"{task.name} has no rule card (a CSV task without one): oracle notes need the rule; put "
                        f"a {task.name}.rules.json beside the CSV, in the format `iml data` writes for the presets")
    if notes_form == "rule":
        return rule_card_list(task)
    return AGENTS[agent].rule_card_notes(task)


def default_shots(task: Task, config: RunConfig) -> int:
    """As many training examples as fit the run's note-word cap."""
    stream = SampleStream(task, config.seed, config.eval_size)
    words, shots = 0, 0
    for sample in stream.minibatch(0, len(stream.train)):
        words += word_count(f"{sample.text} {sample.label}")
        if words > config.max_note_words:
            break
        shots += 1
    return max(shots, 1)


def in_context(config: RunConfig, shots: int | None = None, *, cache=None) -> Evaluation:
    """K labelled examples, taken first from the run's training stream, in the prompt and no notes;
    for the rule learner, its classifier fitted on the same K examples."""
    task = build_task(config)
    stream = SampleStream(task, config.seed, config.eval_size)
    shots = default_shots(task, config) if shots is None else shots
    if not 1 <= shots <= len(stream.train):
        raise UserError(f"{shots} in-context examples asked, but the training stream of {task.name} has "
                        f"{len(stream.train)}; give --shots from 1 to {len(stream.train)}")
    examples = stream.minibatch(0, shots)
    agent = build_agent(config, task, cache=cache)
    samples = stream.eval
    started = time.perf_counter()
    notes, answers, source = agent.in_context([(s.observation, s.label) for s in examples],
                                              [s.observation for s in samples], Phase(config.seed, 0, PhaseName.EVAL))
    seconds = time.perf_counter() - started
    records, accuracy, invalid, per_class = score_answers(task, "eval", None, samples, answers)
    return Evaluation(Baseline.IN_CONTEXT, source, notes, agent.description, accuracy, invalid, per_class, records,
                      agent.drain_calls(), seconds, shots=shots, prompt_layout=_layout(config))


def equal_tokens(config: RunConfig, notes: str, seen: int, *, cache=None) -> Evaluation:
    """The labelled experience a run saw (the first `seen` samples of its training stream), most
    recent first, as many as fit in the prompt tokens its notes take, as in-context examples in its
    layout: what the room of the notes holds when filled with raw experience instead (EvoMemBench's
    long-context baseline). A study without it cannot tell learning from remembering."""
    task = build_task(config)
    stream = SampleStream(task, config.seed, config.eval_size)
    agent = build_agent(config, task, cache=cache)
    room, how = agent.count_tokens(notes)
    examples, used = [], 0
    for sample in reversed(stream.positions(0, seen)):
        size, _ = agent.count_tokens(fill("example", observation=sample.text, label=sample.label))
        if used + size > room:
            break
        examples.append(sample)
        used += size
    started = time.perf_counter()
    _, answers, _ = agent.in_context([(s.observation, s.label) for s in examples],
                                     [s.observation for s in stream.eval], Phase(config.seed, 0, PhaseName.EVAL))
    seconds = time.perf_counter() - started
    records, accuracy, invalid, per_class = score_answers(task, "eval", None, stream.eval, answers)
    source = (f"the {len(examples)} most recent of {seen} training samples seen, {used} of the notes' {room} "
              f"tokens ({how})")
    return Evaluation(Baseline.EQUAL_TOKEN, source, notes, agent.description, accuracy, invalid, per_class, records,
                      agent.drain_calls(), seconds, shots=len(examples), prompt_layout=_layout(config))


def majority(config: RunConfig) -> Evaluation:
    """Always the class most frequent in the training stream: no model, no notes."""
    task = build_task(config)
    stream = SampleStream(task, config.seed, config.eval_size)
    counts = Counter(s.label for s in stream.train)
    top = max(task.classes, key=lambda c: (counts[c], -task.classes.index(c)))
    records, accuracy, invalid, per_class = score_answers(task, "eval", None, stream.eval,
                                                          [Prediction(top, top) for _ in stream.eval])
    return Evaluation(Baseline.MAJORITY, f"always {top}", "", "majority class (no model)", accuracy, invalid, per_class,
                      records)


# How each baseline is computed: (config, shots, cache, learned) -> its evaluation; `learned` is the
# run's notes and how many training samples it had seen (learned_so_far), for the run's own baselines.
BASELINE_MAKERS: dict[Baseline, Callable[[RunConfig, int | None, object, tuple[str, int] | None], Evaluation]] = {
    Baseline.NO_NOTES: lambda config, shots, cache, learned: score_notes(config, "", kind=Baseline.NO_NOTES,
                                                                         source="none", cache=cache),
    Baseline.MAJORITY: lambda config, shots, cache, learned: majority(config),
    Baseline.IN_CONTEXT: lambda config, shots, cache, learned: in_context(config, shots, cache=cache),
    Baseline.EQUAL_TOKEN: lambda config, shots, cache, learned: equal_tokens(config, *_learned(learned), cache=cache),
    Baseline.ORACLE: lambda config, shots, cache, learned: score_notes(
        config, oracle_notes(build_task(config), config.agent, config.notes_form), kind=Baseline.ORACLE,
        source="the rule card", cache=cache),
}


def _learned(learned: tuple[str, int] | None) -> tuple[str, int]:
    if learned is None:
        raise UserError("the equal-token baseline is a run's own: it needs the run's notes and experience")
    return learned


def baseline(kind: str, config: RunConfig, *, shots: int | None = None, cache=None,
             learned: tuple[str, int] | None = None) -> Evaluation:
    """A baseline of `kind`; the run's own ones (equal-token) read `learned`."""
    known = Baseline.of(kind)
    if known is None:
        raise UserError(f"unknown baseline {kind!r}; choose from {', '.join(Baseline)}")
    return BASELINE_MAKERS[known](config, shots, cache, learned)


@dataclass(frozen=True)
class SentenceEffect:
    sentence: int
    text: str
    accuracy_without: float
    change: float  # accuracy without the sentence minus accuracy with the notes whole
    answers_changed: int


def ablate(config: RunConfig, notes: str, *, source: str, cache=None) -> tuple[Evaluation, list[Evaluation],
                                                                              list[SentenceEffect]]:
    """The notes scored whole, then once without each numbered sentence (iml_core.attribution)."""
    units = note_units(notes)
    if not units:
        raise UserError("the notes are empty: there is no sentence to leave out")
    # The whole notes laid out as the shortened ones are, one sentence a line, so only the removal differs.
    whole = score_notes(config, "\n".join(units), kind="ablation", source=source, cache=cache)
    without, effects = [], []
    for number, text in enumerate(units, start=1):
        rest = "\n".join(u for i, u in enumerate(units, start=1) if i != number)
        scored = score_notes(config, rest, kind="ablation", source=source, cache=cache, removed_sentence=number)
        changed = sum(a.predicted != b.predicted for a, b in zip(whole.predictions, scored.predictions, strict=True))
        without.append(scored)
        effects.append(SentenceEffect(number, text, scored.accuracy, scored.accuracy - whole.accuracy, changed))
    return whole, without, effects


def run_config(run: dict) -> RunConfig:
    """The settings a run's baselines and ablations are computed with: the run's own, from no notes."""
    return RunConfig.from_dict(run["config"]).replace(initial_notes="")


def baseline_key(config: RunConfig) -> RunConfig:
    """What a run's baselines depend on: its task, agent, model, seed, eval split and note cap (the
    in-context examples), not how it learns (the settings marked `learning`) or what it may spend."""
    how_it_learns = {name: getattr(DEFAULTS, name) for name, setting in RUN_SETTINGS.items()
                     if setting.learning or setting.part == "budget"}
    return config.replace(**how_it_learns, cache=True)


def shared_baselines(configs) -> list[RunConfig]:
    """One config per set of baselines that runs of these configs share (baselines_job computes
    each set once)."""
    return list({baseline_key(config): config for config in configs}.values())


def applicable_baselines(config: RunConfig, learned: bool = True) -> list[str]:
    """Every baseline that exists for a run's task (oracle notes need a rule card) and, once it
    has learned a step (`learned`), for the run itself (equal-token)."""
    return [kind for kind in Baseline if (kind is not Baseline.ORACLE or build_task(config).rule_card)
            and (learned or not kind.of_the_run)]


def learned_so_far(store, run_id: int) -> tuple[str, int] | None:
    """A run's last notes and how many training samples it had seen by then; None before its first step."""
    steps, config = store.steps(run_id), RunConfig.from_dict(store.run(run_id)["config"])
    if not steps or steps[-1]["step"] == 0:
        return None
    return steps[-1]["notes"], steps[-1]["step"] * config.accumulation * config.batch_size


def compute_baselines(store, run_id: int, kinds=None, shots: int | None = None,
                      layouts=None) -> list[tuple[int, Evaluation]]:
    """Computes and stores a run's baselines (all that apply, or `kinds`), in the run's prompt
    layout or in each of `layouts`, to compare them; (evaluation id, evaluation) each. Only those in
    the run's own layout count as its baselines (Store.baselines)."""
    run = store.run(run_id)
    moved = task_moved(run)
    if moved:
        raise UserError(moved.replace("going on", "baselines on what it is now"))
    config = run_config(run)
    layouts = list(dict.fromkeys(layouts or [config.prompt_layout]))
    if not config.uses_model and layouts != [config.prompt_layout]:
        raise UserError(f"run {run_id} is the {AGENTS[config.agent].label}'s, which reads no prompt: prompt layouts "
                        "apply to a run of a model; leave out --prompt-layout")
    done = []
    learned = learned_so_far(store, run_id)
    for kind in kinds or applicable_baselines(config, learned is not None):
        # The majority class asks no model: once, stored as the run's own.
        for layout in layouts if Baseline(kind).asks_model else [config.prompt_layout]:
            scored = config.replace(prompt_layout=layout).check()
            evaluation = baseline(kind, scored, shots=shots, cache=store.responses, learned=learned)
            done.append((store.save_evaluation(evaluation, scored, run_id=run_id), evaluation))
    return done


def missing_baselines(store, run_id: int) -> list[str]:
    """The baselines a run lacks: those it shares and its own (equal-token)."""
    config = run_config(store.run(run_id))
    stored = set(store.baselines([run_id])["kind"])
    learned = learned_so_far(store, run_id) is not None
    return [kind for kind in applicable_baselines(config, learned) if kind not in stored]


def baselines_job(store, run_ids, poll_seconds: float = 0.5) -> Callable[[], None]:
    """The missing baselines of some runs as one job to run beside them (RunManager.run_beside).
    The shared ones come first, and once per set of runs that differ only in how they learn (on the
    first of them): they do not depend on the learning. Each run's own (equal-token) waits for the
    run to end, because it reads the run's last notes; computed mid-run it would score notes the run
    has since revised, or none at all before its first step. One run's failure does not stop the
    others'."""
    firsts = {}
    for run_id in run_ids:
        firsts.setdefault(baseline_key(run_config(store.run(run_id))), run_id)

    def work() -> None:
        failures = []

        def compute_missing(run_id: int, own: bool) -> None:
            try:
                missing = [kind for kind in missing_baselines(store, run_id) if Baseline(kind).of_the_run == own]
                if missing:
                    compute_baselines(store, run_id, missing)
            except IMLError as e:
                failures.append(f"run {run_id}: {e}")

        for run_id in firsts.values():
            compute_missing(run_id, own=False)
        for run_id in run_ids:
            while store.run(run_id)["status"] in GOING:
                time.sleep(poll_seconds)
            compute_missing(run_id, own=True)
        if failures:
            raise RunFailed("the baselines of " + "; ".join(failures))

    return work


@dataclass(frozen=True)
class BaselinePlan:
    """What computing the missing baselines of some runs would take, told before it is done."""
    missing: dict  # run id -> the kinds it lacks
    model_calls: int  # at most (the response cache may answer some)
    tokens: int  # estimated from the runs' own evaluation calls so far
    cost: float


def plan_baselines(store, run_ids) -> BaselinePlan:
    missing = {run_id: kinds for run_id in run_ids if (kinds := missing_baselines(store, run_id))}
    calls = tokens = 0
    cost = 0.0
    for run_id, kinds in missing.items():
        config = run_config(store.run(run_id))
        if not config.uses_model:
            continue  # the rule learner and the majority class call no model
        asked = config.eval_size * sum(Baseline(kind).asks_model for kind in kinds)
        per_call_in, per_call_out = store.mean_call_tokens(run_id, PhaseName.EVAL)
        calls += asked
        tokens += round(asked * (per_call_in + per_call_out))
        cost += asked * (per_call_in * config.price_in + per_call_out * config.price_out) / 1e6
    return BaselinePlan(missing, calls, tokens, cost)


def ablate_run(store, run_id: int, step: int, eval_size: int | None = None):
    """Ablates a run's notes at a step with the run's own agent and split, and stores every
    evaluation; (whole's id, whole, [(id, effect)])."""
    config = run_config(store.run(run_id))
    if eval_size is not None:
        config = config.replace(eval_size=eval_size).check()
    notes = store.notes_at(run_id, step)
    whole, without, effects = ablate(config, notes, source=f"run {run_id} step {step}", cache=store.responses)
    whole_id = store.save_evaluation(whole, config, run_id=run_id, step=step)
    ids = [store.save_evaluation(e, config, run_id=run_id, step=step) for e in without]
    return whole_id, whole, list(zip(ids, effects, strict=True))


def ablation_calls(config: RunConfig, notes: str) -> int:
    """Model calls an ablation asks at most: the notes whole and without each line, each over the
    eval split; none for the rule learner."""
    return (len(note_units(notes)) + 1) * config.eval_size if config.uses_model else 0


def score_and_store(store, config: RunConfig, notes: str, *, run_id: int | None = None, step: int | None = None,
                    kind: str = "notes", source: str | None = None) -> tuple[int, Evaluation]:
    """score_notes, stored: transfer when the notes are a run's and the config another agent, model or task."""
    source = source or (f"run {run_id} step {step}" if run_id is not None else "text")
    scored = score_notes(config, notes, kind=kind, source=source, cache=store.responses)
    return store.save_evaluation(scored, config, run_id=run_id, step=step), scored
