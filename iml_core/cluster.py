"""Runs on a Ray cluster: each run's learning happens in a Ray task, and each finished step travels
back (a Ray streaming generator) to the process that started the run (the driver), which commits
it as if the run were local (docs/ARCHITECTURE.md §4). Ray is optional: `requirements-ray.txt`.

A worker lost mid-run (its process killed, its node gone) leaves the run's committed steps; the run
goes on from the last of them in a new task, up to `worker_retries` times, saying so in its status
(`retrying`, with the cause) until the new task commits a step; past the limit it fails, resumable.
The response cache spares the new task every call the lost one had completed. Cancelling a run
cancels its Ray task at once.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Iterator

from iml_core.budget import Budget, Limits, Spent
from iml_core.config import RunConfig
from iml_core.errors import IMLError, RunFailed, UserError
from iml_core.learner import StepRecord
from iml_core.progress import WATCHES, RelayedWatch, StepProgress, StepWatch
from iml_core.store import Store

RAY_ADDRESS_ENV = "IML_RAY_ADDRESS"
POLL_SECONDS = 0.5  # how often a waiting run looks at its cancel flag, and a worker posts its progress


def ray_address(flag: str | None = None) -> str | None:
    """The Ray cluster to use: the command-line flag, else $IML_RAY_ADDRESS; None runs locally."""
    return flag or os.environ.get(RAY_ADDRESS_ENV) or None


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError("Ray is not installed in this environment; install it with "
                        "`.venv/bin/uv pip install -r requirements-ray.txt`, or unset IML_RAY_ADDRESS "
                        "to run sweeps here") from None
    return ray


LOOPBACK = "127.0.0.1"
# Ray turns a node address of 127.0.0.1 into the machine's network address; with this set to 0
# (read when Ray is imported) a cluster started here takes the loopback address and serves this
# machine only. A cluster that other machines join is started with `ray start`, not from here.
LOCAL_ONLY_ENV = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def connect(address: str) -> None:
    """Joins the cluster at `address` ("auto" for the one this machine belongs to, "local" to start
    one here); a process already connected stays with its cluster."""
    if address == "local":
        os.environ.setdefault(*LOCAL_ONLY_ENV)
    ray = _ray()
    if ray.is_initialized():
        return
    try:
        ray.init(address=None if address == "local" else address, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RunFailed(f"cannot connect to the Ray cluster at {address!r} ({e}); is it running? "
                        f"`ray status` on a node tells; or unset {RAY_ADDRESS_ENV} to run here") from None


@dataclass(frozen=True)
class Resources:
    """What one run asks of the cluster. `custom` names resources the cluster defines, such as
    {"vllm-70b": 1} on the nodes that may call that endpoint."""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    custom: dict[str, float] = field(default_factory=dict)

    def options(self) -> dict:
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "resources": dict(self.custom)}


def parse_resources(pairs: list[str]) -> dict[str, float]:
    """["vllm-70b=1", ...] -> {"vllm-70b": 1.0}."""
    out = {}
    for pair in pairs:
        name, _, amount = pair.partition("=")
        try:
            out[name.strip()] = float(amount)
        except ValueError:
            raise UserError(f"resource {pair!r} should be NAME=AMOUNT, e.g. vllm-70b=1") from None
        if not name.strip():
            raise UserError(f"resource {pair!r} has no name; e.g. vllm-70b=1")
    return out


def resources_from_env() -> Resources:
    """What each run started from the dashboard asks of the cluster: IML_RAY_NUM_CPUS (default 1),
    IML_RAY_NUM_GPUS (default 0), IML_RAY_RESOURCES ("vllm-70b=1,other=2")."""
    try:
        cpus = float(os.environ.get("IML_RAY_NUM_CPUS", "1"))
        gpus = float(os.environ.get("IML_RAY_NUM_GPUS", "0"))
    except ValueError as e:
        raise UserError(f"IML_RAY_NUM_CPUS and IML_RAY_NUM_GPUS must be numbers ({e})") from None
    custom = [p for p in os.environ.get("IML_RAY_RESOURCES", "").split(",") if p.strip()]
    return Resources(cpus, gpus, parse_resources(custom))


def check_feasible(resources: Resources) -> None:
    """Refuses requests the cluster cannot meet at all: Ray would keep such runs pending forever."""
    total = _ray().cluster_resources()
    wanted = {"CPU": resources.num_cpus, "GPU": resources.num_gpus, **resources.custom}
    for name, amount in wanted.items():
        if amount and total.get(name, 0.0) < amount:
            have = ", ".join(f"{k} {v:g}" for k, v in sorted(total.items())
                             if not k.startswith(("node:", "memory", "object_store_memory", "accelerator_type")))
            raise UserError(f"each run asks for {amount:g} {name} but the Ray cluster has {total.get(name, 0.0):g} "
                            f"(it has: {have}); ask for less, or add nodes that have it (on an autoscaling "
                            "cluster, start one first)")


def capacity(resources: Resources) -> int:
    """How many runs asking `resources` the cluster can hold at once, by CPUs."""
    cpus = _ray().cluster_resources().get("CPU", 1.0)
    return max(1, int(cpus // resources.num_cpus)) if resources.num_cpus else max(1, int(cpus))


class _Board:
    """A Ray actor through which workers tell the driver what it cannot see from the steps: that
    a run waits on a failing model server (the backend's retry notices), where it is inside its
    step (iml_core.progress), and the model's answers as they come (the response cache). The
    cache here holds what this driver's cluster runs were answered, so a task that takes over after
    a lost worker repeats no completed call; the driver copies every entry into the database's cache."""

    def __init__(self):
        self._notices: dict[int, str | None] = {}
        self._progress: dict[int, StepProgress | None] = {}
        self._answers: dict[str, dict] = {}
        self._unsaved: list[tuple[str, dict]] = []

    def post(self, run_id: int, notice: str | None) -> None:
        self._notices[run_id] = notice

    def take(self, run_id: int) -> tuple[bool, str | None]:
        """(True, the latest notice) when one came since the last take, else (False, None)."""
        if run_id in self._notices:
            return True, self._notices.pop(run_id)
        return False, None

    def post_progress(self, run_id: int, progress: StepProgress | None) -> None:
        self._progress[run_id] = progress

    def progress(self, run_id: int) -> StepProgress | None:
        return self._progress.get(run_id)

    def get(self, key: str) -> dict | None:
        return self._answers.get(key)

    def put(self, key: str, value: dict) -> None:
        if key not in self._answers:
            self._answers[key] = value
            self._unsaved.append((key, value))

    def take_unsaved(self) -> list[tuple[str, dict]]:
        unsaved, self._unsaved = self._unsaved, []
        return unsaved


class _BoardCache:
    """The LLM agent's response cache on a worker (iml_core.agents.llm.ResponseCache)."""

    def __init__(self, board):
        self.board = board

    def get(self, key: str) -> dict | None:
        return _ray().get(self.board.get.remote(key))

    def put(self, key: str, value: dict) -> None:
        # Waited for: a worker lost just after the call must not take the answer with it.
        _ray().get(self.board.put.remote(key, value))


def _learn(config: dict, after_step: int | None, notes: str | None, state: str | None, run_id: int, board,
           spent: Spent | None):
    """On a worker: says where it runs, then yields every step record. Retry notices and the
    response cache go through `board` (LLM runs); a run with limits gets a budget over what its
    committed steps `spent` (a sweep's shared budget lives in the driver and does not reach here)."""
    import socket

    from iml_core.steps import agent_steps

    yield {"pid": os.getpid(), "node": socket.gethostname()}
    config = RunConfig.from_dict(config)
    budget = None if spent is None else Budget(Limits.of(config), spent, what=f"run {run_id}")
    if board is None:
        yield from agent_steps(config, after_step, notes, state=state, budget=budget)
        return
    watch, done = StepWatch(), threading.Event()
    poster = threading.Thread(target=_post_progress, args=(watch, board, run_id, done), daemon=True)
    poster.start()
    try:
        yield from agent_steps(config, after_step, notes, state=state, cache=_BoardCache(board),
                               on_retry=lambda notice: board.post.remote(run_id, notice), watch=watch, budget=budget)
    finally:
        done.set()
        board.post_progress.remote(run_id, None)


def _post_progress(watch: StepWatch, board, run_id: int, done: threading.Event) -> None:
    """On a worker: the step's progress to the board, whenever it changed, until the run ends."""
    posted = None
    while not done.wait(POLL_SECONDS):
        now = watch.snapshot()
        moved = now is not None and (posted is None or (now.step, now.phase, now.calls)
                                     != (posted.step, posted.phase, posted.calls))
        if moved:
            board.post_progress.remote(run_id, now)
            posted = now


_remote_learn = None


def _remote():
    global _remote_learn
    if _remote_learn is None:
        # Ray must not retry by itself: it would start over from the first step.
        _remote_learn = _ray().remote(max_retries=0)(_learn)
    return _remote_learn


class RaySteps:
    """A step source (iml_core.steps.StepSource) that computes steps in Ray tasks."""

    def __init__(self, resources: Resources = Resources(), worker_retries: int = 2):
        self.resources = resources
        self.worker_retries = worker_retries
        self.workers: dict[int, dict] = {}  # run id -> {"pid", "node"} of the task running it now
        self.losses: dict[int, list[str]] = {}  # run id -> what happened each time its worker was lost
        self._lock = threading.Lock()
        self._board = None

    def _driver_board(self):
        with self._lock:
            if self._board is None:
                self._board = _ray().remote(_Board).options(num_cpus=0).remote()
            return self._board

    def worker(self, run_id: int) -> dict | None:
        with self._lock:
            return self.workers.get(run_id)

    def __call__(self, store: Store, run_id: int, config: RunConfig, after_step: int | None, notes: str | None,
                 cancel: threading.Event | None) -> Iterator[StepRecord]:
        ray = _ray()
        board = self._driver_board() if config.uses_model else None
        with WATCHES.watching(run_id, RelayedWatch()) as relayed:
            yield from self._run(ray, store, run_id, config, after_step, notes, cancel, board, relayed)

    def _run(self, ray, store: Store, run_id: int, config: RunConfig, after_step: int | None, notes: str | None,
             cancel: threading.Event | None, board, relayed: RelayedWatch) -> Iterator[StepRecord]:
        lost = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)
        losses = 0
        state = None if after_step is None else store.learner_state(run_id, after_step)
        while True:
            spent = store.run_spent(run_id) if Limits.of(config) else None
            task = _remote().options(**self.resources.options()).remote(config.to_dict(), after_step, notes,
                                                                        state, run_id, board, spent)
            recovering = losses > 0
            try:
                for item in self._items(ray, task, cancel,
                                       lambda: self._relay(ray, board, store, run_id, relayed)):
                    if isinstance(item, dict):
                        with self._lock:
                            self.workers[run_id] = item
                        continue
                    after_step, notes, state = item.step, item.notes, item.state
                    yield item  # committed by the caller before the next is asked for
                    if recovering:
                        store.set_retrying(run_id, None)
                        recovering = False
                return
            except lost as e:
                losses += 1
                where = "before its first step" if after_step is None else f"after step {after_step}"
                with self._lock:
                    self.losses.setdefault(run_id, []).append(f"{type(e).__name__} {where}")
                if losses > self.worker_retries:
                    raise RunFailed(f"the Ray worker running run {run_id} was lost {losses} times, the last "
                                    f"{where} ({type(e).__name__}); its committed steps are kept: resume it "
                                    "when the cluster is healthy") from None
                store.set_retrying(run_id, f"the Ray worker was lost {where}; going on from there in a new task "
                                           f"(retry {losses} of {self.worker_retries})")
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                if isinstance(cause, IMLError):
                    raise cause from None
                raise
            finally:
                with self._lock:
                    self.workers.pop(run_id, None)
                ray.cancel(task)  # a no-op once the task is done
                self._relay(ray, board, store, run_id, relayed)

    @staticmethod
    def _relay(ray, board, store: Store, run_id: int, relayed: RelayedWatch) -> None:
        """What workers told the board since last time: into the run's status, its watch and the cache."""
        if board is None:
            return
        relayed.update(ray.get(board.progress.remote(run_id)))
        changed, notice = ray.get(board.take.remote(run_id))
        if changed:
            store.set_retrying(run_id, notice)
        for key, value in ray.get(board.take_unsaved.remote()):
            store.responses.put(key, value)

    @staticmethod
    def _items(ray, task, cancel: threading.Event | None, between):
        """The task's items as they come, until it ends or `cancel` is set; `between` runs
        whenever the task is waited for."""
        while True:
            if cancel is not None and cancel.is_set():
                return
            between()
            ready, _ = ray.wait([task], timeout=POLL_SECONDS)
            if not ready:
                continue
            try:
                reference = next(task)
            except StopIteration:
                return
            yield ray.get(reference)


def on_cluster(address: str, resources: Resources, worker_retries: int = 2) -> tuple[RaySteps, int]:
    """The one Ray setup, for the dashboard and the command line alike: joins the cluster at
    `address`, refuses `resources` it can never meet, and gives the step source that computes runs
    there and how many runs of `resources` it holds at once."""
    connect(address)
    check_feasible(resources)
    return RaySteps(resources, worker_retries=worker_retries), capacity(resources)
