"""Runs in worker threads of this process: the dashboard's way to run them (docs/ARCHITECTURE.md §4).
Each run writes through the shared store; `source` says where its steps are computed (here, or
on a cluster: iml_core.cluster)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Callable, Sequence

from iml_core.budget import SWEEP, SWEEP_BUDGETS, Budget, Limits
from iml_core.builders import prepare_run
from iml_core.config import DEFAULT_SUBMISSION, RunConfig, Submission
from iml_core.errors import IMLError
from iml_core.registry import AGENTS, BACKENDS
from iml_core.runner import check_resumable, create_run, execute_run
from iml_core.status import Status
from iml_core.steps import StepSource, local_steps
from iml_core.store import Store
from iml_core.tracking import RunObserver

log = logging.getLogger(__name__)


def endpoint(config: RunConfig) -> str | None:
    """The model server a run calls, for the per-server cap; None when it calls none."""
    return BACKENDS[config.backend].endpoint(config) if AGENTS[config.agent].uses_model else None


class RunManager:
    """Submitted runs wait as `queued` until fewer than their submission's `parallel` are running
    (and fewer than `max_parallel` in all, when set: a cluster's capacity), and fewer than their
    `max_per_endpoint` call the same model server. Side jobs (baselines) run beside them.

    It knows a run only while the run is queued or running here: a finished or cancelled run is
    forgotten (a dashboard serves for weeks). Its lock guards its own tables and nothing else: the
    database is read and written outside it, so a slow query never holds up dispatch or a page."""

    def __init__(self, store: Store, max_parallel: int | None = None, source: StepSource = local_steps):
        self.store = store
        self.max_parallel = max_parallel
        self.source = source
        self._queue: list[int] = []
        self._threads: dict[int, threading.Thread] = {}
        self._cancels: dict[int, threading.Event] = {}
        self._endpoints: dict[int, str | None] = {}
        self._limits: dict[int, tuple[int, Submission]] = {}  # run -> (its submission, that submission's limits)
        self._observers: dict[int, RunObserver] = {}
        self._submissions = itertools.count(1)
        self._side_threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, configs: Sequence[RunConfig], *, parent: tuple[int, int] | None = None,
               study: str | None = None, limits: Submission = DEFAULT_SUBMISSION,
               observer: RunObserver | None = None) -> list[int]:
        """Creates the runs (all checked first: one bad config queues none) and starts what may start.
        `parent` (run id, step) marks them as forks of that run's notes at that step; `observer` (an
        MLflow logger) is told of each of their steps and of each one's end."""
        limits.check()
        prepared = [prepare_run(config) for config in configs]  # each built once, all before any is stored
        run_ids = [create_run(self.store, config, parent=parent, study=study, prepared=built)
                   for config, built in zip(configs, prepared, strict=True)]
        sweep = Limits.of(limits, prefix=SWEEP)
        if sweep:  # one budget that every run of the submission spends from (iml_core.budget)
            shared = Budget(sweep, what=study or f"the sweep of runs {run_ids[0]}-{run_ids[-1]}", sweep=True)
            SWEEP_BUDGETS.share(str(self.store.path), run_ids, shared)
        if observer is not None:
            with self._lock:
                self._observers.update(dict.fromkeys(run_ids, observer))
        self._enqueue(run_ids, limits, [endpoint(config) for config in configs])
        return run_ids

    def resume(self, run_ids: Sequence[int], limits: Submission = DEFAULT_SUBMISSION) -> None:
        """Queues stopped runs again; each goes on from its last committed step."""
        limits.check()
        for run_id in run_ids:
            check_resumable(self.store, run_id)
        targets = [endpoint(RunConfig.from_dict(self.store.run(run_id)["config"])) for run_id in run_ids]
        for run_id in run_ids:
            self.store.set_status(run_id, Status.QUEUED)
        self._enqueue(run_ids, limits, targets)

    def _enqueue(self, run_ids: Sequence[int], limits: Submission, targets: Sequence[str | None]) -> None:
        """Queues runs with their submission's limits and the model server each calls (read from
        their configs by the caller, outside the lock)."""
        with self._lock:
            submission = next(self._submissions)
            for run_id, target in zip(run_ids, targets, strict=True):
                self._limits[run_id] = (submission, limits)
                self._endpoints[run_id] = target
            self._queue.extend(run_ids)
        self._dispatch()

    def parallel_of(self, run_id: int) -> int | None:
        """How many runs of this run's submission may go at once; None for a run not queued or
        running here (finished ones are forgotten)."""
        with self._lock:
            known = self._limits.get(run_id)
            return None if known is None else known[1].parallel

    def _forget(self, run_id: int) -> None:
        """Drops what the manager kept for a run that ended here; the caller holds the lock."""
        for table in (self._threads, self._cancels, self._endpoints, self._limits, self._observers):
            table.pop(run_id, None)

    def _dispatch(self) -> None:
        with self._lock:
            for run_id in list(self._queue):
                running = [i for i, t in self._threads.items() if t.is_alive()]
                if self.max_parallel is not None and len(running) >= self.max_parallel:
                    return
                submission, limits = self._limits[run_id]
                if sum(self._limits[i][0] == submission for i in running) >= limits.parallel:
                    continue  # a run of another submission may start
                target = self._endpoints[run_id]
                if (target is not None and limits.max_per_endpoint is not None
                        and sum(self._endpoints.get(i) == target for i in running) >= limits.max_per_endpoint):
                    continue  # a later run may call another server
                self._queue.remove(run_id)
                cancel = threading.Event()
                thread = threading.Thread(target=self._work, args=(run_id, cancel), name=f"iml-run-{run_id}",
                                          daemon=True)
                self._threads[run_id], self._cancels[run_id] = thread, cancel
                thread.start()

    def _work(self, run_id: int, cancel: threading.Event) -> None:
        with self._lock:
            observer = self._observers.get(run_id)
        on_step = None if observer is None else (lambda record: observer.step(self.store, run_id, record))
        try:
            execute_run(self.store, run_id, cancel=cancel, source=self.source, on_step=on_step)
        except IMLError as e:  # stored on the run with its message; logged for whoever runs the server
            log.warning("run %s failed: %s", run_id, e)
        except Exception:
            log.exception("run %s stopped on an unexpected error", run_id)
        finally:
            SWEEP_BUDGETS.forget(str(self.store.path), run_id)
            if observer is not None:  # before the thread counts as done, so that `join` waits for it
                observer.end(self.store, run_id)
            with self._lock:
                self._forget(run_id)
            self._dispatch()

    def cancel(self, run_id: int) -> None:
        """A queued run is cancelled at once; a running one after the step in flight."""
        with self._lock:
            queued = run_id in self._queue
            if queued:
                self._queue.remove(run_id)
                self._forget(run_id)
            event = self._cancels.get(run_id)
        if queued:
            self.store.set_status(run_id, Status.CANCELLED)
            SWEEP_BUDGETS.forget(str(self.store.path), run_id)
        elif event is not None:
            event.set()

    def run_beside(self, name: str, work: Callable[[], None]) -> None:
        """Work beside the runs (the baselines of a study) in a thread of its own; `join` waits
        for it too. Its failure is logged, never raised into a page."""
        def guarded() -> None:
            try:
                work()
            except IMLError as e:
                log.warning("%s failed: %s", name, e)
            except Exception:
                log.exception("%s stopped on an unexpected error", name)

        thread = threading.Thread(target=guarded, name=f"iml-{name}", daemon=True)
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
        """Waits for every submitted run, queued ones included, and every side job to finish;
        TimeoutError naming what is still going when `timeout` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                self._side_threads = [t for t in self._side_threads if t.is_alive()]
                threads = list(self._threads.values()) + self._side_threads
                waiting = bool(self._queue)
            if not threads and not waiting:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"still going after {timeout:g} s: runs {self.busy()}, "
                                   f"{len(self._side_threads)} side job(s)")
            for thread in threads:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if not threads:  # queued runs only: they start when a thread ends, so wait a moment
                time.sleep(0.05)
