"""A run's status: every name in one place, for the store, the runner, the command line and pages."""

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"  # running, but waiting on a failing model server
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # left going by a process that died
    BUDGET_REACHED = "budget reached"  # stopped before a model call past one of its limits (iml_core.budget)


GOING = (Status.QUEUED, Status.RUNNING, Status.RETRYING)
TERMINAL = (Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.INTERRUPTED, Status.BUDGET_REACHED)
RESUMABLE = (Status.INTERRUPTED, Status.CANCELLED, Status.FAILED, Status.BUDGET_REACHED)
ACTIVE = (Status.RUNNING, Status.RETRYING)  # computing steps now
