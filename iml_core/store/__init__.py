"""Runs, steps, notes, predictions, model calls and evaluations in one DuckDB file.

Every process (the dashboard, each command) holds the file only for a burst, a step's commit or a
page's reads, and takes turns with the others (DuckDB lets one process at a time open it); its
threads share the burst, each through its own cursor. Each learning step is written in one
transaction: a crash loses at most the step in flight. The Store is made of one class per role:

- database.py: holding the file for a burst, migrating it (schema.py), cursors and transactions;
- owners.py: which live process runs which run, so a dead one's runs are marked interrupted;
- writes.py: runs, their status and steps, deleting runs, choices and studies;
- reads.py: what pages and the command line read of runs;
- evaluations.py: notes scored without learning, baselines and ablations;
- records.py: the one write path of predictions and model calls, for steps and evaluations;
- responses.py: the response cache;
- integrity.py: whether a run's stored steps are whole (every step 0..N, with its predictions).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from iml_core.store.database import DEFAULT_DB, Database
from iml_core.store.evaluations import Evaluations
from iml_core.store.integrity import Integrity
from iml_core.store.reads import RunReads
from iml_core.store.records import Served
from iml_core.store.responses import StoredResponseCache
from iml_core.store.schema import MIGRATIONS, SCHEMA_VERSION
from iml_core.store.writes import RunWrites

__all__ = ["DEFAULT_DB", "database_path", "MIGRATIONS", "SCHEMA_VERSION", "Database", "Served", "Store",
           "StoredResponseCache"]


def database_path(given: str | Path | None = None) -> Path:
    """The database a process opens, the one rule for the CLI and the dashboard: the path given
    (--db), else $IML_DB, else DEFAULT_DB."""
    return Path(given or os.environ.get("IML_DB") or DEFAULT_DB)


class Store(RunWrites, RunReads, Evaluations, Integrity):
    def __init__(self, path: str | Path = DEFAULT_DB, *, migrate_to: int = SCHEMA_VERSION,
                 wait: float | None = None):
        super().__init__(path, migrate_to=migrate_to, wait=wait)
        self._notice_lock = threading.Lock()
        self.responses = StoredResponseCache(self)
