"""Every exit code of the command line, in one table; scripts and CI read them."""

from __future__ import annotations

from enum import IntEnum
from typing import Iterable

from iml_core.status import Status


class Exit(IntEnum):
    OK = 0
    FAILED = 1  # a run (or a baseline, or a server asked) failed: RunFailed; resumes once fixed
    BAD_INPUT = 2  # one line on stderr names the problem and the fix; nothing was written
    BUDGET_REACHED = 3  # a run stopped at its budget: neither done nor failed; resumes with a higher limit
    CANCELLED = 130  # Ctrl-C, as a shell reports SIGINT


def exit_for(statuses: Iterable[str]) -> Exit:
    """The code of a command that ran runs ending with these statuses: one that is neither completed
    nor stopped at its budget fails it; else a run stopped at its budget gives 3, as for one run."""
    statuses = set(statuses)
    if statuses - {Status.COMPLETED, Status.BUDGET_REACHED}:
        return Exit.FAILED
    return Exit.BUDGET_REACHED if Status.BUDGET_REACHED in statuses else Exit.OK
