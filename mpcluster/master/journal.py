"""Job state on disk (standard-library sqlite3): jobs, their tasks' arguments and their results.

The journal is where tasks and results live, not a copy of memory: the master keeps two bytes per task in memory
(done, attempts) and reads arguments when it leases and results when a client reads, so a job of a million tasks
costs the master a few megabytes. Without ``MPC_JOURNAL`` the same tables live in an in-memory database (nothing
survives a restart then).

Every change is one SQLite transaction in WAL mode: a crash at any point leaves either the whole change or none
of it. ``synchronous=NORMAL`` survives a killed process (the container case); only a power cut can lose the last
few commits, which then simply run again.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

VERSION = 2  # PRAGMA user_version of this layout; a journal of another layout is moved aside, never misread
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, created REAL NOT NULL, finished REAL,
    state TEXT NOT NULL DEFAULT 'running', added INTEGER NOT NULL DEFAULT 0, closed INTEGER NOT NULL DEFAULT 0,
    task_timeout REAL, max_attempts INTEGER NOT NULL DEFAULT 3,
    redeliveries INTEGER NOT NULL DEFAULT 0, duplicates_dropped INTEGER NOT NULL DEFAULT 0,
    handed_back INTEGER NOT NULL DEFAULT 0, restarts INTEGER NOT NULL DEFAULT 0,
    poisoned INTEGER NOT NULL DEFAULT 0, per_worker TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS tasks (
    job TEXT NOT NULL, id INTEGER NOT NULL, args TEXT NOT NULL, PRIMARY KEY (job, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    job TEXT NOT NULL, seq INTEGER NOT NULL, id INTEGER NOT NULL, worker TEXT NOT NULL, ok INTEGER NOT NULL,
    elapsed REAL, record TEXT NOT NULL, PRIMARY KEY (job, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
JOB_COLUMNS = ("id", "kind", "created", "finished", "state", "added", "closed", "task_timeout", "max_attempts",
               "redeliveries", "duplicates_dropped", "handed_back", "restarts", "poisoned", "per_worker")

# A result row: (job, seq, task id, worker, ok, elapsed, the record's JSON text)
ResultRow = tuple[str, int, int, str, int, "float | None", str]


class Journal:
    def __init__(self, path: str = ":memory:"):
        self.path = path
        self.durable = path != ":memory:"
        self.moved_aside = ""  # set when a journal of another layout was found and moved aside
        if self.durable and os.path.exists(path) and self._version_of(path) not in (0, VERSION):
            self.moved_aside = f"{path}.v{self._version_of(path)}-{int(time.time())}"
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.replace(path + suffix, self.moved_aside + suffix)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version={VERSION}")

    @staticmethod
    def _version_of(path: str) -> int:
        db = sqlite3.connect(path)
        try:
            has_tables = db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
            return db.execute("PRAGMA user_version").fetchone()[0] if has_tables else 0
        finally:
            db.close()

    def _tx(self, fn) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- writes ------------------------------------------------------------------------------------------------
    def add_job(self, job_id: str, kind: str, created: float, task_timeout: float | None, max_attempts: int) -> None:
        self._tx(lambda db: db.execute(
            "INSERT INTO jobs (id, kind, created, task_timeout, max_attempts) VALUES (?, ?, ?, ?, ?)",
            (job_id, kind, created, task_timeout, max_attempts)))

    def add_tasks(self, job_id: str, first: int, args: list[str], closed: bool, counters: dict | None = None) -> None:
        """A chunk of tasks (their arguments' JSON text, ids from ``first`` on), in one transaction with the job's
        new size, whether it is closed, and any other counters (e.g. finished, for an empty last chunk)."""

        def write(db):
            db.executemany("INSERT INTO tasks (job, id, args) VALUES (?, ?, ?)",
                           ((job_id, first + i, a) for i, a in enumerate(args)))
            self._set(db, job_id, {"added": first + len(args), "closed": int(closed), **(counters or {})})

        self._tx(write)

    def add_results(self, rows: list[ResultRow], counters: dict[str, dict]) -> None:
        """Result rows and job counters ({job: {column: value}}) in one transaction."""

        def write(db):
            db.executemany("INSERT INTO results (job, seq, id, worker, ok, elapsed, record) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           rows)
            for job_id, values in counters.items():
                self._set(db, job_id, values)

        self._tx(write)

    def update_job(self, job_id: str, **values) -> None:
        self.add_results([], {job_id: values})

    @staticmethod
    def _set(db, job_id: str, values: dict) -> None:
        if values:
            assert set(values) <= set(JOB_COLUMNS), values  # column names never come from the wire
            sets = ", ".join(f"{k} = ?" for k in values)
            db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values.values(), job_id))

    def drop_job(self, job_id: str) -> None:
        def write(db):
            for table in ("results", "tasks"):
                db.execute(f"DELETE FROM {table} WHERE job = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

        self._tx(write)

    # ---- reads -------------------------------------------------------------------------------------------------
    def task_args(self, job_id: str, ids: list[int]) -> dict[int, str]:
        """The arguments' JSON text of some tasks of a job (a lease's batch: usually a run of ids)."""
        if not ids:
            return {}
        lo, hi = min(ids), max(ids)
        with self._lock:
            if hi - lo < 4 * len(ids):
                rows = self._db.execute("SELECT id, args FROM tasks WHERE job = ? AND id BETWEEN ? AND ?",
                                        (job_id, lo, hi)).fetchall()
            else:
                rows = []
                for i in range(0, len(ids), 500):
                    part = ids[i : i + 500]
                    rows += self._db.execute(f"SELECT id, args FROM tasks WHERE job = ? AND id IN "
                                             f"({','.join('?' * len(part))})", (job_id, *part)).fetchall()
        wanted = set(ids)
        return {i: a for i, a in rows if i in wanted}

    def results(self, job_id: str, after: int, limit: int) -> list[str]:
        """Result records' JSON text, in arrival order, from the (after+1)-th on."""
        with self._lock:
            return [r for (r,) in self._db.execute(
                "SELECT record FROM results WHERE job = ? AND seq > ? ORDER BY seq LIMIT ?", (job_id, after, limit))]

    def load(self) -> list[dict]:
        """Every job (oldest first) with what memory needs of it: its columns, the ids done, and per worker
        (tasks, seconds, errors) from the results."""
        with self._lock:
            jobs = []
            for row in self._db.execute(f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs ORDER BY created").fetchall():
                job = dict(zip(JOB_COLUMNS, row, strict=True))
                job["done_ids"] = [i for (i,) in self._db.execute("SELECT id FROM results WHERE job = ?", (job["id"],))]
                job["by_worker"] = self._db.execute(
                    "SELECT worker, count(*), coalesce(sum(elapsed), 0), sum(1 - ok) FROM results WHERE job = ? "
                    "GROUP BY worker", (job["id"],)).fetchall()
                jobs.append(job)
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
