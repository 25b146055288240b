"""Processes taking turns on one DuckDB file (docs/ARCHITECTURE.md §4).

DuckDB lets one process at a time open a file. A process opens it when one of its threads needs
it, shares that connection between its threads (a cursor each) while any of them does, and
closes it soon after the last is done: at once when another process is waiting, else after
LINGER_SECONDS, so that a page's reads or a run's next commit need not open it again. A process
that finds the file taken waits with backoff, saying so under FILE.owners/.waiting, and gives up
after `wait` seconds naming the holder.

Who holds the file is decided by our own lock, an exclusive flock on FILE.owners/.holder taken
before DuckDB opens the file and let go only after it has closed it, not by DuckDB's lock alone:
DuckDB's is a POSIX record lock, which the kernel drops for the whole process when any descriptor
of the file is closed in it (DuckDB itself opens the file twice to read its header before each
open), so it cannot promise that two processes never have the file open at once. A flock belongs
to its open file description and goes only with it, or with the process. The file is handed over
clean: checkpointed before it is closed (DuckDB's own checkpoint at close swallows its errors), and
checkpointed at once by whoever opens it after a holder died, so that nothing is ever appended to
a dead process's write-ahead log.
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


def _open_beside(path: Path) -> int:
    """A file of FILE.owners/, made if need be. The folder goes when its last file does
    (iml_core.store.owners), so it may vanish between the mkdir and the open."""
    for _ in range(3):
        path.parent.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


class Holder:
    """The one process that may have the DuckDB file open: it holds an exclusive flock on
    FILE.owners/.holder, with its pid written in the file, from before DuckDB opens the file until
    after DuckDB has closed it."""

    def __init__(self, path: Path):
        self.path = Path(f"{path}.owners") / ".holder"
        self._fd: int | None = None

    def take(self) -> bool:
        """True when this process now holds the file; False at once when another does."""
        fd = _open_beside(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        data = f"{os.getpid()}\n".encode()
        with contextlib.suppress(OSError):  # a full disk: the pid only names the holder in a message
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        self._fd = fd
        return True

    def let_go(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the flock goes with its only descriptor
            self._fd = None

    def pid(self) -> str | None:
        """The pid of the process holding the file, as it wrote it."""
        with contextlib.suppress(OSError):
            text = self.path.read_text().strip()
            return text if text.isdigit() else None
        return None


class Waiting:
    """Processes waiting for the file hold a shared flock on FILE.owners/.waiting; the holder tries
    an exclusive one to see whether anyone does."""

    def __init__(self, path: Path):
        self.path = Path(f"{path}.owners") / ".waiting"

    def _fd(self) -> int:
        return _open_beside(self.path)

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
        self.holder = Holder(path)
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
        try:
            # The next process finds everything in the file itself and no write-ahead log. A failed
            # checkpoint leaves the log, which the next process replays: nothing is lost either way.
            with contextlib.suppress(duckdb.Error):
                self._connection.execute("CHECKPOINT")
            self._connection.close()
        finally:
            self._connection = None
            self.holder.let_go()  # only now: DuckDB has closed the file
            self._closed_at = time.monotonic()

    def _open(self) -> duckdb.DuckDBPyConnection:
        """The file, opened as soon as no other process holds it, within `wait` seconds."""
        deadline, delay, announced = time.monotonic() + self.wait, 0.002, False
        with contextlib.ExitStack() as waiting:
            while True:
                try:
                    taken = self.holder.take()
                except OSError as e:  # the folder beside the file cannot be written: neither can the file
                    raise disk_problem(e, self.path) or RunFailed(
                        f"cannot take the database {self.path} ({e.strerror}); make its folder writable or pass "
                        "--db with a file in a writable folder") from None
                if taken:
                    try:
                        return self._connect()
                    except duckdb.IOException as e:
                        self.holder.let_go()
                        message = str(e)  # held by a process that is not ours (the duckdb shell)
                        if "lock" not in message.lower():
                            raise disk_problem(e, self.path) or UserError(
                                f"cannot open the database {self.path} ({message}); "
                                "pass --db with a DuckDB file or the name of a new one") from None
                    except duckdb.Error as e:
                        self.holder.let_go()
                        raise UserError(f"{self.path} is not a usable DuckDB database ({e}); "
                                        "pass --db with another file") from None
                    except BaseException:
                        self.holder.let_go()
                        raise
                else:
                    pid = self.holder.pid()
                    message = f"PID {pid}" if pid else ""
                if time.monotonic() >= deadline:
                    raise DatabaseLocked(
                        f"the database {self.path} is in use by {_holder(message)}, which has held it for over "
                        f"{self.wait:g} s (IML processes take turns on a file, each holding it only while it "
                        "writes a step or reads a page); stop that process, wait longer with "
                        "IML_DB_WAIT=SECONDS, or pass --db with another file") from None
                if not announced:
                    announced = waiting.enter_context(self.waiting.announced()) or True
                # Jittered, so that two waiting processes do not retry in step.
                time.sleep(min(delay, max(deadline - time.monotonic(), 0)) * random.uniform(0.5, 1.0))
                delay = min(delay * 2, RETRY_CAP_SECONDS)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """DuckDB's connection, with this process holding the file. A write-ahead log found here was
        left by a holder that died: it is replayed by the open and checkpointed before anything is
        written, so no commit of ours ever lands after a torn end of that log."""
        left_behind = Path(f"{self.path}.wal").exists()
        connection = duckdb.connect(str(self.path))
        if left_behind:
            try:
                connection.execute("CHECKPOINT")
            except BaseException:
                connection.close()
                raise
        return connection
