"""Work a page starts and then watches (an install, a probe): one thread per name at a time, in
this process, so the page stays usable and draws the job's progress on each rerun."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar


@dataclass
class BackgroundJob:
    name: str
    problem: str | None = field(default=None, kw_only=True)  # what stopped it, for the page to show
    thread: threading.Thread | None = field(default=None, kw_only=True, repr=False)

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


Job = TypeVar("Job", bound=BackgroundJob)


class BackgroundJobs(Generic[Job]):
    def __init__(self, what: str):
        self.what = what  # names the threads: "install", "probe"
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, job: Job, work: Callable[[Job], None]) -> Job:
        """Runs `work(job)` in a thread, unless a job of that name is running: then that one."""
        with self._lock:
            running = self._jobs.get(job.name)
            if running is not None and running.running:
                return running

            def run() -> None:
                try:
                    work(job)
                except Exception as e:  # noqa: BLE001 - the page shows whatever stopped it
                    job.problem = str(e)

            job.thread = threading.Thread(target=run, name=f"{self.what} {job.name}", daemon=True)
            self._jobs[job.name] = job
            job.thread.start()
            return job

    def get(self, name: str) -> Job | None:
        with self._lock:
            return self._jobs.get(name)
