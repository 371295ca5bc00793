"""Noticing finished jobs with as few API calls as Krea allows.

Krea's docs suggest one ``GET /jobs/{id}`` per job every few seconds: for a 90-second video that
is ~18 calls per job. Instead, one ``GET /jobs`` (newest first, up to 1,000 a page) reports every
job created since the oldest one still in flight, so a **sweep** of one page usually covers the
whole batch. Jobs older than the pages a sweep reads (a straggler stuck for an hour behind
thousands of newer ones) get an individual ``GET /jobs/{id}``, at most once a minute each.
The list is not filtered by ``status``: Krea's filter takes one status, and a sweep must see
three outcomes (completed, failed, cancelled), so one unfiltered page bounded by the oldest job
in flight costs less than three filtered ones.

When to sweep again is decided by :mod:`sweep_schedule` (pure): every ``poll_min_s`` while a
running job's end is unknown, else just after the ends :mod:`forecast` predicts (spaced to keep
within a per-job allowance of requests), else on a completion-rate timer.

The poller returns the moment nothing is left in flight: no wait after the last sweep.

In webhook mode a delivery is only a hint: the job is confirmed with ``GET /jobs/{id}`` before
anything changes, and unknown ids are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import fields, replace

from orchestrator import errors
from orchestrator.answers import RemoteJob
from orchestrator.clock import parse_utc
from orchestrator.forecast import Allowance, Forecast, epoch_s, plan_sweep
from orchestrator.jobs import (
    REMOTE_TERMINAL,
    JobRecord,
    JobState,
    is_known_status,
    state_for_remote,
)
from orchestrator.ledger import Move
from orchestrator.pipeline import Pipeline
from orchestrator.retry import Action, Backoff, classify_read
from orchestrator.sweep_schedule import Pace, aimed_gap, next_delay

S = JobState
log = logging.getLogger(__name__)
MAX_PAGES = 3
#: A job Krea keeps answering 404 for (deleted elsewhere, another account) is given up as failed
#: rather than waited for forever; failed jobs are free and --retry-failed can resend it.
MISSING_LIMIT = 3
#: How long after a predicted end to sweep (API seconds): Krea's list may lag its own clock.
SWEEP_LAG_S = 0.25


def _moves_for(tracked: Sequence[JobRecord], seen: dict[str, RemoteJob]) -> list[Move]:
    """The ledger moves that Krea's view of ``tracked`` jobs calls for (pure)."""
    moves = []
    for job in tracked:
        remote = seen.get(job.remote_id or "")
        if remote is None or (remote.status == job.remote_status and job.state is not S.SUBMITTED):
            continue
        if job.state is S.ORPHAN:
            moves.append(
                Move(job.key, S.ORPHAN, S.ORPHAN, "remote status", {"remote_status": remote.status})
            )
            continue
        to = state_for_remote(remote.status)
        if to is S.SUBMITTED and remote.status == job.remote_status:
            continue
        moves.append(Move(job.key, S.SUBMITTED, to, _cause(remote), _fields(remote)))
    return moves


def _cause(remote: RemoteJob) -> str:
    known = remote.status in REMOTE_TERMINAL or is_known_status(remote.status)
    return f"Krea: {remote.status}" if known else f"Krea: unknown status {remote.status!r}"


def _fields(remote: RemoteJob) -> dict[str, object]:
    fields: dict[str, object] = {"remote_status": remote.status}
    if remote.status == "completed":
        fields |= {
            "result_url": remote.urls[0] if remote.urls else None,
            "completed_at": remote.completed_at,
        }
    if remote.status == "failed" or remote.error_code:
        reason = ": ".join(x for x in (remote.error_code, remote.error_message) if x)
        fields["last_error"] = reason or "failed (Krea gave no reason)"
    return fields


def _wanted_entry(wanted: dict[str, JobRecord], key: str) -> str:
    return next((job.entry_id for job in wanted.values() if job.key == key), key)


class Poller:
    """Mirrors remote statuses of the batch's in-flight jobs into the ledger until none is left."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self.pace = Pace()
        self.forecast = Forecast()
        self.allowance = Allowance()
        self._first_page: tuple[float, float] | None = None  #: (answered, newest Krea timestamp)
        self._hints: set[str] = set()
        self._wake = asyncio.Event()
        self._last_get: dict[str, float] = {}
        self._missing: Counter[str] = Counter()  #: consecutive 404s per job
        self._unknown: set[str] = set()  #: unknown status words already warned about
        self._last_sweep: float | None = None
        #: the next sweep is one the forecast asked for, paid from the allowance; a sweep of
        #: the poll_min floor (a running job's end unknown) is the account's, paid by time
        self._charged = True
        self._backoff = Backoff(
            pipe.rng, base_s=pipe.tuning.backoff_base_s, cap_s=pipe.tuning.backoff_cap_s
        )

    def hint(self, remote_id: str) -> None:
        """A webhook said this job changed: confirm it soon."""
        self._hints.add(remote_id)
        self._wake.set()

    async def run(self) -> None:
        """Return once the submitter is done and no job of the batch is in flight."""
        while True:
            self.pipe.submitted.clear()  # before looking: a job sent from now on wakes _idle
            tracked = await self._tracked()
            if not tracked:
                if self.pipe.flags.submitting_done.is_set() and not await self._unsettled():
                    return
                await self._idle()
                continue
            self._follow(tracked)
            started = self.pipe.clock.now()
            try:
                finished = await self._sweep(tracked)
                self._backoff.succeeded()
            except (errors.ApiError, errors.TransportError) as exc:
                await self._sweep_failed(exc)
                continue
            now = self.pipe.clock.now()
            last = self._last_sweep if self._last_sweep is not None else now
            self.pace.learn(finished, now - last)
            self._last_sweep = now
            if finished == len(tracked) and not await self._tracked():
                continue  # nothing left in flight: no wait (the run may be over)
            self._plan(started)
            backlogged = sum(1 for t in tracked if t.remote_status == "backlogged")
            interval = next_delay(self.pace, backlogged=backlogged, tuning=self.pipe.tuning)
            self._charged = not self.pace.unknown
            await self._wait(interval - (now - started))  # from this sweep's start to the next

    def _follow(self, tracked: Sequence[JobRecord]) -> None:
        """Hand jobs new in flight to the forecast; each earns its share of status requests."""
        for job in tracked:
            created = job.remote_created_at or job.created_at
            if job.remote_id and created:
                known = self.forecast.track(job.remote_id, job.model, job.remote_status, created)
                if known:
                    self.allowance.earn()
        self.forecast.keep_only(job.remote_id for job in tracked if job.remote_id)

    def _plan(self, started: float) -> None:
        """Aim the next sweep just after predicted ends, spaced as the allowance affords.

        ``started`` is when the sweep just done began: intervals run from one start to the next.
        """
        tuning = self.pipe.tuning
        gap = aimed_gap(self.allowance.left, self.pace, tuning)
        end = plan_sweep(self.forecast.ends(), gap, not_before=started + gap - SWEEP_LAG_S)
        self.pace.next_end_in_s = None if end is None else end + SWEEP_LAG_S - started
        unpredicted = self.forecast.unpredicted()
        self.pace.unknown = unpredicted > 0 or self.forecast.skew_s is None
        self.pace.all_predicted = end is not None and unpredicted == 0

    async def _sweep_failed(self, exc: errors.ApiError | errors.TransportError) -> None:
        """Back off (Retry-After when given); a rate 429 also slows every request down."""
        if classify_read(exc).action is not Action.RETRY:
            raise exc
        if isinstance(exc, errors.RateLimited):
            self.pipe.pacer.on_rate_limited()
        log.warning(
            f"status sweep failed, backing off: {exc.message}", extra={"batch": self.pipe.batch}
        )
        await self.pipe.clock.sleep(self._backoff.next_delay(exc))

    async def _tracked(self) -> list[JobRecord]:
        rows = await self.pipe.ledger.jobs(batch=self.pipe.batch, states=[S.SUBMITTED, S.ORPHAN])
        return [
            r
            for r in rows
            if r.remote_id and (r.state is S.SUBMITTED or r.remote_status not in REMOTE_TERMINAL)
        ]

    async def _unsettled(self) -> bool:
        counts = await self.pipe.ledger.state_counts(self.pipe.batch)
        return any(counts.get(s, 0) for s in (S.SUBMITTING, S.AMBIGUOUS))

    async def _idle(self) -> None:
        """Nothing in flight: wait until something is submitted or submitting ends.

        ``submitted`` was cleared before the ledger was read, never after: a job sent while
        the poller looked has set it again, and this returns at once.
        """
        waiters = [
            asyncio.ensure_future(e.wait())
            for e in (self.pipe.submitted, self.pipe.flags.submitting_done)
        ]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _wait(self, api_seconds: float) -> None:
        """Sleep until the next sweep, or until a webhook hint comes; never while one waits.

        A hint that landed during the sweep just done (after its by-id reads were chosen) is
        still queued: sweep again now rather than clear the wake-up it set and sleep on it.
        """
        if self._hints:
            return
        self._wake.clear()  # no await since the check: a hint from now on sets it again
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.pipe.clock.real_seconds(api_seconds)):
                await self._wake.wait()

    async def _sweep(self, tracked: list[JobRecord]) -> int:
        """One sweep: list pages, then stragglers and hints by id, then strangers (see
        ``strangers``). Returns jobs finished."""
        wanted = {t.remote_id: t for t in tracked if t.remote_id}
        seen, strangers = await self._list(
            wanted, min(parse_utc(t.remote_created_at or t.created_at or "") for t in tracked)
        )
        for remote_id in self._due_by_id(wanted, seen):
            self.allowance.spend()
            job = await self._get(remote_id)
            if job is not None:
                seen[remote_id] = job
        if self._first_page is not None:
            self.forecast.observe(seen, *self._first_page)
        moves = _moves_for(tracked, seen)
        retries = self._retries(moves)
        await self.pipe.ledger.apply([*moves, *retries])  # one transaction: a retry is never lost
        await self.pipe.strangers.examine(strangers, doubts_open=await self._unsettled())
        finished = await self._account(moves, wanted)
        for move in retries:
            self.pipe.reporter.job_changed(
                _wanted_entry(wanted, move.key), move.expect, S.PENDING, move.cause
            )
        return finished

    async def _list(
        self, wanted: dict[str, JobRecord], oldest: object
    ) -> tuple[dict[str, RemoteJob], list[RemoteJob]]:
        """``wanted`` jobs seen on list pages, and the jobs there no one here follows."""
        seen: dict[str, RemoteJob] = {}
        strangers: list[RemoteJob] = []
        cursor: str | None = None
        limit = min(1000, max(50, 2 * len(wanted) + 20))
        self._first_page = None
        for _ in range(MAX_PAGES):
            if self._charged:
                self.allowance.spend()
            page = await self.pipe.client.list_jobs(cursor=cursor, limit=limit)
            found = [item for item in page.items if item.job_id in wanted]
            strangers += self.pipe.strangers.unknown(
                i for i in page.items if i.job_id not in wanted
            )
            if cursor is None:
                ended = (item for item in found if item.status in REMOTE_TERMINAL)
                self._note_first_page([*page.items[:1], *ended])
            seen.update((item.job_id, item) for item in found)
            if len(seen) == len(wanted) or not page.items or not page.next_cursor:
                break
            if parse_utc(page.items[-1].created_at) < oldest:  # type: ignore[operator]
                break
            cursor, limit = page.next_cursor, 1000
        return seen, strangers

    def _note_first_page(self, items: Sequence[RemoteJob]) -> None:
        """The newest Krea timestamp on the first page (newest job first), and when it came."""
        stamps = [epoch_s(item.completed_at or item.created_at) for item in items]
        newest = max((stamp for stamp in stamps if stamp is not None), default=None)
        if newest is not None:
            self._first_page = (self.pipe.clock.now(), newest)

    def _due_by_id(self, wanted: dict[str, JobRecord], seen: dict[str, RemoteJob]) -> list[str]:
        """Hinted jobs, and stragglers the pages did not reach (each at most once per interval)."""
        now = self.pipe.clock.now()
        due = [h for h in self._hints if h in wanted]
        self._hints.clear()
        for remote_id in wanted:
            if remote_id in seen or remote_id in due:
                continue
            if now - self._last_get.get(remote_id, -1e18) >= self.pipe.tuning.straggler_every_s:
                due.append(remote_id)
        for remote_id in due:
            self._last_get[remote_id] = now
        return due

    async def _get(self, remote_id: str) -> RemoteJob | None:
        """The job by id; after MISSING_LIMIT answers of 404 in a row it counts as failed (free)."""
        try:
            job = await self.pipe.client.get_job(remote_id)
        except errors.NotFound:
            self._missing[remote_id] += 1
            if self._missing[remote_id] < MISSING_LIMIT:
                return None
            reason = f"Krea answered 404 for this job {MISSING_LIMIT} times: it no longer exists"
            return RemoteJob(remote_id, "failed", "", error_code="not_found", error_message=reason)
        self._missing.pop(remote_id, None)
        return job

    async def _account(self, moves: Sequence[Move], wanted: dict[str, JobRecord]) -> int:
        """Release slots, settle spend, queue downloads, tell the reporter."""
        finished = 0
        by_key = {job.key: job for job in wanted.values()}
        for move in moves:
            job = by_key[move.key]
            status = str(move.fields.get("remote_status"))
            if status in REMOTE_TERMINAL:
                finished += 1
                await self.pipe.window.release()
                self.pipe.budget.settle(job.price_micro, billed=status == "completed")
            if move.to is S.COMPLETED:  # as the ledger now has it: the downloader reads nothing
                self.pipe.completed.put_nowait(_after(job, move))
            note = str(move.fields.get("last_error") or (status if move.to is move.expect else ""))
            self.pipe.reporter.job_changed(job.entry_id, move.expect, move.to, note)
            self._warn_if_unknown(status, job.entry_id)
        if finished:
            self.pipe.reporter.spend_changed(
                self.pipe.budget.billed_micro, self.pipe.budget.exposure_micro
            )
        return finished

    def _warn_if_unknown(self, status: str, entry_id: str) -> None:
        """Krea added a status without notice: say so once per word (P6.7); jobs keep running."""
        if not is_known_status(status) and status not in self._unknown:
            self._unknown.add(status)
            log.warning(
                f"Krea reported an unknown status {status!r} (first for {entry_id}); "
                "treating it as still running",
                extra={"batch": self.pipe.batch},
            )

    def _retries(self, moves: Sequence[Move]) -> list[Move]:
        """--retry-failed: failed or cancelled jobs go back to pending, at most N times a run."""
        again = []
        for move in moves:
            given = self.pipe.retried.get(move.key, 0)
            if move.to in (S.FAILED, S.CANCELLED) and given < self.pipe.retry_failed:
                self.pipe.retried[move.key] = given + 1
                again.append(
                    Move(
                        move.key,
                        move.to,
                        S.PENDING,
                        f"retry {given + 1} of {self.pipe.retry_failed}",
                    )
                )
        return again


_RECORD_FIELDS = frozenset(f.name for f in fields(JobRecord))


def _after(job: JobRecord, move: Move) -> JobRecord:
    """``job`` as ``move`` left it in the ledger."""
    changed = {k: v for k, v in move.fields.items() if k in _RECORD_FIELDS}
    return replace(job, state=move.to, **changed)
