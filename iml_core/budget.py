"""Budgets: limits on what a run, or a sweep as a whole, may spend: cost (in the configured price
units), tokens, model calls and wall-clock minutes.

A model call is checked before it is made: the run stops at the first call that would pass a limit,
judged by what this phase's calls cost so far (the first call of a run is always allowed), and at
the first step that begins past the minutes. A call answered by the response cache costs nothing
and is never stopped. The step in flight is not committed, but every call it made is in the response
cache, so a resume with a higher limit answers them again for free and ends exactly where a run
without a limit would have.

What a run has spent comes from what its committed steps stored (iml_core.store): the calls a
model answered, their tokens and cost, and the steps' seconds, to which the running execution adds
its own time. A sweep's budget adds up what its runs spend from the moment it was submitted, in the
process that submitted it (a run resumed later has only its own limits).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field

from iml_core.errors import BudgetReached

SWEEP = "sweep_"  # a sweep's limit is its run's setting with this in front: sweep_max_cost


@dataclass(frozen=True)
class Limits:
    """What a budget limits, named once: a limit's setting is `max_` and its name (max_cost), its
    flag the same with dashes (--max-cost), and a sweep's has SWEEP in front (config.SETTINGS)."""
    cost: float | None = None
    tokens: int | None = None
    calls: int | None = None
    minutes: float | None = None

    @staticmethod
    def setting(part: str, prefix: str = "") -> str:
        return f"{prefix}max_{part}"

    @staticmethod
    def flag(part: str, prefix: str = "") -> str:
        return "--" + Limits.setting(part, prefix).replace("_", "-")

    @classmethod
    def of(cls, settings, prefix: str = "") -> Limits:
        """The limits among a RunConfig's settings, or a Submission's (prefix SWEEP)."""
        return cls(**{part: getattr(settings, cls.setting(part, prefix), None) for part in LIMITS})

    def __bool__(self) -> bool:
        return any(getattr(self, part) is not None for part in LIMITS)


LIMITS = tuple(f.name for f in dataclasses.fields(Limits))


@dataclass
class Spent:
    calls: int = 0  # model calls answered by a model (not the cache)
    tokens: int = 0  # in and out
    cost: float = 0.0
    seconds: float = 0.0


@dataclass
class _Means:
    """What a phase's calls cost so far, to judge the next one by."""
    calls: int = 0
    tokens: int = 0
    cost: float = 0.0

    def expected(self) -> tuple[float, float]:
        return (self.tokens / self.calls, self.cost / self.calls) if self.calls else (0.0, 0.0)


@dataclass(frozen=True)
class Reservation:
    """What before_call set aside for one call in each budget it counts against (the run's, and its
    sweep's), handed back to `called` so that each budget releases exactly its own."""
    held: tuple[tuple[Budget, float, float], ...]


@dataclass
class Budget:
    limits: Limits
    spent_before: Spent = field(default_factory=Spent)  # by earlier executions (a resumed run) or runs
    parent: Budget | None = None  # a sweep's budget, which every run of it also spends from
    what: str = "the run"  # how the message names whose budget it is
    sweep: bool = False  # shared by the runs of a sweep, which a resume does not bring back

    def __post_init__(self):
        self._lock = threading.Condition()
        self._started = time.monotonic()
        self._phases: dict[str, _Means] = {}
        self._calls = self._tokens = 0
        self._cost = 0.0
        self._reserved_calls = self._reserved_tokens = 0
        self._reserved_cost = 0.0

    def spent(self) -> Spent:
        with self._lock:
            return Spent(self.spent_before.calls + self._calls, self.spent_before.tokens + self._tokens,
                         self.spent_before.cost + self._cost,
                         self.spent_before.seconds + time.monotonic() - self._started)

    def before_step(self) -> None:
        """Stops a run whose minutes are up before it begins another step."""
        self._check_minutes()
        if self.parent is not None:
            self.parent.before_step()

    def before_call(self, phase: str) -> Reservation:
        """Reserves the call's expected tokens and cost in this budget and its sweep's, or raises
        BudgetReached when it would pass a limit. Calls in flight at once (parallel inference) count
        against the limit together; while no call has been measured, one goes alone, so that the
        calls sent at once are judged by what it cost."""
        held = [self._reserve(phase)]
        if self.parent is not None:
            try:
                held.append(self.parent._reserve(phase))
            except BudgetReached:
                self._release(*held[0][1:])
                raise
        return Reservation(tuple(held))

    def called(self, reservation: Reservation, phase: str, tokens: int, cost: float) -> None:
        """A call answered by the model (a failed one too: it was made), with what it spent."""
        for budget, reserved_tokens, reserved_cost in reservation.held:
            budget._spend(phase, tokens, cost)
            budget._release(reserved_tokens, reserved_cost)

    def _reserve(self, phase: str) -> tuple[Budget, float, float]:
        self._check_minutes()
        with self._lock:
            priced = self.limits.tokens is not None or self.limits.cost is not None
            while priced and self._expected(phase) is None and self._reserved_calls:
                self._lock.wait()  # the first measured call says what the others will cost
            tokens, cost = self._expected(phase) or (0.0, 0.0)
            spent = self.spent_before
            limits = self.limits
            if limits.calls is not None and spent.calls + self._calls + self._reserved_calls + 1 > limits.calls:
                self._stop(f"{{whose}} {limits.calls:,} model calls are spent", "calls")
            if limits.tokens is not None and \
                    spent.tokens + self._tokens + self._reserved_tokens + tokens > limits.tokens:
                self._stop(f"the next {phase} call (about {tokens:,.0f} tokens) would pass {{whose}} limit of "
                           f"{limits.tokens:,} tokens ({spent.tokens + self._tokens:,} spent)", "tokens")
            if limits.cost is not None and spent.cost + self._cost + self._reserved_cost + cost > limits.cost:
                self._stop(f"the next {phase} call (about {cost:.6g}) would pass {{whose}} cost limit of "
                           f"{limits.cost:g} "
                           f"({spent.cost + self._cost:.6g} spent)", "cost")
            self._reserved_calls += 1
            self._reserved_tokens += tokens
            self._reserved_cost += cost
            return self, tokens, cost

    def _expected(self, phase: str) -> tuple[float, float] | None:
        """What the next call of a phase will spend, from this phase's calls, else all calls here,
        else what the run's earlier executions spent per call; None before any was measured."""
        for means in (self._phases.get(phase), self._overall(),
                      _Means(self.spent_before.calls, self.spent_before.tokens, self.spent_before.cost)):
            if means is not None and means.calls:
                return means.expected()
        return None

    def _spend(self, phase: str, tokens: int, cost: float) -> None:
        with self._lock:
            means = self._phases.setdefault(phase, _Means())
            means.calls, means.tokens, means.cost = means.calls + 1, means.tokens + tokens, means.cost + cost
            self._calls, self._tokens, self._cost = self._calls + 1, self._tokens + tokens, self._cost + cost

    def _release(self, tokens: float, cost: float) -> None:
        with self._lock:
            self._reserved_calls = max(0, self._reserved_calls - 1)
            self._reserved_tokens = max(0.0, self._reserved_tokens - tokens)
            self._reserved_cost = max(0.0, self._reserved_cost - cost)
            self._lock.notify_all()

    def _overall(self) -> _Means:
        return _Means(sum(m.calls for m in self._phases.values()), sum(m.tokens for m in self._phases.values()),
                      sum(m.cost for m in self._phases.values()))

    def _check_minutes(self) -> None:
        minutes = self.limits.minutes
        if minutes is not None and self.spent().seconds >= 60 * minutes:
            self._stop(f"{{whose}} {minutes:g} minutes are up", "minutes")

    def _stop(self, why: str, part: str) -> None:
        """`why` says "{whose}" where the limit's owner goes: the run's own, or its sweep's."""
        if self.sweep:
            raise BudgetReached(f"budget reached: {self.what} stopped because {why.format(whose=SWEEPS)} "
                                f"({Limits.flag(part, SWEEP)}); its runs keep their finished steps, and each resumes "
                                "with only its own limits")
        raise BudgetReached(f"budget reached: {self.what} stopped because {why.format(whose='its')}; its finished "
                            f"steps are kept. Resume it with a higher {Limits.flag(part)} to go on from there")


SWEEPS = "the sweep's"  # whose limit it was, in a sweep's message


class SweepBudgets:
    """The budget each run of a sweep shares with the others, by database and run id, from the
    sweep's submission until the run's first execution ends: a resumed run has only its own limits."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_run: dict[tuple[str, int], Budget] = {}

    def share(self, database: str, run_ids, budget: Budget) -> None:
        with self._lock:
            self._by_run.update({(database, run_id): budget for run_id in run_ids})

    def of(self, database: str, run_id: int) -> Budget | None:
        with self._lock:
            return self._by_run.get((database, run_id))

    def forget(self, database: str, run_id: int) -> None:
        with self._lock:
            self._by_run.pop((database, run_id), None)


SWEEP_BUDGETS = SweepBudgets()


def spent_against(limits: Limits, spent: Spent) -> str:
    """What a run spent of each of its limits, in words: "0.12 of 0.50 cost · 3.1 of 10 minutes"."""
    parts = []
    if limits.cost is not None:
        parts.append(f"{spent.cost:.4g} of {limits.cost:g} cost")
    if limits.tokens is not None:
        parts.append(f"{spent.tokens:,} of {limits.tokens:,} tokens")
    if limits.calls is not None:
        parts.append(f"{spent.calls:,} of {limits.calls:,} model calls")
    if limits.minutes is not None:
        left = max(0.0, limits.minutes - spent.seconds / 60)
        parts.append(f"{spent.seconds / 60:.1f} of {limits.minutes:g} minutes ({left:.1f} left)")
    return " · ".join(parts)


def spent_so_far(committed: Spent, step=None) -> Spent:
    """What a run has spent: its committed steps' spend, and the tokens and seconds of the step in
    flight (an iml_core.progress.StepProgress); that step's calls count once it commits."""
    if step is None:
        return committed
    return Spent(committed.calls, committed.tokens + step.tokens_in + step.tokens_out, committed.cost,
                 committed.seconds + step.step_seconds)
