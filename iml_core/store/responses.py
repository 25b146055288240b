"""The response cache (iml_core.agents.llm.ResponseCache) kept in the store's file."""

from __future__ import annotations

import duckdb

from iml_core.store.database import Database


class StoredResponseCache:
    """Model answers by the key of everything that decided them, shared by every run in the file,
    so a repeated call costs nothing."""

    def __init__(self, database: Database):
        self._database = database

    def get(self, key: str) -> dict | None:
        with self._database.held() as cursor:
            row = cursor.execute("SELECT raw, text, sentence FROM response_cache WHERE key = ?", [key]).fetchone()
        return None if row is None else {"raw": row[0], "text": row[1], "sentence": row[2]}

    def put(self, key: str, value: dict) -> None:
        try:
            with self._database.held() as cursor:
                cursor.execute("INSERT OR IGNORE INTO response_cache (key, raw, text, sentence) VALUES (?, ?, ?, ?)",
                               [key, value["raw"], value["text"], value.get("sentence")])
        except (duckdb.TransactionException, duckdb.ConstraintException):
            # Another thread stored the same key at the same moment (a run's step-0 eval and its no-notes
            # baseline ask the very same call): DuckDB reports the clash of two uncommitted inserts as a
            # conflict or as a duplicate key, never as an IGNORE. The answer is stored either way.
            pass
