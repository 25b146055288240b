"""The store's file: migrating it, transactions, and one statement in a burst of its own.

Every process holds the file only for bursts, taking turns with the others (iml_core.store.turns);
which process runs which run is kept beside it (iml_core.store.owners).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Self

import duckdb

from iml_core.errors import UserError
from iml_core.store.owners import Owners
from iml_core.store.schema import MIGRATIONS, SCHEMA_VERSION
from iml_core.store.turns import SharedFile, disk_problem

DEFAULT_DB = Path(__file__).resolve().parents[2] / "data" / "iml.duckdb"
# How long a burst waits for the file while another process holds it, unless $IML_DB_WAIT says:
# longer than any burst of ours (a commit, a page's reads, a migration), short enough to say so.
DEFAULT_WAIT_SECONDS = 30.0


def wait_seconds() -> float:
    text = os.environ.get("IML_DB_WAIT", "")
    if not text.strip():
        return DEFAULT_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise UserError(f"IML_DB_WAIT must be a number of seconds (0 or more), got {text!r}; "
                        f"unset it to wait the default {DEFAULT_WAIT_SECONDS:g} s")
    return seconds


class Database:
    """A migrated store file that this process holds only while some thread of it needs it; the
    role classes of iml_core.store build on it."""

    def __init__(self, path: str | Path = DEFAULT_DB, *, migrate_to: int = SCHEMA_VERSION,
                 wait: float | None = None):
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"the database path {self.path} is a folder; give a file name such as runs.duckdb")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.owners = Owners(self.path)
        self._file = SharedFile(self.path, wait_seconds() if wait is None else wait)
        self._migrate(migrate_to)

    def held(self):
        """The file held for a burst (a step's commit, a page's reads), with this thread's cursor:
        `with store.held() as cursor`. Bursts of this process's threads share one connection."""
        return self._file.held()

    def close(self) -> None:
        """Lets go of the runs this store was running: any it left going are interrupted for every
        other process. The file itself is held only by bursts, never by an open store."""
        self.owners.release_all()
        self.let_go()

    def let_go(self) -> None:
        """Closes the file now, not after the linger, unless a burst of this process is using it."""
        self._file.let_go()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _migrate(self, target: int) -> None:
        """In one burst: two processes opening a new file at once migrate it one after the other,
        the second finding every migration done."""
        with self.held():
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
        with self.held() as cursor:
            cursor.execute("BEGIN TRANSACTION")
            try:
                yield cursor
                cursor.execute("COMMIT")
            except Exception as e:
                with contextlib.suppress(duckdb.Error):  # a failed COMMIT has already ended the transaction
                    cursor.execute("ROLLBACK")
                problem = disk_problem(e, self.path)
                if problem is not None:  # a run stopped by it resumes once the disk is fixed
                    raise problem from None
                raise

    def schema_version(self) -> int:
        return self._one("SELECT coalesce(max(version), 0) FROM schema_migrations")[0]

    # One statement in a burst of its own: what most reads and writes are.
    def _rows(self, sql: str, params: list | None = None) -> list[dict]:
        with self.held() as cursor:
            cursor.execute(sql, params or [])
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _one(self, sql: str, params: list | None = None) -> tuple | None:
        with self.held() as cursor:
            return cursor.execute(sql, params or []).fetchone()

    def _all(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.held() as cursor:
            return cursor.execute(sql, params or []).fetchall()

    def _frame(self, sql: str, params: list | None = None):
        with self.held() as cursor:
            return cursor.execute(sql, params or []).df()
