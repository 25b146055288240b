"""Errors a user can fix. Their message names the problem and the way out; callers show it as is."""


class UserError(Exception):
    """Bad input from a person: a setting, a file, a run id. Never a bug in the engine."""


class DatabaseLocked(UserError):
    """Another process holds the DuckDB file (DuckDB allows one read-write process per file)."""
