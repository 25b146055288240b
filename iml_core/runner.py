"""A run from its creation to its end: checked and stored, executed (or resumed) step by step with
every step committed, and summarised. The command line executes a run in its own process; the
dashboard through iml_core.manager, in worker threads of its server process.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from iml_core.agents import Agent
from iml_core.builders import prepare_run, task_moved
from iml_core.config import RunConfig
from iml_core.errors import BudgetReached, IMLError, UserError
from iml_core.learner import StepRecord
from iml_core.prompts import LEARNER_PROMPTS, PROMPTS, RULE_PROMPTS
from iml_core.registry import LEARNERS
from iml_core.status import RESUMABLE, Status
from iml_core.steps import StepSource, local_steps
from iml_core.store import Store
from iml_core.store.integrity import LostSteps
from iml_core.tasks import Task

log = logging.getLogger(__name__)


def create_run(store: Store, config: RunConfig, parent: tuple[int, int] | None = None,
               study: str | None = None, prepared: tuple[Task, Agent] | None = None) -> int:
    """Checks everything that can be checked before a run starts; a bad setting writes nothing.
    `parent` (run id, step) marks a fork; `study` names a group of runs queued together; `prepared`
    is the config's task and agent when the caller built them already (prepare_run)."""
    task, agent = prepared or prepare_run(config)
    model_file = getattr(getattr(agent, "backend", None), "path", None)
    if model_file is not None:  # the file, not the name: a listed name may later mean another file
        config = config.replace(model=str(model_file))
    return store.create_run(config, task_name=task.name, task_source=task.source,
                            agent_description=agent.description,
                            prompts=_prompts(config) if config.uses_model else None, parent=parent, study=study)


def _prompts(config: RunConfig) -> dict:
    """The prompts a run of a model asks, stored with it: an IML run stores what it always did."""
    asked = {**PROMPTS, **LEARNER_PROMPTS} if LEARNERS[config.learner].own_prompts else PROMPTS
    return {**asked, **RULE_PROMPTS} if config.notes_form == "rule" else asked


def fork_config(store: Store, run_id: int, step: int, **changes) -> RunConfig:
    """A new run's settings: the old run's, changed as asked, starting from its notes at `step`."""
    old = RunConfig.from_dict(store.run(run_id)["config"])
    return old.replace(initial_notes=store.notes_at(run_id, step), **changes)


def execute_run(store: Store, run_id: int, *, cancel: threading.Event | None = None,
                on_step: Callable[[StepRecord], None] | None = None, source: StepSource = local_steps) -> dict:
    """Runs (or resumes) a run to its end, committing every step here, wherever the steps are
    computed; returns its summary. `cancel` stops it after the step in flight."""
    run = store.run(run_id)
    config = RunConfig.from_dict(run["config"])
    hole = store.hole(run_id)
    if hole is not None:  # resumed from its first missing step: what follows a hole grew from it
        log.warning("%s; it goes on from step %s, and its steps from there are computed again",
                    hole.describe(), hole.first)
        store.drop_steps_from(run_id, hole.first)
    done = store.steps(run_id)
    after_step, notes = (done[-1]["step"], done[-1]["notes"]) if done else (None, None)
    store.set_status(run_id, Status.RUNNING)
    last = after_step
    try:
        if after_step is None or after_step < config.steps:
            steps = source(store, run_id, config, after_step, notes, cancel)
            try:
                for record in steps:
                    store.save_step(run_id, record)
                    last = record.step
                    if on_step is not None:
                        on_step(record)
                    if cancel is not None and cancel.is_set():
                        break
            finally:
                steps.close()  # a cluster source cancels its remote task here
        if last is None or last < config.steps:
            if cancel is None or not cancel.is_set():
                raise RuntimeError(f"the steps stopped after step {last} of {config.steps} without being cancelled")
            store.set_status(run_id, Status.CANCELLED)
            return run_summary(store, run_id)
        hole = store.hole(run_id)
        if hole is not None:  # never `completed` with a hole: it stays resumable from there
            raise LostSteps(f"{hole.describe()} in {store.path}, though every step was committed: the run is not "
                            f"complete. Resume it (`iml resume {run_id}`) to compute it again from step {hole.first}")
    except BudgetReached as e:  # an outcome the user asked for, not a failure: the summary says it
        _record_stop(store, run_id, Status.BUDGET_REACHED, str(e))
        return run_summary(store, run_id)
    except IMLError as e:
        _record_stop(store, run_id, Status.FAILED, str(e))
        raise
    except KeyboardInterrupt:
        _record_stop(store, run_id, Status.CANCELLED, "stopped with Ctrl-C")
        raise
    except BaseException as e:
        _record_stop(store, run_id, Status.FAILED, f"{type(e).__name__}: {e}")
        raise
    store.set_status(run_id, Status.COMPLETED)
    return run_summary(store, run_id)


def _record_stop(store: Store, run_id: int, status: Status, error: str) -> None:
    """Best effort: when the database itself is what failed (a full disk), the status cannot be
    written either; the error still reaches the caller, and the next start marks the run
    `interrupted`, so it can be resumed."""
    try:
        store.set_status(run_id, status, error)
    except Exception:
        log.exception("run %s stopped %s (%s), and writing that status failed too", run_id, status.value, error)



def raise_limits(store: Store, run_id: int, limits: dict) -> None:
    """New limits (settings of part "budget") for a stopped run, before it resumes; the others keep theirs."""
    config = RunConfig.from_dict(store.run(run_id)["config"])
    store.set_limits(run_id, config.replace(**limits).check())


def check_resumable(store: Store, run_id: int) -> None:
    run = store.run(run_id)
    # A run stored `completed` with a hole (before the runner checked for one) resumes from the hole.
    if run["status"] not in RESUMABLE and not (run["status"] == Status.COMPLETED and store.hole(run_id)):
        raise UserError(f"run {run_id} is {run['status']}; only {', '.join(RESUMABLE)} runs can be resumed")
    moved = task_moved(run)
    if moved:
        raise UserError(moved)


def run_summary(store: Store, run_id: int) -> dict:
    run = store.run(run_id)
    return {
        "run_id": run_id,
        "status": run["status"],
        "steps": run["steps_done"],
        "final_eval_accuracy": run["final_eval_accuracy"],
        "best_eval_accuracy": run["best_eval_accuracy"],
        "error": run["error"],
        "db": str(store.path),
    }
