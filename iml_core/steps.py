"""Where a run's steps are computed: in this process (local_steps), or on a cluster
(iml_core.cluster), which runs agent_steps on a worker. Either way the steps are committed by
the process that owns the database (iml_core.runner.execute_run)."""

from __future__ import annotations

import threading
from typing import Callable, Iterator, Protocol

from iml_core.budget import SWEEP_BUDGETS, Budget, Limits
from iml_core.builders import build_agent, build_task
from iml_core.config import RunConfig
from iml_core.learner import StepRecord, learning_steps
from iml_core.progress import WATCHES, StepWatch
from iml_core.store import Store


class StepSource(Protocol):
    """Yields step `after_step + 1` onwards (step 0 first when None); it may stop early once
    `cancel` is set."""

    def __call__(self, store: Store, run_id: int, config: RunConfig, after_step: int | None, notes: str | None,
                 cancel: threading.Event | None) -> Iterator[StepRecord]: ...


def agent_steps(config: RunConfig, after_step: int | None, notes: str | None, *, state: str | None = None, cache=None,
                on_retry: Callable[[str | None], None] | None = None,
                watch: StepWatch | None = None, budget: Budget | None = None) -> Iterator[StepRecord]:
    """A run's steps computed in this process, wherever that is (here, or on a Ray worker), from
    the notes and learner `state` of step `after_step` (iml_core.learner.learning_steps): `cache`
    answers repeated model calls, `on_retry` hears the backend's retry notices, `watch` where a
    step is, `budget` stops it at its limits."""
    task = build_task(config)
    agent = build_agent(config, task, cache=cache, on_retry=on_retry)
    yield from learning_steps(task, agent, config, after_step=after_step, notes=notes, state=state, watch=watch,
                              budget=budget)


def run_budget(store: Store, run_id: int, config: RunConfig) -> Budget | None:
    """The run's own limits, over what its committed steps spent, within its sweep's budget if it has
    one (iml_core.budget.SWEEP_BUDGETS); None when neither limits it."""
    sweep = SWEEP_BUDGETS.of(str(store.path), run_id)
    limits = Limits.of(config)
    if not limits and sweep is None:
        return None
    return Budget(limits, store.run_spent(run_id), parent=sweep, what=f"run {run_id}")


def local_steps(store: Store, run_id: int, config: RunConfig, after_step: int | None, notes: str | None,
                cancel: threading.Event | None) -> Iterator[StepRecord]:
    with WATCHES.watching(run_id) as watch:  # the Live page reads where the step is (iml_core.progress)
        state = None if after_step is None else store.learner_state(run_id, after_step)
        yield from agent_steps(config, after_step, notes, state=state, cache=store.responses,
                               on_retry=lambda notice: store.set_retrying(run_id, notice), watch=watch,
                               budget=run_budget(store, run_id, config))
