"""Settling POSTs whose outcome is unknown, through ``GET /jobs``, before anything is sent again.

Krea has no idempotency key and its job list carries no client data, only ``created_at``
(krea-api.md §3.3). So attribution works on time alone (``attribution``):

* Each POST's job, if any, was created inside a window of Krea's clock: after its floor and its
  send time, before its answer (plus a grace when no answer came). The run learns the offset
  of Krea's clock from its acknowledged POSTs, which keeps windows a fraction of a second wide.
* POSTs are gated: while any job is ambiguous, no new intent is written, and reconciliation waits
  until every POST of this run on the wire has been answered and a grace period has passed.
* Other runs of the account on this machine (the ``registry``): every job they claim is
  excluded; each of their open POSTs counts as a possible owner of any job its window admits,
  and one still on the wire when the list was read is waited for (or its run found dead).
* Only a whole list is evidence: a page with an item that cannot be read is retried, never taken
  to mean that a job was not created.
* A job only one POST could own, and that POST no other job, is that POST's. A POST with no job
  in its window created nothing and goes back to ``pending``. A job one of our POSTs may have
  made that cannot be matched is never cancelled or adopted (it may be another client's): the
  POSTs that could own it are sent again and the job is recorded as a *possible duplicate*,
  itemised in the report. A job in no window is another client's: recorded, never touched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from orchestrator import errors
from orchestrator.answers import RemoteJob
from orchestrator.attribution import Attempt, Attribution, Candidate, Window, attribute
from orchestrator.clock import format_utc, now_utc, parse_utc, seconds_between
from orchestrator.jobs import JobRecord, JobState
from orchestrator.ledger import Move, Unattributed
from orchestrator.pipeline import Pipeline
from orchestrator.registry import RegisteredAttempt, Snapshot
from orchestrator.retry import Action, Backoff, classify_read

S = JobState
log = logging.getLogger(__name__)
#: Real seconds between looks at the registry while another run's POST is on the wire.
WIRE_POLL_S = 0.02
#: The floor of an account that held no job when the run began: every job on it is newer.
EMPTY_ACCOUNT_FLOOR = "1970-01-01T00:00:00.000Z"


class Reconciler:
    """Resolves every ambiguous job of the ledger; POSTs wait on :attr:`gate` meanwhile."""

    def __init__(self, pipe: Pipeline, batches: Mapping[str, Pipeline] | None = None) -> None:
        self.pipe = pipe  #: whose client, ledger and registry it uses
        #: every batch of the run by name: their slots, budgets and reporters follow the verdicts
        self.batches = dict(batches or {pipe.batch: pipe})
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
                        log.warning(
                            f"reconciliation waits: {exc.message}",
                            extra={"batch": self.pipe.batch},
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
        await self._learn_clock()
        ours = [self._our_attempt(row, await self._snapshot(None, claims=False)) for row in rows]
        lowest = _lowest(ours)
        listed, listed_at = await self._listed_since(lowest)
        since = format_utc(lowest - timedelta(hours=1)) if lowest else None
        snapshot = await self._settled_snapshot(since, listed_at)
        claimed = await self.pipe.ledger.remote_ids_since(since or "")
        by_key = {row.key: row for row in rows}
        verdict = Attribution(matched=self._claimed_then_stopped(snapshot, by_key, listed))
        unclaimed = [c for i, c in listed.items() if i not in claimed and i not in snapshot.claims]
        others = [
            self._their_attempt(a)
            for a in snapshot.attempts
            if self._theirs(a) and a.sent_at <= listed_at  # later ones made nothing listed
        ]
        pending = [a for a in ours if a.owner not in verdict.matched]
        # Another client is active when one of its jobs was recorded in the hour before the
        # oldest window, not only inside it: its jobs made just before a dead run's window
        # prove it as well (an unsure POST's lone job may then be its).
        active = bool(await self.pipe.ledger.foreign_since(since or ""))
        found = attribute([*pending, *others], unclaimed, others_active=active)
        found.matched.update(verdict.matched)
        await self._apply(found, by_key)

    async def _learn_clock(self) -> None:
        """No POST of ours answered yet: start from what the account's other runs learnt."""
        bounds, registry = self.pipe.clock_bounds, self.pipe.registry
        if registry is not None and bounds.state() is None:
            learnt = await registry.clock(bounds.scale)
            if learnt is not None:
                bounds.restore(*learnt)

    def _claimed_then_stopped(
        self, snapshot: Snapshot, by_key: dict[str, JobRecord], listed: dict[str, Candidate]
    ) -> dict[str, Candidate]:
        """Our POSTs whose job the registry got but the ledger did not (a crash in between)."""
        found = {}
        for remote_id, (ledger, key, claimed_at) in snapshot.claims.items():
            row = by_key.get(key) if ledger == self._ledger else None
            if row is None or remote_id not in listed:
                continue
            if claimed_at >= (_epoch(row.intent_at) or 0.0):  # this intent's job, no older one
                found[key] = listed[remote_id]
        return found

    @property
    def _ledger(self) -> str | None:
        return self.pipe.registry.ledger if self.pipe.registry is not None else None

    def _theirs(self, attempt: RegisteredAttempt) -> bool:
        return attempt.ledger != self._ledger

    async def _snapshot(self, since: str | None, *, claims: bool = True) -> Snapshot:
        if self.pipe.registry is None:
            return Snapshot(claims={}, attempts=())
        return await self.pipe.registry.snapshot(since, claims=claims)

    async def _settled_snapshot(self, since: str | None, listed_at: float) -> Snapshot:
        """The registry once no live run has a POST on the wire that the list could include.

        A POST sent after the list's answer came cannot have a job in it; one sent before may,
        and its run is about to claim the job or call it ambiguous: wait for that.
        """
        while True:
            snapshot = await self._snapshot(since)
            if not any(
                self._theirs(a) and a.live and a.state == "wire" and a.sent_at <= listed_at
                for a in snapshot.attempts
            ):
                return snapshot
            await asyncio.sleep(WIRE_POLL_S)

    def _window(
        self,
        floor: str | None,
        sent: float | None,
        answered: float | None,
        no_answer: bool,
        written: float | None = None,
    ) -> Window:
        return self.pipe.clock_bounds.window(
            floor=parse_utc(floor) if floor else None,
            sent=sent,
            answered=answered,
            no_answer=no_answer,
            grace_s=self.pipe.tuning.reconcile_grace_s,
            written=written,
        )

    def _our_attempt(self, row: JobRecord, snapshot: Snapshot) -> Attempt:
        """Our POST's window: the registry's times when it has them, else the ledger's."""
        mine = [a for a in snapshot.attempts if not self._theirs(a) and a.key == row.key]
        if mine:
            a = mine[0]
            window = self._window(row.floor, a.sent_at, a.answered_at, a.no_answer, a.written_at)
            return Attempt(owner=row.key, window=window, ours=True, unsure_sent=a.died)
        sent = _epoch(row.intent_at)
        answered = _epoch(row.answered_at)
        window = self._window(row.floor, sent, answered, True)
        return Attempt(owner=row.key, window=window, ours=True, unsure_sent=True)

    def _their_attempt(self, attempt: RegisteredAttempt) -> Attempt:
        """Another run's open POST, as a possible owner (never matched for us)."""
        window = self._window(
            attempt.floor, attempt.sent_at, attempt.answered_at, attempt.no_answer,
            attempt.written_at,
        )  # fmt: skip
        return Attempt(owner=f"{attempt.ledger}#{attempt.key}", window=window, ours=False)

    async def _listed_since(self, floor: datetime | None) -> tuple[dict[str, Candidate], float]:
        """Every job created at or after ``floor``, and when the list's last answer came."""
        found: dict[str, Candidate] = {}
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
                    return found, time.time()
                found[item.job_id] = Candidate(item.job_id, created, item.status, item.created_at)
            if not page.next_cursor or page.next_cursor == cursor:
                return found, time.time()
            cursor = page.next_cursor

    async def _apply(self, verdict: Attribution, by_key: dict[str, JobRecord]) -> None:
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
        doubts = ", ".join(c.remote_id for c in verdict.unattributable)
        moves += [
            Move(
                key,
                S.AMBIGUOUS,
                S.PENDING,
                "reconciled: its job could not be told apart from another client's; sent again "
                f"(possible duplicate: {doubts})",
                {"last_error": None},
            )
            for key in verdict.contested
        ]
        await self._record_doubts(verdict, by_key)
        await self.pipe.ledger.apply(moves)
        await self._register(verdict)
        await self._account(moves, by_key)

    async def _record_doubts(self, verdict: Attribution, by_key: dict[str, JobRecord]) -> None:
        """Possible duplicates and foreign jobs, before the entries are sent again."""
        owners = [by_key[key] for key in verdict.contested]
        models = {row.model for row in owners}
        model = next(iter(models)) if len(models) == 1 else "unknown"
        if verdict.unattributable:
            log.warning(
                f"{len(verdict.unattributable)} job(s) on the account may be duplicates of "
                "lost POSTs but cannot be told apart from another client's: not cancelled; "
                "their entries are sent again (see `orchestrator report`)",
                extra={"batch": self.pipe.batch},
            )
        await self.pipe.ledger.add_unattributed(
            [
                Unattributed(
                    remote_id=c.remote_id,
                    kind="possible_duplicate",
                    batch=owners[0].batch if owners else self.pipe.batch,
                    model=model,
                    price_micro=max((row.price_micro for row in owners), default=0),
                    remote_status=c.status,
                    created_at=c.created_text,
                    note="possible duplicate, unattributable: another client was active",
                )
                for c in verdict.unattributable
            ]
        )
        await self.pipe.strangers.record(
            [RemoteJob(c.remote_id, c.status, c.created_text) for c in verdict.foreign]
        )

    async def _register(self, verdict: Attribution) -> None:
        registry = self.pipe.registry
        if registry is None:
            return
        for key, c in verdict.matched.items():
            await registry.claimed(key, c.remote_id, c.created_text)
        for key in verdict.not_created:
            await registry.not_created(key)
        if verdict.contested:
            doubts = [(c.remote_id, c.created_text) for c in verdict.unattributable]
            await registry.doubted(verdict.contested, doubts)

    async def _account(self, moves: Sequence[Move], by_key: dict[str, JobRecord]) -> None:
        for move in moves:
            row = by_key[move.key]
            pipe = self.batches.get(row.batch)
            if pipe is None:
                continue  # a batch this run does not carry: its own run tracks slots and budget
            pipe.reporter.job_changed(row.entry_id, S.AMBIGUOUS, move.to, move.cause)
            if move.to is S.PENDING:
                await pipe.window.release()
                pipe.budget.release(row.price_micro)
            else:
                pipe.submitted.set()


def _lowest(attempts: Sequence[Attempt]) -> datetime | None:
    """The oldest moment any of ``attempts`` may have created a job; None: no bound."""
    lows = [a.window.low for a in attempts]
    if not lows or any(low is None for low in lows):
        return None
    return min(low for low in lows if low is not None)


def _epoch(text: str | None) -> float | None:
    return parse_utc(text).timestamp() if text else None


async def start_floor(pipe: Pipeline) -> str:
    """The newest job known to the ledger or to any run of the account, else the account's."""
    known = [await pipe.ledger.newest_remote_created_at()]
    if pipe.registry is not None:
        known.append(await pipe.registry.newest_claim())
    newest = max((stamp for stamp in known if stamp), default=None)
    return newest or await _account_floor(pipe)


async def _account_floor(pipe: Pipeline) -> str:
    """With an empty ledger, the newest job already on the account bounds reconciliation.

    Never skipped: an intent written without a floor would let reconciliation take every
    job on the account, from before this run, for the one a lost POST created. A failure
    that can pass is waited out; any other ends the run (nothing has been sent).

    The floor is one millisecond after that job: reconciliation takes jobs *at or after* a
    floor, and the job the floor was read from is not ours (a ledger's own newest job is
    claimed by its row; this one has none). Ours is created after Krea answered the list,
    so strictly later.
    """
    backoff = Backoff(pipe.rng, base_s=pipe.tuning.backoff_base_s, cap_s=pipe.tuning.backoff_cap_s)
    warned = False
    while True:
        try:
            page = await pipe.client.list_jobs(limit=1)
        except (errors.ApiError, errors.TransportError) as exc:
            if classify_read(exc).action is not Action.RETRY:
                raise
            if not warned:
                warned = True
                log.warning(
                    f"reading the account's newest job: {exc.message}; retrying with backoff",
                    extra={"batch": pipe.batch},
                )
            await pipe.clock.sleep(backoff.next_delay(exc))
            continue
        if page.skipped:  # the newest job may be the unreadable one: no floor from this page
            await pipe.clock.sleep(backoff.next_delay(errors.BadResponse(200, "unreadable")))
            continue
        if not page.items:
            return EMPTY_ACCOUNT_FLOOR
        return format_utc(parse_utc(page.items[0].created_at) + timedelta(milliseconds=1))
