"""The errors the engine raises on purpose. Each message names the problem and the way out; callers
show it as is. Two kinds, because the fix lies in different hands:

- UserError: bad input from a person (a setting, a file, a run id); nothing was written. Exit 2.
- RunFailed: the world failed (a server down, a full disk at any time, an unreachable cluster, a
  lost worker), or a run met a limit mid-way (a prompt longer than the model's context); a run
  stopped `failed` with its completed steps kept, and resumes once that is fixed. Exit 1.
"""


class IMLError(Exception):
    """Any error the engine raises on purpose; never a bug in the engine."""


class UserError(IMLError):
    """Bad input from a person: a setting, a file, a run id."""


class DatabaseLocked(UserError):
    """Another process holds the DuckDB file (DuckDB allows one read-write process per file)."""


class RunFailed(IMLError):
    """Something outside the engine failed while a run was going: a model server, the disk, a worker."""


class BudgetReached(IMLError):
    """A run (or its sweep) would pass one of its limits with the next model call: it stops with the
    status `budget reached`, its committed steps kept, and resumes with a higher limit."""
