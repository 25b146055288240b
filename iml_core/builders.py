"""What a run is made of, built from its settings: its task and its agent (with the model backend
the agent calls). Below both the run lifecycle (runner, manager) and the evaluations, which build
theirs the same way.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Callable

from iml_core.agents import Agent
from iml_core.config import RunConfig
from iml_core.errors import IMLError, UserError
from iml_core.registry import AGENTS, BACKENDS
from iml_core.tasks import Task, load_task, rule_card_path

_tasks_lock = threading.Lock()


def _file_state(spec: str) -> tuple | None:
    """A CSV task's identity beyond its path: a file changed in place is parsed again, and so is
    one whose rule card beside it was added, changed or removed."""
    try:
        stat = Path(spec).stat()
    except OSError:
        return None  # a preset, a generated task, or a missing file: load_task names the problem
    try:
        card = rule_card_path(spec).stat()
    except OSError:
        card = None
    return (stat.st_mtime_ns, stat.st_size, os.path.realpath(spec),
            card and (card.st_mtime_ns, card.st_size))


@functools.lru_cache(maxsize=16)
def _load(spec: str, label_column: str, label_noise: float | None, file_state: tuple | None) -> Task:
    return load_task(spec, label_column, label_noise)


def task_moved(run: dict) -> str | None:
    """Why a stored run's settings no longer build the data it learned from (a CSV changed since,
    or a preset generated differently by an earlier release), as a sentence; None when they do."""
    stored = run.get("task_source")
    if not stored:
        return None
    now = build_task(RunConfig.from_dict(run["config"])).source
    if stored == now:
        return None
    return (f"run {run['id']}'s task {run['task']} is no longer the data it learned from (it was {stored}, it is "
            f"now {now}); its stored steps stay readable, but going on would mix two data sets: start a new run")


def build_task(config: RunConfig) -> Task:
    """The run's task, parsed or generated once per identity (its spec, label column, noise, and a
    CSV file's and its rule card's size and time) and shared: a Task is frozen. Checks that the eval split leaves a
    minibatch to learn from."""
    with _tasks_lock:  # one parse of a large CSV, not one per thread asking at once
        task = _load(config.task, config.label_column, config.label_noise, _file_state(config.task))
    most = len(task.samples) - config.batch_size
    if config.eval_size > most:
        raise UserError(
            f"an eval size of {config.eval_size} leaves fewer than the batch size ({config.batch_size}) of the "
            f"{len(task.samples)} samples of {task.name} for training; use an eval size of at most {most}")
    return task


def build_agent(config: RunConfig, task: Task, *, cache=None,
                on_retry: Callable[[str | None], None] | None = None) -> Agent:
    """The agent the config names; `cache` answers repeated model calls (when the config allows
    it), `on_retry` hears a remote backend's retry notices."""
    return AGENTS[config.agent].build(config, task, cache if config.cache else None, on_retry)


def check_config(config: RunConfig) -> Task:
    """What can be told of a run's settings without building it: the values, the task (parsed once
    and shared), and the backend's own cheap check (the model file and its header, llama.cpp built
    here, a base URL). Starts no server, loads no weights, sends nothing: pages call it on every
    rerun. IMLError naming the first problem; the task when there is none."""
    config.check()
    task = build_task(config)
    if config.uses_model:
        BACKENDS[config.backend].check(config)
    return task


def prepare_run(config: RunConfig) -> tuple[Task, Agent]:
    """A run's task and agent, built when the run is created: what only building tells (a file
    llama.cpp cannot load, a server that does not start) is refused before anything is stored."""
    task = check_config(config)
    return task, build_agent(config, task)


def check_run(config: RunConfig) -> list[str]:
    """Everything check_config finds wrong with a config, as sentences; [] when it may start."""
    problems = config.problems()
    if problems:
        return problems
    try:
        check_config(config)
    except IMLError as e:
        return [str(e)]
    return []
