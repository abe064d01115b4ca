"""The transitions that change what the journal holds, each in one place and each in the same order: the journal
first, then memory. If the journal raises (a full disk, say), memory has not changed, and the error is the
answer to the call that asked for it, so the caller can send it again.

The recorder *has* the journal, the book of jobs and the lease table; it holds no lock and reads no clock: the
dispatcher calls it with its lock held and passes ``now``, as it does for the state types.
"""

from __future__ import annotations

from collections.abc import Callable

from ..protocol import CLASSIC_JOB
from .bridge import ClassicBridge
from .jobbook import JobBook
from .jobs import JobState, JobStatus
from .journal import Journal
from .leases import LeaseTable
from .records import AckPlan, plan_poisoned
from .submission import Chunk


class Recorder:
    def __init__(self, journal: Journal, book: JobBook, leases: LeaseTable, classic: ClassicBridge | None,
                 event: Callable[[str], None], wake: Callable[[], None]):
        """``event(text)`` records an event; ``wake()`` wakes the long polls (both called with the lock held)."""
        self.journal, self.book, self.leases, self.classic = journal, book, leases, classic
        self._event, self._wake = event, wake

    def restore(self) -> int:
        """Jobs as the journal kept them (running ones queue again); returns how many starts came before this."""
        starts = int(self.journal.get_meta("starts", "0"))
        self.journal.set_meta("starts", str(starts + 1))
        for job in self.book.restore_all(self.journal.load()):
            self.journal.update_job(job.id, restarts=job.restarts)
            self._event(f"job {job.id} restored from the journal: {job.n_done}/{job.added} results kept, "
                        f"{job.pending(0)} tasks queued again")
        return starts

    def open_job(self, c: Chunk, now: float) -> JobState:
        """A new job from its first chunk's options (finished jobs the bounds no longer allow are forgotten)."""
        self.prune(now, incoming=len(c.args))
        self.book.check_room(len(c.args))
        self.journal.add_job(c.job_id, c.kind, now, c.task_timeout, c.max_attempts)
        return self.book.open(c, now)

    def add_tasks(self, job: JobState, c: Chunk, now: float) -> None:
        """A chunk's tasks that the job does not have yet (a chunk sent again after a lost reply adds nothing)."""
        fresh = self.book.fresh_of(job, c)
        if fresh or (not c.more and not job.closed):
            self.book.check_room(len(fresh))
            done = job.n_done == job.added + len(fresh) and not c.more
            extra = {"state": JobStatus.DONE.value, "finished": now} if done else {}
            self.journal.add_tasks(job.id, job.added, fresh, closed=not c.more, counters=extra)
            self.book.extend(job, len(fresh), closed=not c.more, now=now)
            self._wake()

    def cancel(self, job: JobState, now: float) -> None:
        if job.status is JobStatus.RUNNING:
            self.journal.update_job(job.id, state=JobStatus.CANCELLED.value, finished=now)
            self.book.cancel(job, now)
            self._event(f"job {job.id} cancelled: {job.n_done}/{job.added} results kept")
            self._wake()

    def record(self, plan: AckPlan, now: float) -> None:
        """Results (and the counters they change); the recorded tasks' leases end."""
        if plan.rows or plan.counters:
            self.journal.add_results(plan.rows, plan.counters)
        self.book.apply(plan, now)
        for job, rec in plan.fresh:
            self.leases.release((job.id, rec["id"]))
        if plan.fresh:
            self._wake()

    def requeue(self, ended: list[tuple], redelivery: bool, now: float) -> None:
        """Leases that ended unacknowledged ((key, holder), in grant order): released, and their tasks back at the
        front of their queue, a redelivery (the holder died or was cut off) or handed back (it is stopping). The
        jobs' counters are journaled best effort (the tasks themselves are safely queued); poisoned tasks fail."""
        for key, _ in ended:
            self.leases.release(key)
            if key[0] == CLASSIC_JOB and self.classic is not None:
                self.classic.requeue(key[1], redelivery)
        counters, poisoned = self.book.requeue([e for e in ended if e[0][0] != CLASSIC_JOB], redelivery)
        try:
            if counters:
                self.journal.add_results([], counters)
            if poisoned:
                self.record(plan_poisoned(poisoned, now), now)
                for job, i, _, attempts in poisoned:
                    self._event(f"task {job.id}/{i} failed: its worker died {attempts} times running it")
        except Exception as e:  # noqa: BLE001 - the journal's disk is full, say: retry the poisoned ones later
            self._event(f"journal: could not record counters or poisoned tasks ({e})")
            for job, i, _, _ in poisoned:
                job.retry.appendleft(i)
        if ended:
            self._wake()

    def prune(self, now: float, incoming: int = 0) -> None:
        """Forget finished jobs the bounds no longer allow: from the journal first, then from memory."""
        for job in self.book.prunable(now, incoming):
            self.journal.drop_job(job.id)
            self.book.forget(job.id)
