"""Job state on disk (standard-library sqlite3), so a master restart or SIGKILL keeps finished results.

Every change is one SQLite transaction in WAL mode: a crash at any point leaves either the whole change or none
of it. ``synchronous=NORMAL`` survives a killed process (the container case); only a power cut can lose the last
few commits, which then simply run again.
"""

from __future__ import annotations

import json
import sqlite3
import threading

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, created REAL NOT NULL, finished REAL,
    redeliveries INTEGER NOT NULL DEFAULT 0, duplicates_dropped INTEGER NOT NULL DEFAULT 0,
    handed_back INTEGER NOT NULL DEFAULT 0, restarts INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tasks (
    job TEXT NOT NULL, id INTEGER NOT NULL, kind TEXT NOT NULL, args TEXT NOT NULL, PRIMARY KEY (job, id));
CREATE TABLE IF NOT EXISTS results (
    job TEXT NOT NULL, id INTEGER NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (job, id));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Journal:
    def __init__(self, path: str):
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def _tx(self, fn) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add_job(self, job_id: str, created: float, tasks: list[dict]) -> None:
        def write(db):
            db.execute("INSERT INTO jobs (id, created) VALUES (?, ?)", (job_id, created))
            db.executemany(
                "INSERT INTO tasks (job, id, kind, args) VALUES (?, ?, ?, ?)",
                ((job_id, t["id"], t["kind"], json.dumps(t["args"])) for t in tasks),
            )

        self._tx(write)

    def add_results(self, rows: list[tuple[str, int, int, dict]], counters: dict[str, dict]) -> None:
        """rows: (job, task id, seq, record); counters: job -> {column: value} written in the same transaction."""

        def write(db):
            db.executemany(
                "INSERT INTO results (job, id, seq, record) VALUES (?, ?, ?, ?)",
                ((j, i, s, json.dumps(r)) for j, i, s, r in rows),
            )
            for job_id, values in counters.items():
                sets = ", ".join(f"{k} = ?" for k in values)
                db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values.values(), job_id))

        self._tx(write)

    def update_job(self, job_id: str, **values) -> None:
        self.add_results([], {job_id: values})

    def drop_job(self, job_id: str) -> None:
        def write(db):
            for table in ("results", "tasks"):
                db.execute(f"DELETE FROM {table} WHERE job = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

        self._tx(write)

    def load(self) -> list[dict]:
        """Every job with its tasks and results (in arrival order), oldest first."""
        with self._lock:
            jobs = []
            for row in self._db.execute(
                "SELECT id, created, finished, redeliveries, duplicates_dropped, handed_back, restarts "
                "FROM jobs ORDER BY created"
            ).fetchall():
                job_id = row[0]
                tasks = [
                    {"id": i, "kind": k, "args": json.loads(a)}
                    for i, k, a in self._db.execute("SELECT id, kind, args FROM tasks WHERE job = ? ORDER BY id", (job_id,))
                ]
                results = [
                    json.loads(r) for (r,) in self._db.execute("SELECT record FROM results WHERE job = ? ORDER BY seq", (job_id,))
                ]
                jobs.append(dict(zip(("id", "created", "finished", "redeliveries", "duplicates_dropped",
                                      "handed_back", "restarts"), row, strict=True), tasks=tasks, results=results))
            return jobs

    def get_meta(self, key: str, default: str = "") -> str:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self._tx(lambda db: db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
