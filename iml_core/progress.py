"""What a run is doing inside its step, as it happens: the phase, the answers given of those the
phase needs, and the calls, tokens and seconds of the step so far. A step of a language model
takes minutes on a CPU; the Live page reads this to show it is moving and how long it has left.

The loop reports phases (iml_core.learner), the LLM agent reports each call (through the Phase it
is handed), and the run's step source registers the watch under the run's id (iml_core.steps).
It lives in the memory of the process computing the steps; nothing of it is stored. A run on a
Ray cluster computes elsewhere: its worker posts snapshots, and the process that owns the run
holds the latest in a RelayedWatch (iml_core.cluster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class StepProgress:
    step: int
    phase: str  # an iml_core.agents.PhaseName value
    answered: int  # model calls made in this phase of this step
    expected: int  # model calls this phase makes in this step (an LLM agent's; 0 for one that calls none)
    calls: int  # in the whole step so far
    tokens_in: int
    tokens_out: int
    step_seconds: float
    phase_seconds: float

    @property
    def seconds_left_in_phase(self) -> float | None:
        """From this phase's own pace so far; None until it has answered once."""
        if not self.answered or self.answered >= self.expected:
            return None
        return self.phase_seconds / self.answered * (self.expected - self.answered)


class StepWatch:
    def __init__(self):
        self._lock = threading.Lock()
        self._step: int | None = None
        self._expected: dict[str, int] = {}
        self._answered: dict[str, int] = {}
        self._spent: dict[str, float] = {}  # seconds of the phases left, for when they come back
        self._phase = ""
        self._calls = self._tokens_in = self._tokens_out = 0
        self._step_started = self._phase_started = time.monotonic()

    def begin_step(self, step: int, expected: dict[str, int]) -> None:
        """A new step, with the model calls each of its phases will make."""
        with self._lock:
            self._step, self._expected, self._answered, self._spent, self._phase = step, dict(expected), {}, {}, ""
            self._calls = self._tokens_in = self._tokens_out = 0
            self._step_started = self._phase_started = time.monotonic()

    def begin_phase(self, phase: str) -> None:
        """Accumulation goes back and forth (infer, induce, infer...): a phase's seconds add up."""
        with self._lock:
            if phase == self._phase:
                return
            now = time.monotonic()
            if self._phase:
                self._spent[self._phase] = now - self._phase_started
            self._phase, self._phase_started = phase, now - self._spent.get(phase, 0.0)

    def called(self, call) -> None:
        """One model call (an iml_core.agents.ModelCall), from any thread."""
        with self._lock:
            self._answered[call.phase] = self._answered.get(call.phase, 0) + 1
            self._calls += 1
            self._tokens_in += call.tokens_in
            self._tokens_out += call.tokens_out

    def snapshot(self) -> StepProgress | None:
        with self._lock:
            if self._step is None or not self._phase:
                return None
            now = time.monotonic()
            return StepProgress(self._step, self._phase, self._answered.get(self._phase, 0),
                                self._expected.get(self._phase, 0), self._calls, self._tokens_in, self._tokens_out,
                                now - self._step_started, now - self._phase_started)


class RelayedWatch:
    """The latest snapshot posted by a watch in another process, its clocks moved on by the time
    since it arrived, so the seconds keep counting between posts."""

    def __init__(self):
        self._lock = threading.Lock()
        self._latest: tuple[StepProgress, float] | None = None

    def update(self, progress: StepProgress | None) -> None:
        with self._lock:
            self._latest = None if progress is None else (progress, time.monotonic())

    def snapshot(self) -> StepProgress | None:
        with self._lock:
            if self._latest is None:
                return None
            progress, arrived = self._latest
        since = time.monotonic() - arrived
        return dataclasses.replace(progress, step_seconds=progress.step_seconds + since,
                                   phase_seconds=progress.phase_seconds + since)


class Watches:
    """The watch of each run computing here (or relayed here from a worker), by run id."""

    def __init__(self):
        self._lock = threading.Lock()
        self._watches: dict[int, StepWatch | RelayedWatch] = {}

    @contextlib.contextmanager
    def watching(self, run_id: int, watch: StepWatch | RelayedWatch | None = None):
        watch = StepWatch() if watch is None else watch
        with self._lock:
            self._watches[run_id] = watch
        try:
            yield watch
        finally:
            with self._lock:
                if self._watches.get(run_id) is watch:
                    del self._watches[run_id]

    def now(self, run_id: int) -> StepProgress | None:
        with self._lock:
            watch = self._watches.get(run_id)
        return None if watch is None else watch.snapshot()


WATCHES = Watches()
