"""RunManager: each submission's limit on runs at once, what it keeps about runs (only while they
are queued or running here), and a lock that never waits on the database."""

import threading
import time

from iml_core.config import RunConfig, Submission
from iml_core.manager import RunManager
from iml_core.status import Status
from iml_core.steps import local_steps


class OwnedLock:
    """The manager's lock, as it is, remembering which thread holds it: to catch a database call
    made under it (a check injected into the real lock, not a stand-in for it)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.owner = None

    def __enter__(self):
        self._lock.acquire()
        self.owner = threading.get_ident()
        return self

    def __exit__(self, *exc):
        self.owner = None
        self._lock.release()


def test_runs_are_held_to_their_submission_s_limit_and_forgotten_once_finished(store):
    gate = threading.Event()

    def gated(*args):  # every run waits here until the test has seen how many are running
        gate.wait(timeout=60)
        yield from local_steps(*args)

    manager = RunManager(store, source=gated)
    lock = manager._lock = OwnedLock()
    under_lock = []
    for name in ("run", "runs", "set_status", "create_run", "steps", "save_step"):
        real = getattr(store, name)

        def watched(*args, _real=real, _name=name, **kwargs):
            if lock.owner == threading.get_ident():
                under_lock.append(_name)
            return _real(*args, **kwargs)
        setattr(store, name, watched)

    configs = [RunConfig(steps=2, eval_size=20, seed=seed) for seed in range(5)]
    run_ids = manager.submit(configs, limits=Submission(parallel=2))
    deadline = time.monotonic() + 30
    while sum(store.run(i)["status"] == Status.RUNNING for i in run_ids) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a third, were it let through, would be running by now
    assert [store.run(i)["status"] for i in run_ids].count(Status.RUNNING) == 2
    assert {manager.parallel_of(i) for i in run_ids} == {2} and sorted(manager.busy()) == run_ids
    manager.cancel(run_ids[-1])  # queued: cancelled at once, and forgotten
    assert store.run(run_ids[-1])["status"] == Status.CANCELLED and manager.parallel_of(run_ids[-1]) is None
    gate.set()
    manager.join(timeout=120)
    assert [store.run(i)["status"] for i in run_ids] == [Status.COMPLETED] * 4 + [Status.CANCELLED]
    assert manager.busy() == [] and {manager.parallel_of(i) for i in run_ids} == {None}
    assert not (manager._threads or manager._cancels or manager._endpoints or manager._limits
                or manager._observers)
    assert under_lock == [], f"the database was called under the manager's lock: {under_lock}"

    # A resumed run is known again while it goes, and forgotten again after.
    manager.resume([run_ids[-1]])
    manager.join(timeout=120)
    assert store.run(run_ids[-1])["status"] == Status.COMPLETED and not manager._limits
    assert under_lock == []
