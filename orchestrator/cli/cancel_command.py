"""`orchestrator cancel`: every job of a batch still in flight DELETEd, and the batch marked.

Its own module because it is the one reading command that talks to Krea: `status`, `report` and
the others (``commands``) never load the HTTP client.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from orchestrator import errors
from orchestrator.answers import RemoteJob
from orchestrator.cli.commands import check_batch, require_ledger
from orchestrator.client import KreaClient
from orchestrator.clock import Clock
from orchestrator.config import Settings
from orchestrator.jobs import JobRecord, JobState
from orchestrator.ledger import Ledger, LedgerLock, Move
from orchestrator.limits import Pacer
from orchestrator.retry import Action, Backoff, classify_read

S = JobState
T = TypeVar("T")
#: `cancel`'s last line: what the mark it leaves means for the next run.
CANCELLED_NOTE = (
    "batch {batch!r} is marked cancelled: `orchestrator run` finishes what is in flight and "
    "sends nothing new without --resume-cancelled"
)
#: Tries of one `cancel` request through transient failures (about a minute of backoff when
#: Krea gives no Retry-After) before the outage is said, rather than waited out.
CANCEL_TRIES = 8


async def cancel(settings: Settings, batch: str, *, recorded_base: bool = False) -> str:
    """`orchestrator cancel`: DELETE every job of ``batch`` in flight, and record the outcome.

    The batch is marked cancelled first, so the next `run` sends its pending (and waiting) jobs
    only when asked (``--resume-cancelled``). With ``recorded_base`` (no ``--api-base`` given)
    the DELETEs go to the API base the batch's last run used. Only jobs with a Krea job id can
    be cancelled: an ambiguous job's id is unknown until the next `run` reconciles it, so it is
    skipped and counted, never guessed. Requests are paced and retried as a run's are; an error that
    retrying cannot pass (a refused key, an outage outlasting ``CANCEL_TRIES``) stops it, raised
    with what was cancelled and what is still in flight.
    """
    require_ledger(settings.ledger_path)
    lock = LedgerLock(settings.ledger_path)
    lock.acquire()  # a run in progress would keep sending: it must be stopped first
    try:
        async with Ledger.open(settings.ledger_path) as ledger:
            await check_batch(ledger, batch)
            record = await ledger.batch(batch)
            if recorded_base and record is not None and record.api_base:
                settings = settings.with_(api_base=record.api_base)
            await ledger.set_cancelled(batch, True)
            rows = await ledger.jobs(batch=batch, states=[S.SUBMITTED])
            unknown = await ledger.jobs(batch=batch, states=[S.SUBMITTING, S.AMBIGUOUS])
            outcomes, stop = await _cancel_all(ledger, settings, rows)
            unsent = await ledger.state_counts(batch, current_only=True)
            blocked = len(await ledger.blocked(batch))  # waiting, but not for --resume-cancelled
    finally:
        lock.release()
    text = _cancel_text(outcomes, len(rows), len(unknown))
    if stop is not None:
        stop.args = (f"{stop.message} (API base {settings.api_base}); cancel stopped: {text}",)
        raise stop
    return f"{text}\n{CANCELLED_NOTE.format(batch=batch)}{_left(unsent, blocked)}"


def _left(counts: dict[JobState, int], blocked: int) -> str:
    """What --resume-cancelled would send (" to send its 3 pending and 2 waiting jobs"), and the
    waiting jobs it would not: those an input that failed, was cancelled or rejected blocks."""
    sendable = {S.PENDING: counts.get(S.PENDING, 0), S.WAITING: counts.get(S.WAITING, 0) - blocked}
    parts = [f"{n} {state}" for state, n in sendable.items() if n > 0]
    text = f" to send its {' and '.join(parts)} jobs" if parts else ""
    if blocked:
        text += (
            f"\n{blocked} waiting jobs are blocked by an input that failed, was cancelled or "
            "rejected (see `orchestrator status`)"
        )
    return text


async def _cancel_all(
    ledger: Ledger, settings: Settings, rows: Sequence[JobRecord]
) -> tuple[Counter[str], errors.OrchestratorError | None]:
    """Each job's outcome, in turn; and the error that stopped the rest, if one did."""
    outcomes: Counter[str] = Counter()
    pacer = Pacer(settings.requests_per_second)
    async with KreaClient.connect(
        settings.api_base, settings.api_key, pace=pacer, timeout_s=settings.request_timeout_s
    ) as client:
        krea = _Patient(client, pacer, Clock(settings.time_scale), random.Random(settings.seed))
        try:
            if rows:  # a wrong --api-base answers 404 to DELETE too: find out before reading it
                await krea.list_one()
            for row in rows:
                outcomes[await _cancel_one(ledger, krea, row)] += 1
        except (errors.ApiError, errors.TransportError) as exc:
            return outcomes, exc
    return outcomes, None


class _Patient:
    """`cancel`'s calls to Krea: paced by the client, retried through what retrying can pass.

    A 429, a 5xx, a dropped connection or an unreadable answer waits (Retry-After, else the
    jittered backoff) and tries again, up to ``CANCEL_TRIES``; a rate 429 also slows the pacer.
    Any other error is raised at once: 401 and a wrong API base stop everything, and 404/409 are
    answers the caller reads.
    """

    def __init__(self, client: KreaClient, pacer: Pacer, clock: Clock, rng: random.Random) -> None:
        self.client, self.pacer, self.clock, self.rng = client, pacer, clock, rng

    async def list_one(self) -> None:
        """One page of one job: proves the API base is Krea's (else NotKreaApi)."""
        await self._retried(lambda: self.client.list_jobs(limit=1))

    async def cancel_job(self, job_id: str) -> RemoteJob | None:
        return await self._retried(lambda: self.client.cancel_job(job_id))

    async def get_job(self, job_id: str) -> RemoteJob:
        return await self._retried(lambda: self.client.get_job(job_id))

    async def _retried(self, request: Callable[[], Awaitable[T]]) -> T:
        backoff = Backoff(self.rng)
        while True:
            try:
                return await request()
            except (errors.ApiError, errors.TransportError) as exc:
                passes = classify_read(exc).action is Action.RETRY
                if not passes or backoff.failures + 1 >= CANCEL_TRIES:
                    raise
                if isinstance(exc, errors.RateLimited):
                    self.pacer.on_rate_limited()
                await self.clock.sleep(backoff.next_delay(exc))


async def _cancel_one(ledger: Ledger, krea: _Patient, row: JobRecord) -> str:
    """DELETE one job; its Krea status afterwards ("unknown" when Krea no longer knows it)."""
    remote_id = row.remote_id or ""
    try:
        remote = await krea.cancel_job(remote_id)
    except errors.ApiError as exc:  # 409: it finished first; 404: the GET below says
        if classify_read(exc).action is not Action.REJECT:
            raise
        remote = None
    try:
        if remote is None or remote.status != "cancelled":
            remote = await krea.get_job(remote_id)  # what it became instead
    except errors.NotFound:
        return "unknown"  # the next `run` marks it failed after Krea's 404s
    to = {"cancelled": S.CANCELLED, "completed": S.COMPLETED, "failed": S.FAILED}.get(remote.status)
    if to is not None:
        fields: dict[str, Any] = {"remote_status": remote.status}
        if to is S.COMPLETED:
            fields |= {"result_url": remote.urls[0] if remote.urls else None}
        await ledger.apply([Move(row.key, S.SUBMITTED, to, "orchestrator cancel", fields)])
    return remote.status


def _cancel_text(outcomes: Counter[str], in_flight: int, skipped: int) -> str:
    left = in_flight - sum(outcomes.values())  # not reached: an error stopped the cancel first
    cancelled = outcomes.pop("cancelled", 0)
    parts = [f"cancelled {cancelled} of {in_flight} jobs in flight"]
    if outcomes:
        others = ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items()))
        parts.append(f"{sum(outcomes.values())} could no longer be cancelled ({others})")
    if left:
        parts.append(f"{left} not cancelled (still in flight)")
    if skipped:
        parts.append(
            f"skipped {skipped} ambiguous jobs: their Krea job id is unknown until the next "
            "`orchestrator run` reconciles them"
        )
    return "; ".join(parts)
