"""Which process is running which run, so that any process can tell a run that goes on elsewhere
from one a dead process left `running`: with every process taking turns on the file, having it
open no longer means being the only one there (docs/ARCHITECTURE.md §4).

A process running runs of a file keeps `FILE.owners/PID-TOKEN`, the ids of those runs one a line,
under an exclusive flock. The kernel lets go of the lock when the process ends, however it ends
(kill -9 included), so a run is going while a file someone holds lists it. A claim comes before
the run's status says it goes, and a release after it says it stopped: whoever reads a going
status and then the files finds the run's owner there.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import threading
from pathlib import Path

from iml_core.errors import RunFailed, UserError

_LOCK = threading.Lock()  # the Owners of every store in this process take turns


class Owners:
    def __init__(self, db_path: Path):
        self.folder = Path(f"{db_path}.owners")
        self._fd: int | None = None
        self._name: str | None = None
        self._runs: set[int] = set()

    def claim(self, run_id: int) -> None:
        """This process runs `run_id` from now on; refused while another live process runs it."""
        with _LOCK:
            if run_id in self._runs:
                return
            other = self._others().get(run_id)
            if other is not None and other != os.getpid():  # another store of this process may hand it over
                raise UserError(f"run {run_id} is being run by process {other}; wait for it to end or stop it "
                                "there (the dashboard's Live page or Ctrl-C in its terminal)")
            if self._fd is None:
                self._start()
            self._runs.add(run_id)
            self._write()

    def release(self, run_id: int) -> None:
        with _LOCK:
            if run_id not in self._runs:
                return
            self._runs.discard(run_id)
            if self._runs:
                self._write()
            else:
                self._stop()

    def release_all(self) -> None:
        with _LOCK:
            self._runs.clear()
            if self._fd is not None:
                self._stop()

    def process_of(self, run_id: int) -> int | None:
        """The pid of the live process running `run_id` (this one's included), or None."""
        with _LOCK:
            return os.getpid() if run_id in self._runs else self._others().get(run_id)

    def elsewhere(self) -> dict[int, int]:
        """Run id -> pid of every run another live process is running."""
        with _LOCK:
            return self._others()

    def going(self) -> set[int]:
        """The runs a live process (this one included) is running. The files of processes that
        ended are removed on the way."""
        with _LOCK:
            return self._runs | set(self._others())

    def _others(self) -> dict[int, int]:
        """Run id -> pid of the live process running it, for every process but this store."""
        runs: dict[int, int] = {}
        try:
            entries = [p for p in self.folder.iterdir() if not p.name.startswith(".") and p.name != self._name]
        except FileNotFoundError:
            return runs
        for path in entries:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # its process let go of its last run meanwhile
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:  # held: its process is alive
                    pid = int(path.name.split("-")[0])
                    runs.update(dict.fromkeys(_ids(fd), pid))
                else:
                    path.unlink(missing_ok=True)  # nobody holds it: its process has ended
            finally:
                os.close(fd)
        return runs

    def _write(self) -> None:
        """The list written over the old one, then cut to length: a reader never sees a run that
        still goes missing from it (at worst the tail of a longer old list)."""
        data = "".join(f"{i}\n" for i in sorted(self._runs)).encode()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))

    def _start(self) -> None:
        # Locked under a hidden name, then renamed: no other process sees it unlocked and takes it for dead.
        name = f"{os.getpid()}-{secrets.token_hex(4)}"
        hidden = self.folder / f".{name}"
        for _ in range(3):  # another process may remove the folder, empty, between mkdir and open
            try:
                self.folder.mkdir(exist_ok=True)
                fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                break
            except FileNotFoundError:
                continue
            except OSError as e:
                raise self._unwritable(e) from None
        else:
            raise self._unwritable(FileNotFoundError(2, "the folder keeps disappearing"))
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(hidden, self.folder / name)
        self._fd, self._name = fd, name

    def _unwritable(self, error: OSError) -> RunFailed:
        return RunFailed(f"cannot note which runs this process runs in {self.folder} ({error.strerror}); make "
                         "the database's folder writable or pass --db with a file in a writable folder")

    def _stop(self) -> None:
        """No run of this process any more: its file goes, and the folder too when no other is left."""
        (self.folder / self._name).unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = self._name = None
        with contextlib.suppress(OSError):  # not empty: another process's file, or who waits for the file
            self.folder.rmdir()


def _ids(fd: int) -> list[int]:
    data = b""
    while chunk := os.pread(fd, 65536, len(data)):
        data += chunk
    return [int(line) for line in data.split() if line.isdigit()]
