"""The DuckDB file itself: opening it, migrating it, cursors and transactions.

DuckDB lets one process open a file read-write and then refuses every other process, so one
Store per process owns the file; threads share it, each through its own cursor.
"""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path
from typing import Self

import duckdb

from iml_core.errors import DatabaseLocked, RunFailed, UserError
from iml_core.store.schema import MIGRATIONS, SCHEMA_VERSION

DEFAULT_DB = Path(__file__).resolve().parents[2] / "data" / "iml.duckdb"


def _disk_problem(error: Exception, path: Path) -> RunFailed | None:
    """A disk that refuses writes (full, read-only) is the world failing, not bad input: once it is
    fixed, the same command works."""
    message = str(error)
    if "No space left on device" in message:
        return RunFailed(f"the disk holding the database {path} is full; nothing of the step in flight was "
                         "written and earlier steps are intact: free some space (or pass --db with a file on "
                         "another disk) and resume the run")
    if "Read-only file system" in message or "Permission denied" in message:
        return RunFailed(f"the database {path} cannot be written (its file or disk is read-only); make it "
                         "writable or pass --db with a writable file; nothing in it was changed")
    return None


def _open(path: Path) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path))
    except duckdb.IOException as e:
        message = str(e)
        if "lock" in message.lower():
            holder = re.search(r"PID (\d+)", message)
            who = f"process {holder.group(1)}" if holder else "another process"
            raise DatabaseLocked(
                f"the database {path} is in use by {who} (DuckDB lets one process open a file); "
                f"stop that process (often the dashboard) or pass --db with another file") from None
        problem = _disk_problem(e, path)
        if problem is not None:
            raise problem from None
        raise UserError(f"cannot open the database {path} ({message}); "
                        "pass --db with a DuckDB file or the name of a new one") from None
    except duckdb.Error as e:
        raise UserError(f"{path} is not a usable DuckDB database ({e}); pass --db with another file") from None


class Database:
    """An open, migrated store file; the role classes of iml_core.store build on it."""

    def __init__(self, path: str | Path = DEFAULT_DB, *, migrate_to: int = SCHEMA_VERSION):
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"the database path {self.path} is a folder; give a file name such as runs.duckdb")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = _open(self.path)
        self._local = threading.local()
        self._migrate(migrate_to)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the file, made on first use. One DuckDB connection object used
        from two threads at once fails with "connection is busy", so each thread gets its own."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._connection.cursor()
        return cursor

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _migrate(self, target: int) -> None:
        with self._transaction() as cursor:
            cursor.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,
                applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp)""")
            done = {row[0] for row in cursor.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, name, sql in MIGRATIONS:
            if version in done or version > target:
                continue
            with self._transaction() as cursor:
                cursor.execute(sql)
                cursor.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [version, name])

    @contextlib.contextmanager
    def _transaction(self):
        """All of it or none of it. A write the disk refuses (full, read-only) becomes a message
        that names the file and the fix; what was committed before is untouched."""
        cursor = self.cursor()
        cursor.execute("BEGIN TRANSACTION")
        try:
            yield cursor
            cursor.execute("COMMIT")
        except Exception as e:
            with contextlib.suppress(duckdb.Error):  # a failed COMMIT has already ended the transaction
                cursor.execute("ROLLBACK")
            problem = _disk_problem(e, self.path)
            if problem is not None:  # a run stopped by it resumes once the disk is fixed
                raise problem from None
            raise

    def schema_version(self) -> int:
        return self.cursor().execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]

    def _rows(self, sql: str, params: list | None = None) -> list[dict]:
        cursor = self.cursor().execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
