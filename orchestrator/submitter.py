"""Sending pending jobs: pending → submitting → submitted, a durable step each side of the POST.

For each job a worker, in this order: waits for the reconciliation gate, a slot in the in-flight
window and the request pacer; checks the budget; uploads local files (safe to repeat); commits the
**intent** (``submitting``, with the floor for reconciliation); sends the POST; commits the
**job id** (``submitted``). A crash anywhere in between leaves ``submitting``, which the next run
treats as ambiguous and reconciles before sending anything.

What a failed POST means is decided by ``retry.classify_post``: resend the same job after a backoff
(not sent, 429), reconcile (5xx, timeout, dropped connection, unreadable 200: the job may exist),
reject (400/422/410) or stop (401, 402: let the rest finish).

A small fixed pool of workers does this (default 1: at most one unanswered POST, so attribution
after a crash is exact; see ``reconcile``), never one task per job: asyncio-throttle wakes every
waiter every 10 ms.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from orchestrator import errors
from orchestrator.answers import RemoteJob
from orchestrator.clock import now_utc, parse_utc
from orchestrator.input_urls import InputUrls
from orchestrator.jobs import IN_FLIGHT, JobRecord, JobState
from orchestrator.pipeline import Pipeline
from orchestrator.reconcile import Reconciler, start_floor
from orchestrator.retry import Action, Backoff, classify_post, classify_read, is_rate_not_capacity
from orchestrator.uploads import with_assets

S = JobState
PAGE = 200
log = logging.getLogger(__name__)


class _Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    AMBIGUOUS = "ambiguous"
    REJECTED = "rejected"
    HELD = "held"
    STOP = "stop"


class Submitter:
    """Sends the batch's pending jobs in manifest order, at most ``workers`` POSTs at once."""

    def __init__(
        self,
        pipe: Pipeline,
        reconciler: Reconciler,
        *,
        workers: int = 1,
        chosen: frozenset[str] | None = None,
    ) -> None:
        self.pipe = pipe
        self.reconciler = reconciler
        self.workers = max(1, workers)
        self.chosen = chosen  #: a trial run's jobs (``selection``); None: every pending job
        self.floor: str | None = None  #: newest remote created_at known (see reconcile)
        self._buffer: list[JobRecord] = []
        self._cursor = -1
        self._claimed: set[str] = set()  #: keys a worker holds, so no other worker takes them
        self._feed = asyncio.Lock()
        self._saving: set[asyncio.Future[None]] = set()  #: job ids queued, not yet committed
        self._warned: set[str] = set()  #: what was already said once (held-back keys, refusals)
        self.inputs = InputUrls(pipe)

    async def run(self) -> None:
        """Return when no pending job can be sent (all sent, held back by the budget, stopped)."""
        try:
            self.floor = await start_floor(self.pipe)
            self.pipe.strangers.since = self.floor  # jobs after it are ours, a run's, or foreign
            async with asyncio.TaskGroup() as group:
                for _ in range(self.workers):
                    group.create_task(self._work())
            for saved in list(self._saving):
                await saved  # raises if a job id could not be recorded
            if self.pipe.registry is not None:
                await self.pipe.registry.claims_landed()
        finally:
            self.pipe.flags.submitting_done.set()

    async def _work(self) -> None:
        backoff = Backoff(
            self.pipe.rng,
            base_s=self.pipe.tuning.backoff_base_s,
            cap_s=self.pipe.tuning.backoff_cap_s,
        )
        while (job := await self._next()) is not None:
            while True:
                outcome, error = await self._attempt(job)
                if outcome is _Outcome.RETRY and error is not None:
                    await self.pipe.clock.sleep(backoff.next_delay(error))
                    continue
                backoff.succeeded()
                if outcome is _Outcome.AMBIGUOUS:
                    await self.reconciler.settle()
                    fresh = await self.pipe.ledger.job(job.key)
                    if fresh is not None and fresh.state is S.PENDING:
                        job = fresh  # its POST created nothing: send it again
                        continue
                break
            self._claimed.discard(job.key)
            if outcome is _Outcome.STOP:
                return

    async def _next(self) -> JobRecord | None:
        """The next pending job in manifest order; None when nothing more can be sent."""
        async with self._feed:
            while not self._buffer:
                if self.pipe.flags.stop_submitting:
                    return None
                rows = await self.pipe.ledger.jobs(
                    batch=self.pipe.batch,
                    states=[S.PENDING],
                    current_only=True,
                    after_seq=self._cursor,
                    limit=PAGE,
                )
                skip = set(self.pipe.budget.held_back) | self._claimed
                self._buffer = [r for r in rows if r.key not in skip and self._may_send(r.key)]
                if rows:
                    self._cursor = rows[-1].seq
                elif not await self._new_pass():
                    return None
            job = self._buffer.pop(0)
            self._claimed.add(job.key)
            return job

    async def _new_pass(self) -> bool:
        """At the end of a pass: start another while a pending job may still be sent. Jobs in
        flight can still change that (a failure frees budget, a retry makes a job pending
        again), so while any is in flight this waits for one to leave before deciding."""
        budget = self.pipe.budget
        while not self.pipe.flags.stop_submitting:
            seen = budget.version  # before the checks: a change during them is not missed
            if await self._unclaimed_pending():
                self._cursor = -1
                return True
            counts = await self.pipe.ledger.state_counts(self.pipe.batch)
            # The batch's own jobs, never the window's count: other batches of the run share it.
            if not any(counts.get(s, 0) for s in IN_FLIGHT) and not self._claimed:
                return False
            await budget.wait_for_change(seen)
            budget.forget_held()  # re-examine them against what was freed
        return False

    def _may_send(self, key: str) -> bool:
        return self.chosen is None or key in self.chosen

    async def _unclaimed_pending(self) -> bool:
        """Is some pending job neither held back by the budget nor held by a worker?"""
        skip = set(self.pipe.budget.held_back) | self._claimed
        if self.chosen is not None:
            return await self.pipe.ledger.any_pending(self.chosen - skip)
        rows = await self.pipe.ledger.jobs(
            batch=self.pipe.batch, states=[S.PENDING], current_only=True, limit=len(skip) + 1
        )
        return any(row.key not in skip for row in rows)  # more rows than skip: one is free

    async def _attempt(self, job: JobRecord) -> tuple[_Outcome, errors.OrchestratorError | None]:
        """One try at sending ``job``: a slot, then its price reserved, then the POST."""
        pipe = self.pipe
        await pipe.window.acquire(pipe.rank)
        if pipe.flags.stop_submitting:
            await pipe.window.release()
            return _Outcome.STOP, None
        if not pipe.budget.reserve(job.key, job.price_micro):
            await pipe.window.release()
            self._warn_once(
                "budget",  # once a run, not once a job: 100,000 jobs held back are one line
                f"the budget cap holds back {job.entry_id} and every job after it that does not "
                "fit; the summary counts them and says what sending them needs",
            )
            return _Outcome.HELD, None
        posting = False
        try:
            try:  # {from: ID} inputs, then local files: URLs, before the intent
                body = await with_assets(pipe, await self.inputs.resolved(job))
            except errors.OrchestratorError as exc:
                return await self._asset_failed(job, exc)
            await self.reconciler.gate.wait()
            self.reconciler.post_started()  # no await since the gate: reconciliation waits for us
            posting = True  # from here on _post gives the slot and the money back when it must
            try:
                return await self._post(job, body)
            finally:
                self.reconciler.post_finished()
        finally:
            if not posting:  # nothing was sent: the slot and the reservation go back
                pipe.budget.release(job.price_micro)
                await pipe.window.release()

    async def _post(
        self, job: JobRecord, body: dict[str, Any]
    ) -> tuple[_Outcome, errors.OrchestratorError | None]:
        await self._intend(job)
        try:
            remote = await self._send(job, body)
        except errors.OrchestratorError as exc:
            return await self._post_failed(job, exc), exc
        await self._accepted(job, remote)
        return _Outcome.SENT, None

    async def _intend(self, job: JobRecord) -> None:
        """Commit the intent, and (alone on the account) register the POST there, before it.

        Krea has no idempotency key, so a crash after the intent must find the row and reconcile
        it rather than send a second, billed job; other runs count the registered POST in as a
        possible owner. The two writes go side by side (two fsyncs in the time of one): the POST
        waits for both, and a crash between them is recovered either way (an intent with no
        registered POST was never sent; a registered POST whose row is still pending is
        forgotten by the next run on the ledger: ``startup``). With company, the POST is
        registered later, in its turn (``registry.turn``), and the same holds.
        """
        pipe, registry = self.pipe, self.pipe.registry
        intent = pipe.ledger.transition(
            job.key,
            S.SUBMITTING,
            expect=S.PENDING,
            cause="intent: about to POST",
            intent_at=now_utc(),
            floor=self.floor,
            attempts=job.attempts + 1,
            **self.inputs.intent_fields(job),
        )
        if registry is None:
            await intent
            return
        margin, grace = pipe.turn_margins()
        before = registry.before_post(job.key, self.floor, margin + grace)
        done = await asyncio.gather(intent, before, return_exceptions=True)
        failed = [outcome for outcome in done if isinstance(outcome, BaseException)]
        if failed:
            if not isinstance(done[1], BaseException):
                await registry.not_created(job.key)  # nothing will be sent
            raise failed[0]

    async def _send(self, job: JobRecord, body: dict[str, Any]) -> RemoteJob:
        """The POST, in the account's turn, told to the registry after it."""
        pipe, registry = self.pipe, self.pipe.registry
        if registry is None:
            return await self._timed(job, body)
        margin, grace = pipe.turn_margins()
        async with registry.posting(job.key, margin, grace):
            try:
                remote = await self._timed(job, body, lambda: registry.mark_written(job.key))
            except errors.OrchestratorError as exc:
                if classify_post(exc).action is Action.RECONCILE:
                    no_answer = isinstance(exc, errors.TransportError)
                    await registry.ambiguous(
                        job.key, no_answer=no_answer, margin_s=margin, grace_s=grace
                    )
                else:
                    await registry.not_created(job.key)
                raise
            await registry.answered(job.key)  # before the turn is given back (registry.turn)
            learnt = pipe.clock_bounds.state()
            clock = None if learnt is None else (pipe.clock_bounds.scale, *learnt)
            registry.claim_soon(job.key, remote.job_id, remote.created_at, clock)
            return remote

    async def _timed(
        self, job: JobRecord, body: dict[str, Any], on_written: Callable[[], None] | None = None
    ) -> RemoteJob:
        """The POST itself; its send and answer times teach the clock bounds."""
        sent = time.time()
        pipe = self.pipe
        remote = await pipe.client.create_job(
            job.model, body, webhook_url=pipe.webhook_url, on_written=on_written
        )
        pipe.clock_bounds.learn(sent, time.time(), parse_utc(remote.created_at))
        return remote

    async def _accepted(self, job: JobRecord, remote: RemoteJob) -> None:
        pipe = self.pipe
        # Not awaited: the next intent is queued behind it, so the job id is on disk before the
        # next POST leaves, and the two share one commit (one fsync) instead of two.
        self._saving.add(
            saved := pipe.ledger.transition_soon(
                job.key,
                S.SUBMITTED,
                expect=S.SUBMITTING,
                cause="submitted",
                remote_id=remote.job_id,
                remote_status=remote.status,
                remote_created_at=remote.created_at,
                answered_at=now_utc(),
                last_error=None,
            )
        )
        saved.add_done_callback(self._saving.discard)
        saved.add_done_callback(lambda done: self._recorded(job, done))
        pipe.window.on_accepted()
        if self.floor is None or parse_utc(remote.created_at) > parse_utc(self.floor):
            self.floor = remote.created_at

    def _recorded(self, job: JobRecord, saved: asyncio.Future[None]) -> None:
        """Once the job id is on disk: wake the poller and tell the user (never before)."""
        if saved.cancelled() or saved.exception() is not None:
            return
        self.pipe.submitted.set()
        self.pipe.reporter.job_changed(job.entry_id, self.inputs.counted_as(job), S.SUBMITTED)

    async def _post_failed(self, job: JobRecord, exc: errors.OrchestratorError) -> _Outcome:
        pipe = self.pipe
        decision = classify_post(exc)
        answered = now_utc()
        if decision.action is Action.RECONCILE:
            await pipe.ledger.transition(
                job.key,
                S.AMBIGUOUS,
                expect=S.SUBMITTING,
                cause="POST outcome unknown",
                detail=exc.message,
                answered_at=answered,
                last_error=exc.message,
            )
            pipe.reporter.job_changed(job.entry_id, S.SUBMITTING, S.AMBIGUOUS, exc.message)
            return _Outcome.AMBIGUOUS
        if isinstance(exc, errors.NotSent):
            self._warn_once("refused", f"{exc.message}; retrying with backoff")
        if isinstance(exc, errors.RateLimited):
            (
                pipe.pacer.on_rate_limited
                if is_rate_not_capacity(exc)
                else pipe.window.on_rate_limited
            )()
        again = decision.action is Action.REJECT and self.inputs.refused(job, exc)
        to = S.REJECTED if decision.action is Action.REJECT and not again else S.PENDING
        cause = "an input was refused; sending it another way" if again else {
            Action.REJECT: "rejected by Krea",
            Action.RETRY: "not accepted; will retry",
            Action.STOP: "account stop",
        }[decision.action]  # fmt: skip
        await pipe.ledger.transition(
            job.key,
            to,
            expect=S.SUBMITTING,
            cause=cause,
            detail=exc.message,
            answered_at=answered,
            last_error=exc.message,
        )
        pipe.budget.release(job.price_micro)
        await pipe.window.release()
        if decision.action is Action.STOP:
            self._stop(exc)
            return _Outcome.STOP
        if to is S.REJECTED:
            pipe.reporter.job_changed(job.entry_id, S.SUBMITTING, S.REJECTED, exc.message)
            return _Outcome.REJECTED
        return _Outcome.RETRY

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning(message, extra={"batch": self.pipe.batch})

    def _stop(self, exc: errors.OrchestratorError) -> None:
        if isinstance(exc, errors.InsufficientFunds):
            self.pipe.flags.no_funds = exc.reason
            log.error(
                f"Krea answered 402 ({exc.reason}): no new jobs will be sent; "
                "jobs in flight will finish",
                extra={"batch": self.pipe.batch},
            )
        else:
            self.pipe.flags.fatal = exc  # the run raises it once the stages have stopped

    async def _asset_failed(
        self, job: JobRecord, exc: errors.OrchestratorError
    ) -> tuple[_Outcome, errors.OrchestratorError | None]:
        decision = classify_read(exc)
        if decision.action is Action.RETRY:
            return _Outcome.RETRY, exc
        if decision.action is Action.STOP:
            self._stop(exc)
            return _Outcome.STOP, None
        await self.pipe.ledger.transition(
            job.key,
            S.REJECTED,
            expect=S.PENDING,
            cause="file upload refused",
            detail=exc.message,
            last_error=exc.message,
        )
        self.pipe.reporter.job_changed(job.entry_id, S.PENDING, S.REJECTED, exc.message)
        return _Outcome.REJECTED, None
