"""Read-outs of stored runs for people: curves over seeds, stability, heat maps, time left,
alarms, trajectories. Pure pandas over what the store holds; the dashboard's pages and the
benchmarks call them, so that pages only lay them out.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from iml_core.agents import PhaseName
from iml_core.baseline_kinds import Baseline
from iml_core import comparing, formats
from iml_core.builders import build_task
from iml_core.errors import IMLError
from iml_core.registry import step_calls

# How many of a run's last evaluated steps its instability (their spread) is taken over.
INSTABILITY_WINDOW = 10


def eval_curve(steps: pd.DataFrame) -> pd.DataFrame:
    return steps.dropna(subset=["eval_accuracy"])[["run_id", "step", "eval_accuracy"]]


def instability(steps: pd.DataFrame, window: int = INSTABILITY_WINDOW) -> pd.Series:
    """Per run: the standard deviation of eval accuracy over its last `window` evaluations."""
    curve = eval_curve(steps)
    return curve.groupby("run_id")["eval_accuracy"].apply(lambda s: float(s.tail(window).std(ddof=0)))


REACHED_SHARE = 0.95  # a run has "got there" at its first eval within this share of its final accuracy


def settling(steps: pd.DataFrame, share: float = REACHED_SHARE) -> pd.DataFrame:
    """Per run (index run_id): the first step whose eval accuracy reached `share` of the run's final
    one (steps_to_reach), and the spread (std) of its evals from there on (spread_after). When every
    setting ends at 100%, these still tell them apart: how fast, and how steadily, each got there."""
    rows = []
    for run_id, curve in eval_curve(steps).sort_values("step").groupby("run_id"):
        final = float(curve["eval_accuracy"].iloc[-1])
        reached = curve[curve["eval_accuracy"] >= share * final - 1e-12]
        first = int(reached["step"].iloc[0])
        after = curve[curve["step"] >= first]["eval_accuracy"]
        rows.append({"run_id": run_id, "steps_to_reach": first, "spread_after": float(after.std(ddof=0))})
    return pd.DataFrame(rows, columns=["run_id", "steps_to_reach", "spread_after"]).set_index("run_id")


def heatmaps(runs: pd.DataFrame, steps: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Momentum x accumulation tables of the runs' means: final eval accuracy, steps to reach 95%
    of it, the spread of the evals after that, and the instability of the last evals."""
    table = runs.set_index("id").join(instability(steps).rename("instability")).join(settling(steps))
    table = table.dropna(subset=["final_eval_accuracy"])
    return {column: table.pivot_table(index="momentum", columns="accumulation", values=column, aggfunc="mean")
            for column in ("final_eval_accuracy", "steps_to_reach", "spread_after", "instability")}


def seconds_left(run: dict, steps: pd.DataFrame) -> float | None:
    """Time per step over the steps so far times the steps still to go; None before two steps."""
    done = steps[steps["step"] > 0]
    if len(done) < 2:
        return None
    times = pd.to_datetime(done["created_at"])
    per_step = (times.iloc[-1] - times.iloc[0]).total_seconds() / (len(done) - 1)
    return max(0.0, per_step * (run["steps_total"] - run["steps_done"]))


def seconds_per_step(call_seconds: dict[str, float], config) -> float | None:
    """A learning step's seconds for a config, on average over its steps, from the measured seconds
    of one call per phase (Store.call_seconds) and the calls its steps make (calls_per_run). None
    until every phase the run calls has been measured."""
    calls = {phase: n for phase, n in calls_per_run(config).items() if n}
    if any(phase not in call_seconds for phase in calls):
        return None
    return sum(n * call_seconds[phase] for phase, n in calls.items()) / config.steps


def calls_per_run(config) -> dict[str, int]:
    """The model calls a run of a model makes, per phase: step 0's eval, then each step's calls
    (iml_core.registry.step_calls: its answers unless the engine applies the notes, and what its
    learner asks, which for the bank grows with the samples its window holds), and an eval every E
    steps and after the last."""
    evals = len(range(0, config.steps + 1, config.eval_every)) + (config.steps % config.eval_every != 0)
    try:
        attributes = len(build_task(config).attributes)
    except IMLError:  # a task that does not load: the run says so before it starts
        attributes = 0
    calls: dict = {}
    for step in range(1, config.steps + 1):
        for phase, n in step_calls(config, attributes, step).items():
            calls[phase] = calls.get(phase, 0) + n
    return {**{phase: math.ceil(n) for phase, n in calls.items()}, PhaseName.EVAL: evals * config.eval_size}


@dataclass(frozen=True)
class Estimate:
    """What some runs will ask of a model before they start: at most, since the response cache
    answers repeated calls for free. Tokens and cost are None until the model has answered each
    phase here before (Store.call_tokens)."""
    calls: int
    tokens: int | None
    cost: float | None
    # One after another, at the seconds per call this model took here (Store.call_seconds); None
    # until it has answered each phase the runs call, or when no seconds were given.
    minutes: float | None = None

    def sentence(self) -> str:
        if not self.calls:
            return "These runs call no model: they cost nothing."
        said = f"At most {self.calls:,} model calls"
        if self.tokens is None:
            said += "; their tokens and cost are measured by this model's first run here"
        else:
            said += f", about {self.tokens:,} tokens and a cost of {self.cost:.4g} (at the prices set)"
        if self.minutes is not None:
            time = "under a minute" if self.minutes < 1 else f"about {self.minutes:,.0f} minutes"
            said += f"; {time} one run after another, at the seconds per call this model took here"
        return said + "."


# The baselines that ask a model each answer the run's eval split: the shared ones once per study's
# set of runs (`baselines`), the run's own (equal-token) once per run.
SHARED_MODEL_BASELINES = sum(kind.asks_model and not kind.of_the_run for kind in Baseline)
OWN_MODEL_BASELINES = sum(kind.asks_model and kind.of_the_run for kind in Baseline)


def estimate(configs, call_tokens: dict[str, tuple[float, float]], baselines=(),
             call_seconds: dict[str, float] | None = None) -> Estimate:
    """The calls, tokens and cost of some runs, and of the baselines of `baselines` (one config per
    set of baselines a study computes), from their settings and the model's measured mean tokens in
    and out per call and phase (Store.call_tokens); a baseline's call is priced as an eval call. With
    `call_seconds` (Store.call_seconds), the minutes too."""
    calls = tokens = 0
    cost = seconds = 0.0
    measured, timed = True, call_seconds is not None
    asked = [(config, calls_per_run(config)) for config in configs]
    asked += [(config, {PhaseName.EVAL: SHARED_MODEL_BASELINES * config.eval_size}) for config in baselines]
    asked += [(config, {PhaseName.EVAL: OWN_MODEL_BASELINES * config.eval_size})
              for config in (configs if baselines else ())]
    for config, per_phase in asked:
        if not config.uses_model:
            continue
        for phase, n in per_phase.items():
            calls += n
            if timed and n:
                timed = phase in call_seconds
                seconds += n * call_seconds.get(phase, 0.0)
            if phase not in call_tokens:
                measured = measured and n == 0
                continue
            tokens_in, tokens_out = call_tokens[phase]
            tokens += round(n * (tokens_in + tokens_out))
            cost += n * (tokens_in * config.price_in + tokens_out * config.price_out) / 1e6
    return Estimate(calls, tokens if measured else None, cost if measured else None, seconds / 60 if timed else None)


def baseline_words(baselines: pd.DataFrame) -> list[str]:
    """One line of words per height of a run's baseline lines (Store.baselines), highest first:
    what each measures, and which lie on top of each other, which a chart cannot show."""
    heights: dict[float, list] = {}
    for kind, rows in baselines.groupby("kind"):
        heights.setdefault(round(float(rows["accuracy"].mean()), 4), []).append((Baseline(kind), rows))
    lines = []
    for accuracy, kinds in sorted(heights.items(), reverse=True):
        said = []
        for kind, rows in kinds:
            meaning = kind.meaning
            if kind is Baseline.EQUAL_TOKEN and not rows["shots"].fillna(0).any():
                meaning = "the run's own samples in its notes' tokens, but not one sample fits them: the floor again"
            said.append(f"{kind.value}, {meaning}")
        together = f" ({len(kinds)} lines drawn as one)" if len(kinds) > 1 else ""
        lines.append(f"{formats.percent(accuracy)}{together}: " + "; ".join(said) + ".")
    return lines


def tokens_per_second(run: dict, steps: pd.DataFrame) -> float | None:
    """A run's model tokens (in and out) per second of its steps; None when it used no model."""
    tokens = run["tokens_in"] + run["tokens_out"]
    if not tokens:
        return None
    seconds = steps[[f"seconds_{phase}" for phase in PhaseName]].sum().sum()
    return tokens / max(float(seconds), 1e-9)


def cached_share(costs: pd.DataFrame) -> pd.DataFrame:
    """Per phase (Store.phase_costs): the prompt tokens the model was sent and the share of them
    llama.cpp took from its prompt cache (a shared prefix: the task, the notes or the rule scored)."""
    by_phase = costs.groupby("phase", sort=False)[["tokens_in", "tokens_cached"]].sum()
    by_phase = by_phase[by_phase["tokens_in"] > 0]
    return by_phase.assign(cached_share=by_phase["tokens_cached"] / by_phase["tokens_in"]).reset_index()


def trajectories(task, predictions: list[dict]) -> pd.DataFrame:
    """The training answers behind a step's revision as the agent lived them: minibatch (from 1),
    observation, answer (or the raw output when it named no class), the right class, correct."""
    texts = {s.id: s.text for s in task.samples}
    return pd.DataFrame([
        {"minibatch": p["minibatch"] + 1, "observation": texts.get(p["sample_id"], f"sample {p['sample_id']}"),
         "answer": p["predicted"] if p["predicted"] is not None else f"(invalid) {p['raw']}",
         "right class": p["label"], "correct": p["correct"]}
        for p in predictions if p["phase"] == PhaseName.INFER],
        columns=["minibatch", "observation", "answer", "right class", "correct"])


def sentence_table(units: list[str], usage: pd.DataFrame, ablation: pd.DataFrame) -> pd.DataFrame:
    """Each numbered sentence of the notes with what the answers cite (usage: Store.sentence_usage) next to
    what it carries (ablation: Store.ablation): the eval accuracy lost or gained without it."""
    used = {int(r.note_sentence): (int(r.right), int(r.wrong)) for r in usage.itertuples()}
    whole = ablation[ablation["removed_sentence"].isna()]["accuracy"]
    without = {int(r.removed_sentence): float(r.accuracy)
               for r in ablation.dropna(subset=["removed_sentence"]).itertuples()}
    rows = []
    for number, text in enumerate(units, start=1):
        right, wrong = used.get(number, (0, 0))
        change = without[number] - float(whole.iloc[0]) if number in without and len(whole) else None
        rows.append({"sentence": number, "text": text, "answers citing it": right + wrong,
                     "right when cited": right / (right + wrong) if right + wrong else None,
                     "accuracy change without it": change})
    return pd.DataFrame(rows, columns=["sentence", "text", "answers citing it", "right when cited",
                                       "accuracy change without it"])


def per_class_accuracy(per_class_json: str, phase: str = "eval") -> pd.DataFrame:
    counts = json.loads(per_class_json).get(phase, {})
    return pd.DataFrame([(name, right / total if total else math.nan, total)
                         for name, (right, total) in sorted(counts.items())], columns=["class", "accuracy", "samples"])


# --- alarms: steps where learning went wrong -----------------------------------------------------

COLLAPSE_SHARE = 0.5  # the notes kept less than this share of their words in one revision
DROP_POINTS = 0.10  # eval accuracy fell by more than this since the previous eval
STALL_STEPS = 5  # the notes did not change for this many steps in a row...
STALL_BELOW = 0.6  # ...while eval accuracy was below this
REPETITION_SHARE = 0.5  # the notes are mostly phrases said before in them (iml_core.diff.repetition)
ONE_CLASS_SHARE = 0.9  # this share of an eval's answers named the same class


def alarms(steps: pd.DataFrame, learners: frozenset[int] = frozenset()) -> pd.DataFrame:
    """One row per flagged step (run_id, step, kind, message) of any number of runs. A stall is
    flagged once, at the step its streak reaches STALL_STEPS; repetition and one class at the first
    step of each streak of them (steps stored before they were measured count as neither).
    `learners` are the runs of an agent that calls no model: their messages speak of a learner and
    give no model's advice."""
    columns = ["run_id", "step", "kind", "message"]
    if steps.empty:
        return pd.DataFrame(columns=columns)
    frame = steps.sort_values(["run_id", "step"]).reindex(columns=[
        "run_id", "step", "notes_words", "words_changed", "eval_accuracy", "notes_repetition", "eval_top_class",
        "eval_top_share"])
    by_run = frame.groupby("run_id", sort=False)
    frame["words_before"] = by_run["notes_words"].shift()
    evaluated = frame.dropna(subset=["eval_accuracy"]).copy()
    evaluated["eval_before"] = evaluated.groupby("run_id", sort=False)["eval_accuracy"].shift()
    frame["last_eval"] = by_run["eval_accuracy"].ffill()
    unchanged = (frame["words_changed"] == 0) & (frame["step"] > 0)
    streak_id = (~unchanged).groupby(frame["run_id"]).cumsum()
    frame["streak"] = unchanged.groupby([frame["run_id"], streak_id]).cumsum().where(unchanged, 0)

    def percent(values: pd.Series) -> pd.Series:
        return pd.Series([formats.percent(v) for v in values], index=values.index, dtype=object)

    def by_agent(rows: pd.DataFrame, learner: str, model: str) -> pd.Series:
        return pd.Series([learner if run_id in learners else model for run_id in rows["run_id"]], index=rows.index,
                         dtype=object)

    def whole(values: pd.Series) -> pd.Series:
        return pd.Series([str(int(v)) for v in values], index=values.index, dtype=object)

    collapsed = frame[(frame["words_before"] > 0) & (frame["notes_words"] < COLLAPSE_SHARE * frame["words_before"])]
    dropped = evaluated[evaluated["eval_before"] - evaluated["eval_accuracy"] > DROP_POINTS + 1e-12]
    stalled = frame[(frame["streak"] == STALL_STEPS) & (frame["last_eval"] < STALL_BELOW)]

    def streak_starts(rows: pd.DataFrame, flagged: pd.Series) -> pd.DataFrame:
        before = flagged.groupby(rows["run_id"], sort=False).shift(fill_value=False)
        return rows[flagged & ~before.astype(bool)]

    repetitive = streak_starts(frame, frame["notes_repetition"].astype(float) >= REPETITION_SHARE)
    one_class = streak_starts(evaluated, evaluated["eval_top_share"].astype(float) >= ONE_CLASS_SHARE)
    found = pd.concat([
        collapsed.assign(kind="collapse", message="the notes shrank from " + whole(collapsed["words_before"])
                         + " to " + whole(collapsed["notes_words"]) + " words"),
        dropped.assign(kind="drop", message="eval accuracy fell from " + percent(dropped["eval_before"]) + " to "
                       + percent(dropped["eval_accuracy"])),
        stalled.assign(kind="stall", message=f"the notes have not changed for {STALL_STEPS} steps while eval "
                       "accuracy is " + percent(stalled["last_eval"])),
        repetitive.assign(kind="repetition", message=percent(repetitive["notes_repetition"])
                          + " of the notes' 3-word phrases repeat earlier ones: " + by_agent(
                              repetitive, "the learner's lines restate each other",
                              "the model is repeating itself (try a repeat or frequency penalty)")),
        one_class.assign(kind="one class", message=percent(one_class["eval_top_share"]) + " of the eval answers "
                         "named " + one_class["eval_top_class"].astype(str) + ": " + by_agent(
                             one_class, "the learner is not telling the classes apart yet",
                             "the model is not telling the classes apart")),
    ])
    return found[columns].sort_values(["run_id", "step"], ignore_index=True)


def standing(flags: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """The alarms of one run that still hold at its latest step, for a warning on top of the page
    (the chart marks them all): one class and repetition while the latest eval or notes are still
    so, a stall while the notes are still unchanged, a drop while the eval is still below where it
    fell from, a collapse while the notes are still that short."""
    if flags.empty or steps.empty:
        return flags
    last, evaluated = steps.sort_values("step").iloc[-1], steps.dropna(subset=["eval_accuracy"]).sort_values("step")
    latest_eval = evaluated.iloc[-1] if len(evaluated) else None
    by_step = steps.set_index("step")

    def holds(flag) -> bool:
        if flag.kind == "one class":
            return latest_eval is not None and float(latest_eval["eval_top_share"] or 0) >= ONE_CLASS_SHARE
        if flag.kind == "repetition":
            return float(last["notes_repetition"] or 0) >= REPETITION_SHARE
        if flag.kind == "stall":
            return bool((by_step.loc[flag.step:, "words_changed"] == 0).all())
        if flag.kind == "drop":
            before = evaluated[evaluated["step"] < flag.step]["eval_accuracy"]
            return latest_eval is None or len(before) == 0 or latest_eval["eval_accuracy"] < before.iloc[-1] - 1e-12
        return last["notes_words"] <= by_step.loc[flag.step, "notes_words"]  # a collapse

    return flags[[holds(flag) for flag in flags.itertuples()]]


def alarm_counts(steps: pd.DataFrame) -> pd.Series:
    """Per run: its alarms as one short text ("2 drop, 1 stall"), for tables."""
    found = alarms(steps)
    if found.empty:
        return pd.Series(dtype=object)
    table = found.groupby(["run_id", "kind"]).size().unstack(fill_value=0)
    kinds = list(table.columns)
    return pd.Series([", ".join(f"{n} {kind}" for kind, n in zip(kinds, row, strict=True) if n)
                      for row in table.to_numpy()],
                     index=table.index, dtype=object)


TRUTH_POINTS = 200  # a score takes 1-2 ms: long runs are scored at this many evenly spaced steps


def truth_curve(scorer, steps: list[dict], most: int = TRUTH_POINTS) -> pd.DataFrame:
    """Rule recall, discovery rate and distractors cited by the notes per step (scorer:
    iml_core.truth); for runs longer than `most` steps, at `most` evenly spaced steps, the first and
    the last included."""
    if len(steps) > most:
        picked = sorted({round(i * (len(steps) - 1) / (most - 1)) for i in range(most)})
        steps = [steps[i] for i in picked]
    scores = [(s["step"], scorer.score(s["notes"])) for s in steps]
    return pd.DataFrame({"step": [step for step, _ in scores],
                         "rule_recall": [score.rule_recall for _, score in scores],
                         "discovery_rate": [score.discovery_rate for _, score in scores],
                         "distractors": [score.distractors for _, score in scores]})


def paper_curves(runs: pd.DataFrame, steps: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The paper's two figures from a study's runs: eval accuracy by momentum (runs with one
    minibatch per revision) and by accumulation (runs without momentum), mean and spread over seeds."""
    by_momentum = comparing.grouped_curves(runs[runs["accumulation"] == 1], steps, "momentum")
    by_accumulation = comparing.grouped_curves(runs[runs["momentum"] == 0.0], steps, "accumulation")
    return by_momentum, by_accumulation


def final_accuracy_by(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Final eval accuracy per group of runs sharing the values of `by` (usually all but the seed):
    mean, spread (std) and count, the runs evaluated (one not evaluated yet has no final accuracy)."""
    # A setting left unset (None) in some runs is a group of its own, not dropped.
    return runs.groupby(by, dropna=False)["final_eval_accuracy"].agg(["mean", "std", "count"]).reset_index()


def final_accuracy_by_cell(runs: pd.DataFrame) -> pd.DataFrame:
    """Final eval accuracy per momentum x accumulation cell: mean, spread (std) and runs."""
    return final_accuracy_by(runs, ["momentum", "accumulation"])


# A rung "applies" or "learns" its rule when the mean over seeds clears the floor by this much.
def run_report(run: dict, steps: pd.DataFrame, costs: pd.DataFrame, scorer=None) -> dict:
    """One run for scripts and notebooks, without SQL: its settings, and per step the accuracies,
    the notes' length and churn, rule recall, discovery rate and verdicts (with a `scorer`: tasks
    with a rule card), the alarms, and seconds, tokens and cost by phase. `steps` holds the notes
    (Store.steps_frame with notes); `costs` is Store.phase_costs."""
    flags = alarms(steps)
    by_step = {}
    for row in costs.itertuples(index=False):
        by_step.setdefault(int(row.step), {})[str(row.phase)] = {
            "seconds": float(row.seconds), "tokens_in": int(row.tokens_in), "tokens_out": int(row.tokens_out),
            "cost": float(row.cost)}

    def number(value):
        return None if value is None or pd.isna(value) else float(value)

    report_steps = []
    for row in steps.itertuples(index=False):
        step = {"step": int(row.step), "train_accuracy": number(row.train_accuracy),
                "eval_accuracy": number(row.eval_accuracy), "notes_words": int(row.notes_words),
                "words_changed": int(row.words_changed),
                "alarms": [{"kind": f.kind, "message": f.message} for f in flags.itertuples() if f.step == row.step],
                "phases": by_step.get(int(row.step), {})}
        if run["config"].get("notes_form") == "rule":  # both, named so that nobody takes one for the other
            step["rule_applied_accuracy"] = number(row.rule_eval_accuracy)
            step["model_applied_accuracy"] = number(row.model_eval_accuracy)
        if scorer is not None:
            score = scorer.score(row.notes)
            step["rule_recall"] = score.rule_recall
            step["discovery_rate"] = score.discovery_rate
            step["verdicts"] = {v.name: v.verdict for v in score.classes}
        report_steps.append(step)
    keep = ("id", "status", "error", "task", "agent_description", "steps_done", "steps_total",
            "final_eval_accuracy", "best_eval_accuracy", "tokens_in", "tokens_out", "cost", "study",
            "parent_run_id", "parent_step")
    return {**{name: run.get(name) for name in keep}, "config": run["config"],
            "created_at": str(run["created_at"]), "steps": report_steps}
