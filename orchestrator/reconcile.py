"""Settling POSTs whose outcome is unknown, through ``GET /jobs``, before anything is sent again.

Krea has no idempotency key and its job list carries no client metadata, only ``created_at``
(krea-api.md §3.3). So attribution works on order alone:

* When a job's intent is committed, it records its **floor**: the newest ``created_at`` of any
  remote job the ledger knows. Whatever job its POST created must be newer than the floor.
* POSTs are gated: while any job is ambiguous, no new intent is written, and reconciliation waits
  until every POST already on the wire has been answered and a grace period has passed (a slow
  server may still be creating the job). So the only unknown jobs newer than a floor are ones our
  ambiguous POSTs created (or another client's, if the key is shared: don't share it during a run).
* Only a whole list is evidence: a page with an item that cannot be read (no ``created_at``, say)
  is retried, never taken to mean that a job was not created.
* :func:`attribute` matches each unclaimed candidate that only one ambiguous job could own. A job
  with no candidate left was never created and goes back to ``pending``. A candidate several could
  own is cancelled while Krea still allows it (cancelled jobs are free) and recorded as an
  **orphan**, and the jobs that could own it are sent again: never a guess, never a third POST
  for the same doubt. With one submit worker (the default) there is at most one ambiguous POST at
  a time, so attribution is always exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestrator import errors
from orchestrator.clock import format_utc, now_utc, parse_utc, seconds_between
from orchestrator.jobs import REMOTE_TERMINAL, JobRecord, JobState
from orchestrator.ledger import Move
from orchestrator.pipeline import Pipeline
from orchestrator.retry import Action, Backoff, classify_read

S = JobState


@dataclass(frozen=True)
class Attempt:
    """An ambiguous POST: the job key and the floor its remote job must be newer than."""

    key: str
    floor: datetime | None


@dataclass(frozen=True)
class Candidate:
    """A remote job no ledger row claims."""

    remote_id: str
    created_at: datetime
    status: str
    created_text: str


@dataclass
class Attribution:
    """The verdict of :func:`attribute`."""

    matched: dict[str, Candidate] = field(default_factory=dict)  #: key -> its job
    not_created: list[str] = field(default_factory=list)  #: keys whose POST created nothing
    contested: list[str] = field(default_factory=list)  #: keys that might own an unattributable job
    unattributable: list[Candidate] = field(default_factory=list)


def attribute(attempts: Sequence[Attempt], candidates: Sequence[Candidate]) -> Attribution:
    """Match candidates to attempts where only one match is possible; never guess."""
    owners = {c.remote_id: {a.key for a in attempts if _may_own(a, c)} for c in candidates}
    by_id = {c.remote_id: c for c in candidates}
    result = Attribution()
    while matches := _forced_matches(owners):
        for key, remote_id in matches.items():
            result.matched[key] = by_id[remote_id]
            del owners[remote_id]
            for keys in owners.values():
                keys.discard(key)
    for remote_id, keys in owners.items():
        if keys:
            result.unattributable.append(by_id[remote_id])
    contested = set().union(*owners.values()) if owners else set()
    for attempt in attempts:
        if attempt.key in result.matched:
            continue
        (result.contested if attempt.key in contested else result.not_created).append(attempt.key)
    return result


def _forced_matches(owners: dict[str, set[str]]) -> dict[str, str]:
    """Attempt -> job for every job only one attempt could own (and that attempt owns no other)."""
    claims: dict[str, list[str]] = {}
    for remote_id, keys in owners.items():
        if len(keys) == 1:
            claims.setdefault(next(iter(keys)), []).append(remote_id)
    # Two jobs that only one attempt could own: one is not ours at all; not ours to decide which.
    return {key: ids[0] for key, ids in claims.items() if len(ids) == 1}


def _may_own(attempt: Attempt, candidate: Candidate) -> bool:
    return attempt.floor is None or candidate.created_at >= attempt.floor


class Reconciler:
    """Resolves every ambiguous job of the ledger; POSTs wait on :attr:`gate` meanwhile."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self.gate = asyncio.Event()  #: set while new intents may be written
        self.gate.set()
        self.posts_in_flight = 0
        self._posts_idle = asyncio.Event()
        self._posts_idle.set()
        self._lock = asyncio.Lock()

    def post_started(self) -> None:
        self.posts_in_flight += 1
        self._posts_idle.clear()

    def post_finished(self) -> None:
        self.posts_in_flight -= 1
        if self.posts_in_flight == 0:
            self._posts_idle.set()

    async def settle(self) -> None:
        """Return once no job in the ledger is ambiguous."""
        self.gate.clear()
        try:
            async with self._lock:
                backoff = Backoff(
                    self.pipe.rng,
                    base_s=self.pipe.tuning.backoff_base_s,
                    cap_s=self.pipe.tuning.backoff_cap_s,
                )
                while rows := await self.pipe.ledger.jobs(states=[S.AMBIGUOUS]):
                    await self._posts_idle.wait()  # every POST on the wire answered first
                    await self._wait_grace(rows)
                    try:
                        await self._reconcile(rows)
                        backoff.succeeded()
                    except (errors.ApiError, errors.TransportError) as exc:
                        if classify_read(exc).action is not Action.RETRY:
                            raise
                        self.pipe.reporter.note(
                            f"reconciliation waits: {exc.message}", level="warning"
                        )
                        await self.pipe.clock.sleep(backoff.next_delay(exc))
        finally:
            self.gate.set()

    async def _wait_grace(self, rows: Sequence[JobRecord]) -> None:
        now = now_utc()
        latest = max((r.answered_at or r.intent_at or now) for r in rows)
        elapsed = seconds_between(latest, now)
        # Local timestamps measure real time; the grace is API time.
        remaining = self.pipe.tuning.reconcile_grace_s - elapsed * self.pipe.clock.scale
        if remaining > 0:
            await self.pipe.clock.sleep(remaining)

    async def _reconcile(self, rows: Sequence[JobRecord]) -> None:
        attempts = [Attempt(r.key, parse_utc(r.floor) if r.floor else None) for r in rows]
        floors = [a.floor for a in attempts]
        oldest = None if any(f is None for f in floors) else min(f for f in floors if f)
        candidates = await self._unclaimed_since(oldest)
        verdict = attribute(attempts, candidates)
        by_key = {r.key: r for r in rows}
        orphans = [await self._orphan(c, rows) for c in verdict.unattributable]
        moves = [
            Move(
                key,
                S.AMBIGUOUS,
                S.SUBMITTED,
                "reconciled: its job was found in the job list",
                {
                    "remote_id": c.remote_id,
                    "remote_status": c.status,
                    "remote_created_at": c.created_text,
                },
            )
            for key, c in verdict.matched.items()
        ]
        moves += [
            Move(
                key, S.AMBIGUOUS, S.PENDING, "reconciled: no job was created", {"last_error": None}
            )
            for key in verdict.not_created
        ]
        moves += [
            Move(
                key,
                S.AMBIGUOUS,
                S.PENDING,
                "reconciled: its job could not be told apart from "
                f"another's; cancelled {', '.join(orphans)}",
                {"last_error": None},
            )
            for key in verdict.contested
        ]
        await self.pipe.ledger.apply(moves)
        await self._account(moves, by_key)

    async def _unclaimed_since(self, floor: datetime | None) -> list[Candidate]:
        margin = format_utc(floor - timedelta(hours=1)) if floor else ""
        claimed = await self.pipe.ledger.remote_ids_since(margin)
        found: list[Candidate] = []
        cursor: str | None = None
        while True:
            page = await self.pipe.client.list_jobs(cursor=cursor, limit=1000)
            if page.skipped:
                # An item we cannot read may be the very job a lost POST created: deciding
                # "never created" on this page could pay for the clip twice. Try again later.
                raise errors.BadResponse(
                    200, f"the job list had {page.skipped} unreadable items", path="/jobs"
                )
            for item in page.items:
                created = parse_utc(item.created_at)
                if floor is not None and created < floor:
                    return found
                if item.job_id not in claimed:
                    found.append(Candidate(item.job_id, created, item.status, item.created_at))
            if not page.next_cursor or page.next_cursor == cursor:
                return found
            cursor = page.next_cursor

    async def _orphan(self, candidate: Candidate, rows: Sequence[JobRecord]) -> str:
        """Cancel a job no one can claim (free if Krea still allows it) and record it."""
        status = candidate.status
        if status not in REMOTE_TERMINAL:
            try:
                cancelled = await self.pipe.client.cancel_job(candidate.remote_id)
                status = cancelled.status if cancelled else "cancelled"
            except errors.ApiError as exc:
                self.pipe.reporter.note(
                    f"could not cancel orphan {candidate.remote_id}: {exc.message}", level="warning"
                )
        owners = [r for r in rows if candidate.created_at >= parse_utc(r.floor or "1970-01-01")]
        price = max((r.price_micro for r in owners), default=0)
        model = owners[0].model if len({r.model for r in owners}) == 1 else "unknown"
        batch = owners[0].batch if owners else self.pipe.batch
        await self.pipe.ledger.add_orphan(
            batch,
            candidate.remote_id,
            remote_status=status,
            created_at=candidate.created_text,
            price_micro=price,
            model=model,
            cause="reconciliation: no single job can claim it",
        )
        if status not in REMOTE_TERMINAL and batch == self.pipe.batch:
            # Another batch's orphan is tracked by that batch's runs, never by this one's poller:
            # holding its slot or money here would never be given back.
            self.pipe.window.hold()
            self.pipe.budget.add_in_flight(price)
        self.pipe.reporter.note(f"orphan job {candidate.remote_id} ({status})", level="warning")
        return candidate.remote_id

    async def _account(self, moves: Sequence[Move], by_key: dict[str, JobRecord]) -> None:
        for move in moves:
            row = by_key[move.key]
            if row.batch != self.pipe.batch:
                continue  # another batch's row: its own run tracks its slots and budget
            self.pipe.reporter.job_changed(row.entry_id, S.AMBIGUOUS, move.to, move.cause)
            if move.to is S.PENDING:
                await self.pipe.window.release()
                self.pipe.budget.release(row.price_micro)
            else:
                self.pipe.submitted.set()
