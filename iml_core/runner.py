"""Starting, executing and summarising runs: the glue between a config, a task, an agent and the store.

The command line executes a run in its own process; the dashboard executes runs in worker threads
of its server process (DESIGN.md section 4) through RunManager.
"""

from __future__ import annotations

import threading
from typing import Callable

from iml_core.agents import Agent
from iml_core.agents.offline import OfflineRuleLearner
from iml_core.config import RunConfig
from iml_core.errors import UserError
from iml_core.learner import StepRecord, learning_steps
from iml_core.store import Store
from iml_core.tasks import Task, load_task


def build_task(config: RunConfig) -> Task:
    task = load_task(config.task, config.label_column, config.label_noise)
    most = len(task.samples) - config.batch_size
    if config.eval_size > most:
        raise UserError(
            f"eval_size {config.eval_size} leaves fewer than batch_size ({config.batch_size}) of the "
            f"{len(task.samples)} samples of {task.name} for training; use an eval_size of at most {most}")
    return task


def build_agent(config: RunConfig, task: Task) -> Agent:
    if config.agent == "offline":
        return OfflineRuleLearner(task.attributes, task.classes)
    raise UserError("the LLM agent needs a model backend, which this version does not have yet; use --agent offline")


def create_run(store: Store, config: RunConfig) -> int:
    """Checks everything that can be checked before a run starts; a bad setting writes nothing."""
    config.check()
    task = build_task(config)
    agent = build_agent(config, task)
    return store.create_run(config, task_name=task.name, task_source=task.source,
                            agent_description=agent.description)


def execute_run(store: Store, run_id: int, *, cancel: threading.Event | None = None,
                on_step: Callable[[StepRecord], None] | None = None) -> dict:
    """Runs (or resumes) a run to its end, committing every step; returns its summary.
    `cancel` stops it after the step in flight."""
    run = store.run(run_id)
    config = RunConfig.from_dict(run["config"])
    done = store.steps(run_id)
    after_step, notes = (done[-1]["step"], done[-1]["notes"]) if done else (0, None)
    store.set_status(run_id, "running")
    try:
        task = build_task(config)
        agent = build_agent(config, task)
        if not done or after_step < config.steps:
            for record in learning_steps(task, agent, config, after_step=after_step, notes=notes):
                store.save_step(run_id, record)
                if on_step is not None:
                    on_step(record)
                if cancel is not None and cancel.is_set() and record.step < config.steps:
                    store.set_status(run_id, "cancelled")
                    return run_summary(store, run_id)
    except UserError as e:
        store.set_status(run_id, "failed", str(e))
        raise
    except KeyboardInterrupt:
        store.set_status(run_id, "cancelled", "stopped with Ctrl-C")
        raise
    except BaseException as e:
        store.set_status(run_id, "failed", f"{type(e).__name__}: {e}")
        raise
    store.set_status(run_id, "completed")
    return run_summary(store, run_id)


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


class RunManager:
    """Runs in worker threads of this process, each writing through the shared store."""

    def __init__(self, store: Store):
        self.store = store
        self._threads: dict[int, threading.Thread] = {}
        self._cancels: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, config: RunConfig) -> int:
        run_id = create_run(self.store, config)
        cancel = threading.Event()
        thread = threading.Thread(target=self._work, args=(run_id, cancel), name=f"iml-run-{run_id}", daemon=True)
        with self._lock:
            self._threads[run_id], self._cancels[run_id] = thread, cancel
        thread.start()
        return run_id

    def _work(self, run_id: int, cancel: threading.Event) -> None:
        try:
            execute_run(self.store, run_id, cancel=cancel)
        except Exception:
            pass  # execute_run stored the failure with its message on the run

    def cancel(self, run_id: int) -> None:
        with self._lock:
            event = self._cancels.get(run_id)
        if event is not None:
            event.set()

    def active(self) -> list[int]:
        with self._lock:
            return [run_id for run_id, thread in self._threads.items() if thread.is_alive()]

    def join(self, timeout: float | None = None) -> None:
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)
