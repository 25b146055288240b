"""Starting, executing and summarising runs: the glue between a config, a task, an agent and the store.

The command line executes a run in its own process; the dashboard executes runs in worker threads
of its server process (docs/ARCHITECTURE.md §4) through RunManager.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Protocol, Sequence

from iml_core.agents import Agent
from iml_core.agents.offline import OfflineRuleLearner
from iml_core.backends import BACKENDS, Backend
from iml_core.backends.llama_server import signal_name
from iml_core.config import RunConfig
from iml_core.errors import IMLError, RunFailed, UserError
from iml_core.learner import StepRecord, learning_steps
from iml_core.prompts import PROMPTS
from iml_core.status import RESUMABLE, Status
from iml_core.store import Store
from iml_core.tasks import Task, load_task

log = logging.getLogger(__name__)


def build_task(config: RunConfig) -> Task:
    task = load_task(config.task, config.label_column, config.label_noise)
    most = len(task.samples) - config.batch_size
    if config.eval_size > most:
        raise UserError(
            f"eval_size {config.eval_size} leaves fewer than batch_size ({config.batch_size}) of the "
            f"{len(task.samples)} samples of {task.name} for training; use an eval_size of at most {most}")
    return task


def build_backend(config: RunConfig) -> Backend:
    return BACKENDS[config.backend].build(config)


@dataclass(frozen=True)
class Probe:
    description: str
    seconds: float
    answer: str  # the model's raw answer
    tokens_in: int
    tokens_out: int


def probe_here(config: RunConfig) -> Probe:
    """One real call to the model a config names, in this process (loading the model first)."""
    backend = build_backend(config)
    started = time.perf_counter()
    out = backend.label([{"role": "user", "content": "Answer yes or no: is the sky blue?"}], ["yes", "no"],
                        temperature=0.0, seed=0, max_tokens=8)
    return Probe(backend.description, time.perf_counter() - started, out.raw, out.tokens_in, out.tokens_out)


def probe(config: RunConfig, timeout: float = 900) -> Probe:
    """One real call to the model a config names, made in a child process: whether it answers, how
    fast, and what. A crash in llama.cpp (an illegal instruction, a segfault) is named, not shared.
    The Models page's Test and `doctor --model` both ask this."""
    config.check()
    try:
        child = subprocess.run([sys.executable, "-c", "from iml_core.runner import probe_child; probe_child()",
                                json.dumps(config.to_dict())], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"the model gave no answer within {timeout:.0f} s") from None
    last = "\n".join((child.stdout + child.stderr).strip().splitlines()[-8:])
    if child.returncode != 0:
        raise RunFailed(f"loading or asking the model ended the test process with {signal_name(child.returncode)}; "
                        f"its last lines:\n{last}")
    answer = json.loads(child.stdout.strip().splitlines()[-1])
    if "error" in answer:
        raise (UserError if answer["bad_input"] else RunFailed)(answer["error"])
    return Probe(**answer)


def probe_child() -> None:
    """The child's side of `probe`: the config as JSON in argv[1], one JSON line out."""
    try:
        answer = asdict(probe_here(RunConfig.from_dict(json.loads(sys.argv[1]))))
    except IMLError as e:
        answer = {"error": str(e), "bad_input": isinstance(e, UserError)}
    print(json.dumps(answer))


def build_agent(config: RunConfig, task: Task, cache=None) -> Agent:
    if config.agent == "offline":
        return OfflineRuleLearner(task.attributes, task.classes)
    from iml_core.agents.llm import LLMAgent
    return LLMAgent(task, build_backend(config), temperature=config.temperature,
                    cache=cache if config.cache else None)


def prepare_run(config: RunConfig) -> tuple[Task, Agent]:
    """A run's task and agent, built to check everything that can be checked before it starts
    (the settings, the task file, the model file); IMLError naming the first problem."""
    config.check()
    task = build_task(config)
    return task, build_agent(config, task)


def create_run(store: Store, config: RunConfig, parent: tuple[int, int] | None = None,
               study: str | None = None, prepared: tuple[Task, Agent] | None = None) -> int:
    """Checks everything that can be checked before a run starts; a bad setting writes nothing.
    `parent` (run id, step) marks a fork; `study` names a group of runs queued together;
    `prepared` is what prepare_run built for this config, when the caller checked it already."""
    task, agent = prepared or prepare_run(config)
    model_file = getattr(getattr(agent, "backend", None), "path", None)
    if model_file is not None:  # the file, not the name: a listed name may later mean another file
        config = config.replace(model=str(model_file))
    return store.create_run(config, task_name=task.name, task_source=task.source,
                            agent_description=agent.description,
                            prompts=PROMPTS if config.agent == "llm" else None, parent=parent, study=study)


def fork_config(store: Store, run_id: int, step: int, **changes) -> RunConfig:
    """A new run's settings: the old run's, changed as asked, starting from its notes at `step`."""
    old = RunConfig.from_dict(store.run(run_id)["config"])
    return old.replace(initial_notes=store.notes_at(run_id, step), **changes)


class StepSource(Protocol):
    """Where a run's step records come from: computed here (local_steps) or on a cluster
    (iml_core.cluster). It yields step `after_step + 1` onwards (step 0 first when None); it may
    stop early once `cancel` is set."""

    def __call__(self, store: Store, run_id: int, config: RunConfig, after_step: int | None, notes: str | None,
                 cancel: threading.Event | None) -> Iterator[StepRecord]: ...


def agent_steps(config: RunConfig, after_step: int | None, notes: str | None, *, cache=None,
                on_retry: Callable[[str | None], None] | None = None,
                prepared: tuple[Task, Agent] | None = None) -> Iterator[StepRecord]:
    """A run's steps computed in this process, wherever that is (here, or on a Ray worker):
    `cache` answers repeated model calls, `on_retry` hears the backend's retry notices. `prepared`
    is the task and agent checked when the run was created in this process (used once; a resumed
    run, or one on another machine, builds its own)."""
    if prepared is None:
        task = build_task(config)
        agent = build_agent(config, task, cache=cache)
    else:
        task, agent = prepared
        if hasattr(agent, "cache"):
            agent.cache = cache if config.cache else None
    backend = getattr(agent, "backend", None)
    if on_retry is not None and backend is not None and hasattr(backend, "on_retry"):
        backend.on_retry = on_retry
    yield from learning_steps(task, agent, config, after_step=after_step, notes=notes)


def local_steps(store: Store, run_id: int, config: RunConfig, after_step: int | None, notes: str | None,
                cancel: threading.Event | None, prepared: tuple[Task, Agent] | None = None) -> Iterator[StepRecord]:
    yield from agent_steps(config, after_step, notes, cache=store.responses,
                           on_retry=lambda notice: store.set_retrying(run_id, notice), prepared=prepared)


def steps_from(source: "StepSource", prepared: tuple[Task, Agent] | None) -> "StepSource":
    """The source, handed the task and agent the run's creation built, when it computes here."""
    return functools.partial(local_steps, prepared=prepared) if prepared and source is local_steps else source


def execute_run(store: Store, run_id: int, *, cancel: threading.Event | None = None,
                on_step: Callable[[StepRecord], None] | None = None, source: StepSource = local_steps) -> dict:
    """Runs (or resumes) a run to its end, committing every step here, wherever the steps are
    computed; returns its summary. `cancel` stops it after the step in flight."""
    run = store.run(run_id)
    config = RunConfig.from_dict(run["config"])
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



def check_resumable(store: Store, run_id: int) -> None:
    status = store.run(run_id)["status"]
    if status not in RESUMABLE:
        raise UserError(f"run {run_id} is {status}; only {', '.join(RESUMABLE)} runs can be resumed")


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


def check_run(config: RunConfig) -> list[str]:
    """Everything wrong with a config, the task-dependent checks included; [] when it can run."""
    problems = config.problems()
    if problems:
        return problems
    try:
        prepare_run(config)
    except IMLError as e:
        return [str(e)]
    return []


def grid_configs(base: RunConfig, axes: dict[str, Sequence]) -> list[RunConfig]:
    """Every combination of the axes' values around a base config, the last axis innermost
    (seeds, by convention); an axis with no values makes an empty grid."""
    names = list(axes)
    return [base.replace(**dict(zip(names, values, strict=True))) for values in itertools.product(*axes.values())]


# The paper's two experiments: momentum none / partial / full (one minibatch per revision), and
# accumulation of 1, 2, 4 and 8 minibatches (no momentum); each over three seeds.
PAPER_MOMENTA = (0.0, 0.5, 1.0)
PAPER_ACCUMULATIONS = (1, 2, 4, 8)
PAPER_SEEDS = 3


def paper_study(base: RunConfig) -> list[RunConfig]:
    """The runs of both experiments around `base` (its seed first); the run they share is made once."""
    seeds = range(base.seed, base.seed + PAPER_SEEDS)
    configs = (grid_configs(base, {"momentum": PAPER_MOMENTA, "accumulation": [1], "seed": seeds})
               + grid_configs(base, {"momentum": [0.0], "accumulation": PAPER_ACCUMULATIONS, "seed": seeds}))
    return list(dict.fromkeys(configs))


def endpoint(config: RunConfig) -> str | None:
    """The model server a run calls, for the per-endpoint cap; None when it calls none."""
    return BACKENDS[config.backend].endpoint(config) if config.agent == "llm" else None


DEFAULT_PARALLEL = 2  # runs of one submission at once, unless it says otherwise


@dataclass(frozen=True)
class _Limits:
    """How many runs of one submission may go at once, and how many runs may call one model server
    while one of them starts; each submission brings its own, so one tab never changes another's."""
    parallel: int
    per_endpoint: int | None


class RunManager:
    """Runs in worker threads of this process, each writing through the shared store; `source`
    says where their steps are computed (here, or on a cluster: iml_core.cluster). Submitted runs
    wait as `queued` until fewer than their submission's `parallel` are running (and fewer than
    `max_parallel` in all, when set: a cluster's capacity), and fewer than their `max_per_endpoint`
    call the same model server."""

    def __init__(self, store: Store, max_parallel: int | None = None, source: StepSource = local_steps):
        self.store = store
        self.max_parallel = max_parallel
        self.source = source
        self._queue: list[int] = []
        self._threads: dict[int, threading.Thread] = {}
        self._cancels: dict[int, threading.Event] = {}
        self._endpoints: dict[int, str | None] = {}
        self._limits: dict[int, tuple[int, _Limits]] = {}  # run -> (its submission, that submission's limits)
        self._submissions = itertools.count(1)
        self._side_threads: list[threading.Thread] = []  # work beside the runs: baselines
        self._prepared: dict[int, tuple[Task, Agent]] = {}  # built when checked, used when the run starts
        self._lock = threading.Lock()

    def submit(self, configs: Sequence[RunConfig], parent: tuple[int, int] | None = None,
               study: str | None = None, parallel: int = DEFAULT_PARALLEL,
               max_per_endpoint: int | None = None) -> list[int]:
        """Creates the runs (all checked first: one bad config queues none) and starts what may start.
        `parent` (run id, step) marks them as forks of that run's notes at that step."""
        prepared = []
        for config in configs:
            problems = config.problems()
            if problems:
                raise UserError("; ".join(problems))
            prepared.append(prepare_run(config))
        run_ids = [create_run(self.store, config, parent=parent, study=study, prepared=built)
                   for config, built in zip(configs, prepared, strict=True)]
        with self._lock:
            self._prepared.update(zip(run_ids, prepared, strict=True))
        self._enqueue(run_ids, _Limits(parallel, max_per_endpoint))
        return run_ids

    def resume(self, run_ids: Sequence[int], parallel: int = DEFAULT_PARALLEL) -> None:
        """Queues stopped runs again; each goes on from its last committed step."""
        for run_id in run_ids:
            check_resumable(self.store, run_id)
        for run_id in run_ids:
            self.store.set_status(run_id, Status.QUEUED)
        self._enqueue(run_ids, _Limits(parallel, None))

    def _enqueue(self, run_ids: Sequence[int], limits: _Limits) -> None:
        if limits.parallel < 1 or (limits.per_endpoint is not None and limits.per_endpoint < 1):
            raise UserError(f"runs at once must be at least 1, got {limits.parallel} (and {limits.per_endpoint} "
                            "per model server)")
        with self._lock:
            submission = next(self._submissions)
            for run_id in run_ids:
                self._limits[run_id] = (submission, limits)
            self._queue.extend(run_ids)
        self._dispatch()

    def parallel_of(self, run_id: int) -> int:
        """How many runs of this run's submission may go at once."""
        with self._lock:
            return self._limits[run_id][1].parallel

    def _dispatch(self) -> None:
        with self._lock:
            for run_id in list(self._queue):
                running = [i for i, t in self._threads.items() if t.is_alive()]
                if self.max_parallel is not None and len(running) >= self.max_parallel:
                    return
                submission, limits = self._limits[run_id]
                if sum(self._limits[i][0] == submission for i in running) >= limits.parallel:
                    continue  # a run of another submission may start
                if run_id not in self._endpoints:
                    self._endpoints[run_id] = endpoint(RunConfig.from_dict(self.store.run(run_id)["config"]))
                target = self._endpoints[run_id]
                if (target is not None and limits.per_endpoint is not None
                        and sum(self._endpoints.get(i) == target for i in running) >= limits.per_endpoint):
                    continue  # a later run may call another server
                self._queue.remove(run_id)
                cancel = threading.Event()
                thread = threading.Thread(target=self._work, args=(run_id, cancel), name=f"iml-run-{run_id}",
                                          daemon=True)
                self._threads[run_id], self._cancels[run_id] = thread, cancel
                thread.start()

    def _work(self, run_id: int, cancel: threading.Event) -> None:
        try:
            with self._lock:
                prepared = self._prepared.pop(run_id, None)
            execute_run(self.store, run_id, cancel=cancel, source=steps_from(self.source, prepared))
        except IMLError as e:  # stored on the run with its message; logged for whoever runs the server
            log.warning("run %s failed: %s", run_id, e)
        except Exception:
            log.exception("run %s stopped on an unexpected error", run_id)
        finally:
            with self._lock:
                self._threads.pop(run_id, None)
            self._dispatch()

    def cancel(self, run_id: int) -> None:
        """A queued run is cancelled at once; a running one after the step in flight."""
        with self._lock:
            if run_id in self._queue:
                self._queue.remove(run_id)
                self._prepared.pop(run_id, None)
                self.store.set_status(run_id, Status.CANCELLED)
                return
            event = self._cancels.get(run_id)
        if event is not None:
            event.set()

    def queue_baselines(self, run_ids: Sequence[int]) -> None:
        """Computes the runs' missing baselines (iml_core.evaluation) in a worker thread of their own,
        alongside the runs; `join` waits for it too. Runs whose baselines would be the same (they
        differ only in how they learn) get them once, on the first of them."""
        from iml_core.evaluation import baseline_key, compute_baselines, missing_baselines, run_config

        firsts = {}
        for run_id in run_ids:
            firsts.setdefault(baseline_key(run_config(self.store.run(run_id))), run_id)

        def work() -> None:
            for run_id in firsts.values():
                try:
                    missing = missing_baselines(self.store, run_id)
                    if missing:
                        compute_baselines(self.store, run_id, missing)
                except IMLError as e:
                    log.warning("the baselines of run %s failed: %s", run_id, e)
                except Exception:
                    log.exception("the baselines of run %s stopped on an unexpected error", run_id)

        thread = threading.Thread(target=work, name="iml-baselines", daemon=True)
        with self._lock:
            self._side_threads.append(thread)
        thread.start()

    def cancel_study(self, study: str) -> list[int]:
        """Cancels every run of a study still queued or running here; returns them."""
        members = {r["id"] for r in self.store.runs() if r["study"] == study}
        going = [run_id for run_id in self.busy() if run_id in members]
        for run_id in going:
            self.cancel(run_id)
        return going

    def busy(self) -> list[int]:
        """Runs queued or running in this process."""
        with self._lock:
            return list(self._queue) + [i for i, t in self._threads.items() if t.is_alive()]

    def join(self, timeout: float | None = None) -> None:
        """Waits for every submitted run, queued ones included, to finish."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                self._side_threads = [t for t in self._side_threads if t.is_alive()]
                threads = list(self._threads.values()) + self._side_threads
                waiting = bool(self._queue)
            if not threads and not waiting:
                return
            for thread in threads:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if deadline is not None and time.monotonic() >= deadline:
                return
