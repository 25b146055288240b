"""The DuckDB file itself: holding it for a burst, migrating it, cursors and transactions.

DuckDB lets one process at a time open a file, so every process (the dashboard, each command)
holds it only for a burst: a step's commit, a page's reads. The first thread that needs it opens
it, waiting with backoff while another process has it; the last one done closes it, and the file
is free for the next process (docs/ARCHITECTURE.md §4).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
import time
from pathlib import Path
from typing import Self

import duckdb

from iml_core.errors import DatabaseLocked, RunFailed, UserError
from iml_core.store.owners import Owners
from iml_core.store.schema import MIGRATIONS, SCHEMA_VERSION

DEFAULT_DB = Path(__file__).resolve().parents[2] / "data" / "iml.duckdb"
# How long a burst waits for the file while another process holds it, unless $IML_DB_WAIT says:
# longer than any burst of ours (a commit, a page's reads, a migration), short enough to say so.
DEFAULT_WAIT_SECONDS = 30.0


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


def _holder(message: str) -> str:
    """Who holds the file, from DuckDB's message: its pid and, when this machine can tell, its command."""
    pid = re.search(r"PID (\d+)", message)
    if pid is None:
        return "another process"
    try:
        command = Path(f"/proc/{pid.group(1)}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        command = ""
    return f"process {pid.group(1)}" + (f" ({command[:120]})" if command else "")


def _open(path: Path, wait: float) -> duckdb.DuckDBPyConnection:
    """The file, opened as soon as no other process holds it, within `wait` seconds."""
    deadline, delay = time.monotonic() + wait, 0.002
    while True:
        try:
            return duckdb.connect(str(path))
        except duckdb.IOException as e:
            message = str(e)
            if "lock" not in message.lower():
                problem = _disk_problem(e, path)
                if problem is not None:
                    raise problem from None
                raise UserError(f"cannot open the database {path} ({message}); "
                                "pass --db with a DuckDB file or the name of a new one") from None
            if time.monotonic() >= deadline:
                raise DatabaseLocked(
                    f"the database {path} is in use by {_holder(message)}, which has held it for over {wait:g} s "
                    "(IML processes take turns on a file, each holding it only while it writes a step or reads "
                    "a page); stop that process, wait longer with IML_DB_WAIT=SECONDS, or pass --db with "
                    "another file") from None
        except duckdb.Error as e:
            raise UserError(f"{path} is not a usable DuckDB database ({e}); pass --db with another file") from None
        # Jittered, so that two waiting processes do not retry in step.
        time.sleep(min(delay, max(deadline - time.monotonic(), 0)) * random.uniform(0.5, 1.0))
        delay = min(delay * 2, 0.1)


class Database:
    """A migrated store file that this process holds only while some thread of it needs it; the
    role classes of iml_core.store build on it."""

    def __init__(self, path: str | Path = DEFAULT_DB, *, migrate_to: int = SCHEMA_VERSION,
                 wait: float | None = None):
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"the database path {self.path} is a folder; give a file name such as runs.duckdb")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.wait = wait_seconds() if wait is None else wait
        self.owners = Owners(self.path)
        self._lock = threading.Lock()  # guards the three below
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._holders = 0
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._local = threading.local()
        self._migrate(migrate_to)

    @contextlib.contextmanager
    def held(self):
        """The file held for a burst, with this thread's cursor; bursts of several threads (or
        nested ones) share one connection, which closes when the last of them ends."""
        with self._lock:
            if self._connection is None:
                self._connection = _open(self.path, self.wait)
            self._holders += 1
        try:
            yield self.cursor()
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    self._let_go()

    def _let_go(self) -> None:
        for cursor in self._cursors:
            cursor.close()
        self._cursors.clear()
        self._connection.close()
        self._connection = None

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor in the burst under way. One DuckDB connection object used from two
        threads at once fails with "connection is busy", so each thread gets its own."""
        connection = self._connection
        if connection is None or self._holders == 0:
            raise RuntimeError("the store's file is held only inside `with store.held()` (or a store method)")
        mine = getattr(self._local, "cursor", None)
        if mine is None or mine[0] is not connection:
            with self._lock:
                mine = self._local.cursor = (connection, connection.cursor())
                self._cursors.append(mine[1])
        return mine[1]

    def close(self) -> None:
        """Lets go of the runs this store was running: any it left going are interrupted for every
        other process. The file itself is held only by bursts, never by an open store."""
        self.owners.release_all()

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
        with self.held() as cursor:
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
