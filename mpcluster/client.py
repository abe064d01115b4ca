"""The Python API: run your functions on the cluster from any program.

    from mpcluster import Client

    with Client("127.0.0.1:5000", authkey_file=".secrets/authkey") as c:
        for count in c.map("wordcount", ({"text": line} for line in open("book.txt"))):
            ...

``map`` streams: it sends tasks in chunks while it reads results, keeps at most ``window`` tasks in flight, and
yields each task's value in input order. ``submit`` returns a ``Job`` to follow (``results()``), ask about
(``status()``) or ``cancel()``; ``Client.attach(job_id)`` picks up a job submitted earlier, from anywhere. Every
call survives a master restart or a lost connection: the link is rebuilt and the job followed from its cursor.
The command line (``python3 -m mpcluster submit | results | cancel | status``) is a thin layer over this.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from .config import ClientSettings, parse_address, read_authkey
from .link import Link
from .protocol import DEFAULT_MAX_ATTEMPTS, AuthFailed, Unreachable

log = logging.getLogger("mpcluster")

CHUNK = 10_000  # tasks per submit call: no single call pickles a whole big job
POLL_SECONDS = 2.0  # a results long poll waits this long at most when nothing new arrives


class TaskFailed(Exception):
    """A task's error result: its exception's type and message, and the traceback from the worker."""

    def __init__(self, job: str, record: dict):
        error = record.get("error") or {}
        self.job, self.task_id, self.worker = job, record.get("id"), record.get("worker")
        self.type, self.message = error.get("type", "Error"), error.get("message", "")
        self.traceback = error.get("traceback", "")
        super().__init__(f"task {self.task_id} of job {job} failed on worker {self.worker}: {self.type}: "
                         f"{self.message}")


class JobCancelled(Exception):
    """The job was cancelled while it was being followed."""


class Client:
    """A connection to a master. ``address`` is "HOST:PORT" (default: $MPC_MASTER_HOST:$MPC_PORT); the key is
    read from ``authkey_file`` (default: $MPC_AUTHKEY_FILE) unless ``authkey`` is given."""

    def __init__(self, address: str | None = None, *, authkey_file: str | None = None, authkey: bytes | None = None,
                 connect_timeout: float = 30.0, link: Link | None = None):
        if link is None:
            settings = ClientSettings.from_env()
            host, port = parse_address("address", address) if address else (settings.master_host, settings.port)
            key = authkey if authkey is not None else read_authkey(
                authkey_file or settings.authkey_file, "authkey_file" if authkey_file else "MPC_AUTHKEY_FILE")
            link = Link(host, port, key)
        self.link, self.connect_timeout = link, connect_timeout
        self._stop = threading.Event()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self.link.close()

    @property
    def where(self) -> str:
        return self.link.where

    def call(self, method: str, *args):
        """A dispatcher call that reconnects (up to ``connect_timeout`` without success) when the link is lost.
        Raises Unreachable, AuthFailed, or the master's answer to a bad request (ValueError, KeyError)."""
        deadline = None
        while True:
            try:
                if self.link.dispatcher is None:
                    self.link.open()
                    if self.link.mode != "mpcluster":
                        raise Unreachable(f"the master at {self.where} only offers the lesson's queues "
                                          "(a plain lesson master): use --protocol classic")
                return self.link.call(method, *args)
            except Unreachable as e:
                if deadline is None:
                    log.warning("lost the master at %s (%s); reconnecting", self.where, e)
                deadline = deadline or time.monotonic() + self.connect_timeout
                if self.link.mode == "classic" or time.monotonic() >= deadline:
                    raise
                if not self.link.open_with_retry(self._stop, "client", deadline):
                    raise Unreachable(f"could not reach the master at {self.where} within "
                                      f"{self.connect_timeout:g} s") from None

    def submit(self, kind: str, args: Iterable[dict], *, task_timeout: float | None = None,
               max_attempts: int = DEFAULT_MAX_ATTEMPTS, job_id: str | None = None) -> Job:
        """Submit one task per item of ``args`` (each a dict of keyword arguments for ``kind``), in chunks;
        returns the Job once every task is with the master."""
        job = Job(self, job_id or "job-" + uuid.uuid4().hex[:12], kind, task_timeout, max_attempts)
        items = iter(args)
        while True:
            chunk = list(itertools.islice(items, CHUNK))
            job.send(chunk, more=len(chunk) == CHUNK)
            if len(chunk) < CHUNK:
                return job

    def map(self, kind: str, args: Iterable[dict], *, task_timeout: float | None = None,
            max_attempts: int = DEFAULT_MAX_ATTEMPTS, window: int = 20_000) -> Iterator[Any]:
        """Run ``kind`` on each item of ``args`` and yield the values in input order as they become available.

        At most ``window`` tasks are in flight, so memory stays bounded however long ``args`` is. A task that
        failed raises TaskFailed (with the worker's traceback) when its turn comes."""
        job = Job(self, "map-" + uuid.uuid4().hex[:12], kind, task_timeout, max_attempts)
        items = iter(args)
        waiting: dict[int, dict] = {}
        yielded, exhausted = 0, False
        while not exhausted or yielded < job.sent:
            if not exhausted and job.sent - yielded < window:
                chunk = list(itertools.islice(items, min(CHUNK, window - (job.sent - yielded))))
                exhausted = len(chunk) < min(CHUNK, window - (job.sent - yielded))
                job.send(chunk, more=not exhausted)
                continue
            for r in job.poll()[0]:
                waiting[r["id"]] = r
            if job.summary and job.summary["state"] == "cancelled" and yielded + len(waiting) < job.sent:
                raise JobCancelled(f"job {job.id} was cancelled")
            while yielded in waiting:
                r = waiting.pop(yielded)
                yielded += 1
                if not r["ok"]:
                    raise TaskFailed(job.id, r)
                yield r["value"]

    def attach(self, job_id: str) -> Job:
        """A job submitted earlier (by this program or another), to follow from its first result."""
        job = Job(self, job_id, "", None, DEFAULT_MAX_ATTEMPTS)
        job.summary = self.call("job", job_id)
        job.kind, job.sent, job.closed = job.summary["kind"], job.summary["tasks"], True
        return job

    def status(self) -> dict:
        """The cluster as the master sees it (the same as ``status --json`` and the page's /api/status)."""
        return self.call("status")


class Job:
    """A job on the master, followed through a cursor over its results (in arrival order)."""

    def __init__(self, client: Client, job_id: str, kind: str, task_timeout: float | None, max_attempts: int):
        self.client, self.id, self.kind = client, job_id, kind
        self.task_timeout, self.max_attempts = task_timeout, max_attempts
        self.sent, self.closed, self.cursor = 0, False, 0
        self.summary: dict | None = None

    def send(self, args: list[dict], more: bool) -> None:
        """Hand a chunk of tasks to the master (``more``: others follow). Safe to repeat after a lost reply."""
        self.client.call("submit", {"id": self.id, "kind": self.kind, "tasks": args, "first": self.sent,
                                    "more": more, "task_timeout": self.task_timeout,
                                    "max_attempts": self.max_attempts})
        self.sent += len(args)
        self.closed = not more

    def poll(self, wait_s: float = POLL_SECONDS) -> tuple[list[dict], dict]:
        """One long poll: the results that arrived since the last one (as dicts) and the job's summary."""
        self.cursor, chunk, self.summary = self.client.call("results", self.id, self.cursor, wait_s)
        return [json.loads(r) for r in chunk], self.summary

    def finished(self) -> bool:
        return bool(self.summary) and self.summary["state"] != "running" and self.cursor >= self.summary["done"]

    def results(self) -> Iterator[dict]:
        """Every result record (``id``, ``ok``, ``value`` or ``error``, ``worker``, ``ip``, ``elapsed``,
        ``attempt``) in arrival order, streamed, until the job is done or cancelled."""
        while not self.finished():
            yield from self.poll()[0]

    def status(self) -> dict:
        """The job's summary: state (running, done, cancelled), counts, per-worker figures."""
        self.summary = self.client.call("job", self.id)
        return self.summary

    def cancel(self) -> dict:
        """Drop the tasks not yet run; running ones are stopped at their worker's next heartbeat."""
        self.summary = self.client.call("cancel", self.id)
        return self.summary


__all__ = ["AuthFailed", "Client", "Job", "JobCancelled", "TaskFailed", "Unreachable"]
