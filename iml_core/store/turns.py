"""Processes taking turns on one DuckDB file (docs/ARCHITECTURE.md §4).

DuckDB lets one process at a time open a file. A process opens it when one of its threads needs
it, shares that connection between its threads (a cursor each) while any of them does, and
closes it soon after the last is done: at once when another process is waiting, else after
LINGER_SECONDS, so that a page's reads or a run's next commit need not open it again. A process
that finds the file taken waits with backoff, saying so under FILE.owners/.waiting, and gives up
after `wait` seconds naming the holder.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import random
import re
import threading
import time
import weakref
from pathlib import Path

import duckdb

from iml_core.errors import DatabaseLocked, RunFailed, UserError

# An idle connection is kept this long for the next burst of this process, unless another waits.
LINGER_SECONDS = 0.1
# The longest sleep between two tries of a waiting process; a process that let go of the file this
# recently, and sees another waiting, sleeps longer than it before taking the file back.
RETRY_CAP_SECONDS = 0.05
PAUSE_SECONDS = 0.075


def disk_problem(error: Exception, path: Path) -> RunFailed | None:
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


class Waiting:
    """Processes waiting for the file hold a shared flock on FILE.owners/.waiting; the holder tries
    an exclusive one to see whether anyone does."""

    def __init__(self, path: Path):
        self.path = Path(f"{path}.owners") / ".waiting"

    def _fd(self) -> int:
        for _ in range(3):  # the folder goes when its last owner file does (iml_core.store.owners)
            self.path.parent.mkdir(exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)

    @contextlib.contextmanager
    def announced(self):
        fd = self._fd()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def anyone(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False  # nobody has ever waited for this file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False


_OPEN_FILES: weakref.WeakSet[SharedFile] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """No thread may be inside DuckDB when the interpreter ends (it aborts): idle files close now."""
    for shared in list(_OPEN_FILES):
        shared.let_go()


class SharedFile:
    def __init__(self, path: Path, wait: float):
        self.path, self.wait = path, wait
        self.waiting = Waiting(path)
        self._state = threading.Condition()  # guards everything below
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._holders = 0
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._idle_since: float | None = None
        self._closed_at = float("-inf")
        self._closer: threading.Thread | None = None
        self._local = threading.local()
        _OPEN_FILES.add(self)

    @contextlib.contextmanager
    def held(self):
        """This thread's cursor on the file, held until the block ends."""
        with self._state:
            if self._connection is None:
                if time.monotonic() - self._closed_at < PAUSE_SECONDS and self.waiting.anyone():
                    time.sleep(PAUSE_SECONDS)  # another process waits: its turn comes first
                self._connection = self._open()
            self._holders += 1
            self._idle_since = None
        try:
            yield self._cursor()
        finally:
            with self._state:
                self._holders -= 1
                if self._holders == 0:
                    self._idle_since = time.monotonic()
                    if self.waiting.anyone():
                        self._close()
                    elif self._closer is None:
                        self._closer = threading.Thread(target=self._close_when_idle, daemon=True,
                                                        name=f"iml-db-linger-{self.path.name}")
                        self._closer.start()
                    self._state.notify_all()

    def let_go(self) -> None:
        """Closes the file now if no thread of this process is using it."""
        with self._state:
            if self._connection is not None and self._holders == 0:
                self._close()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        # One DuckDB connection object used from two threads at once fails with "connection is busy".
        connection = self._connection
        mine = getattr(self._local, "cursor", None)
        if mine is None or mine[0] is not connection:
            with self._state:
                mine = self._local.cursor = (connection, connection.cursor())
                self._cursors.append(mine[1])
        return mine[1]

    def _close_when_idle(self) -> None:
        with self._state:
            while self._connection is not None:
                if self._holders > 0:
                    self._state.wait()  # until the last holder is done
                elif time.monotonic() - self._idle_since >= LINGER_SECONDS or self.waiting.anyone():
                    self._close()
                else:
                    self._state.wait(0.01)
            self._closer = None

    def _close(self) -> None:
        for cursor in self._cursors:
            cursor.close()
        self._cursors.clear()
        self._connection.close()
        self._connection = None
        self._closed_at = time.monotonic()

    def _open(self) -> duckdb.DuckDBPyConnection:
        """The file, opened as soon as no other process holds it, within `wait` seconds."""
        deadline, delay, announced = time.monotonic() + self.wait, 0.002, False
        with contextlib.ExitStack() as waiting:
            while True:
                try:
                    return duckdb.connect(str(self.path))
                except duckdb.IOException as e:
                    message = str(e)
                    if "lock" not in message.lower():
                        raise disk_problem(e, self.path) or UserError(
                            f"cannot open the database {self.path} ({message}); "
                            "pass --db with a DuckDB file or the name of a new one") from None
                    if time.monotonic() >= deadline:
                        raise DatabaseLocked(
                            f"the database {self.path} is in use by {_holder(message)}, which has held it for over "
                            f"{self.wait:g} s (IML processes take turns on a file, each holding it only while it "
                            "writes a step or reads a page); stop that process, wait longer with "
                            "IML_DB_WAIT=SECONDS, or pass --db with another file") from None
                except duckdb.Error as e:
                    raise UserError(f"{self.path} is not a usable DuckDB database ({e}); "
                                    "pass --db with another file") from None
                if not announced:
                    announced = waiting.enter_context(self.waiting.announced()) or True
                # Jittered, so that two waiting processes do not retry in step.
                time.sleep(min(delay, max(deadline - time.monotonic(), 0)) * random.uniform(0.5, 1.0))
                delay = min(delay * 2, RETRY_CAP_SECONDS)
