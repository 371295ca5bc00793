"""A run's handle on its account's registry: every call a short transaction on its own thread.

See the package docstring for what the registry holds and why.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.errors import LedgerError
from orchestrator.registry.store import (
    ATTEMPT_SQL,
    DOUBT_KEY,
    HEARTBEAT_S,
    RegistryFile,
    Snapshot,
)
from orchestrator.registry.turn import PostTurn

T = TypeVar("T")

#: What runs learnt of Krea's clock is trusted this long (real seconds) by the next run.
CLOCK_FRESH_S = 3600.0


def state_dir() -> Path:
    """``$XDG_STATE_HOME/orchestrator`` (``~/.local/state/orchestrator`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "orchestrator"


def fingerprint(api_base: str, api_key: str) -> str:
    """A one-way name for an account: nothing about the key can be read back from it."""
    text = f"orchestrator account\n{api_base.rstrip('/')}\n{api_key}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class AccountRegistry(PostTurn):
    """One run's handle on its account's registry file (see the package docstring); its POST
    turn is :class:`~orchestrator.registry.turn.PostTurn`'s."""

    def __init__(self, path: Path, ledger: Path) -> None:
        self.path = path
        self.ledger = str(ledger.resolve())
        self.run_id = uuid.uuid4().hex
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry")
        self._file = RegistryFile(path, self.ledger, self.run_id)
        self.alone = False  #: no other run of the account alive at the last look (a heartbeat)
        self._start_turns()
        self._claims: set[asyncio.Future[None]] = set()  #: claims not yet landed (claim_soon)
        self._marks: set[asyncio.Future[None]] = set()  #: "written" marks on their way

    @classmethod
    @asynccontextmanager
    async def open(
        cls, api_base: str, api_key: str, ledger: Path, *, directory: Path | None = None
    ) -> AsyncIterator[AccountRegistry]:
        """Register this run for the account; unregister it (not its open attempts) on exit."""
        folder = (directory or state_dir()) / "accounts"
        registry = cls(folder / f"{fingerprint(api_base, api_key)}.db", ledger)
        await registry._call(registry._file.connect)
        await registry.look_around()
        heartbeat = asyncio.create_task(registry._beat())
        try:
            yield registry
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await registry._call(registry._file.close)
            registry._pool.shutdown(wait=False)
            registry._turn.close()

    # -- what a submitter writes around each POST -------------------------------------------------
    async def before_post(self, key: str, floor: str | None, died_s: float = 0.0) -> None:
        """All the registry needs before a POST leaves: the claims of earlier POSTs landed, a
        fresh look at whether another run is alive and, if this run is alone, the POST in its
        hold of the turn and registered, in the same transaction as the look (``turn``: a run
        killed before its POST then dies in its turn). With company, or a hold that must wait
        first, it is registered once it may leave (:meth:`posting`). ``died_s``: as
        :meth:`posting`'s ``grace_s + margin_s``. Raises the first failure once all have ended,
        and then leaves no registration behind."""
        claims = list(self._claims)
        self._claims.clear()
        if self.alone and self._join(died_s):
            self._joined.add(key)
        registers = key in self._joined and self._may_register()
        if registers:
            look = self._call(self._file.register_if_alone, key, time.time(), floor)
        else:  # never registered outside a turn, nor before its wait
            look = self._call(self._file.nobody_else)
        done = await asyncio.gather(*claims, look, return_exceptions=True)
        alone = done[-1]
        failed = next((outcome for outcome in done if isinstance(outcome, BaseException)), None)
        if failed is not None:
            if registers and alone is True:
                await self.not_created(key)
            self._unjoin(key)
            raise failed
        self.alone = bool(alone)
        if not self.alone:
            self._unjoin(key)  # it waits for the turn like any (``posting``)
        if not (registers and self.alone):
            self._deferred[key] = floor

    async def post_started(self, key: str, floor: str | None) -> None:
        """Before the POST leaves: other runs now wait for it or count it as an owner."""
        await self._write(ATTEMPT_SQL, (self.ledger, key, self.run_id, time.time(), floor))

    async def written(self, key: str) -> None:
        """The POST's body reached the socket: if its run dies now, the POST was still sent.
        The mark is the time (``written_at``), taken after the body was handed over: the
        start of its tight window when no answer comes (``attribution``).

        Not fsynced: a mark lost to a power cut leaves the POST "maybe unsent", the safe side.
        """
        await self._write(
            "UPDATE attempts SET written = ? WHERE ledger = ? AND key = ? AND run_id = ?",
            (time.time(), self.ledger, key, self.run_id),
            durable=False,
        )

    def mark_written(self, key: str) -> None:
        """:meth:`written`, without delaying the POST whose body is on its way. A mark that
        fails (a busy file) only leaves the POST "maybe unsent", the safe side."""
        marked = asyncio.ensure_future(self.written(key))
        self._marks.add(marked)
        marked.add_done_callback(self._marks.discard)
        marked.add_done_callback(lambda done: done.cancelled() or done.exception())

    def claim_soon(
        self,
        key: str,
        remote_id: str,
        created_at: str,
        clock: tuple[float, float, float, float] | None = None,
    ) -> None:
        """:meth:`claimed`, not awaited: until it lands the POST stays "on the wire" for other
        runs (they wait for it), and the next :meth:`before_post` (or :meth:`claims_landed`)
        waits for it and raises if it failed."""
        self._claims.add(asyncio.ensure_future(self.claimed(key, remote_id, created_at, clock)))

    async def claims_landed(self) -> None:
        """Wait for every :meth:`claim_soon` so far; raise if one could not be written."""
        while self._claims:
            await self._claims.pop()

    async def claimed(
        self,
        key: str,
        remote_id: str,
        created_at: str,
        clock: tuple[float, float, float, float] | None = None,
    ) -> None:
        """Its job is known: claim the id, and the attempt is over (one transaction).

        ``clock``: (scale, low, high, rtt) of what the run knows of Krea's clock, for the next
        run of the account to start from (``attribution.ClockBounds``).
        """
        await self._call(self._file.claim, key, remote_id, created_at, clock)

    async def clock(self, scale: float) -> tuple[float, float, float] | None:
        """(low, high, rtt) the account's runs learnt at this time scale in the last hour."""
        rows = await self._call(
            self._file.rows,
            "SELECT low, high, rtt FROM clock WHERE scale = ? AND at >= ?",
            (scale, time.time() - CLOCK_FRESH_S),
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    async def not_created(self, key: str) -> None:
        """The POST created nothing (refused, or reconciliation found no job): forget it."""
        self._deferred.pop(key, None)
        self._unjoin(key)
        await self._write("DELETE FROM attempts WHERE ledger = ? AND key = ?", (self.ledger, key))

    async def doubted(self, keys: Iterable[str], jobs: Iterable[tuple[str, str]]) -> None:
        """POSTs whose jobs could not be told apart from another's: they are over (sent again),
        and each job (id, created_at) they may have made is claimed as a possible duplicate.

        One transaction, so no instant shows those jobs unclaimed with the POSTs gone: another
        run's reconciliation would then find one of them in its own window alone and adopt a
        job this run has already reported as its possible duplicate.
        """
        now = time.time()
        statements: list[tuple[str, Iterable[Any]]] = [
            ("INSERT OR IGNORE INTO claims VALUES (?, ?, ?, ?, ?)",
             (remote_id, created_at, self.ledger, DOUBT_KEY, now))
            for remote_id, created_at in jobs
        ]  # fmt: skip
        statements += [
            ("DELETE FROM attempts WHERE ledger = ? AND key = ?", (self.ledger, key))
            for key in keys
        ]
        await self._call(self._file.transaction, statements)

    async def answered(self, key: str) -> None:
        """The POST got its job: the answer is noted at once, in the turn, before the claim
        (:meth:`claim_soon`, which lands later). A run killed in between leaves a POST
        whose window ends at its answer, not at its last heartbeat, where another run's lost
        POST may have made its job (a possible duplicate). Killed before the note, the run still
        holds the turn and the next holder finds it dead (``turn``). Not fsynced: a process's
        death keeps it; a power cut that loses it leaves the heartbeat's bound, the safe side."""
        await self._write(
            "UPDATE attempts SET answered_at = ?, no_answer = 0 "
            "WHERE ledger = ? AND key = ? AND run_id = ? AND state = 'wire'",
            (time.time(), self.ledger, key, self.run_id),
            durable=False,
        )

    async def ambiguous(
        self, key: str, *, no_answer: bool, margin_s: float = 0.0, grace_s: float = 0.0
    ) -> None:
        """The POST ended without a job id: it stays a possible owner until settled.

        ``no_answer``: the connection dropped or timed out, so Krea may create the job a little
        later; an HTTP answer (a 5xx, say) means any job was created before it. In the turn,
        with :meth:`posting`'s margins, it notes there when the POST's window closes."""
        answered = time.time()
        await self._write(
            "UPDATE attempts SET state = 'ambiguous', answered_at = ?, run_id = ?, no_answer = ? "
            "WHERE ledger = ? AND key = ?",
            (answered, self.run_id, int(no_answer), self.ledger, key),
        )
        # Said in the turn file too, for a run whose last look missed us (see PostTurn._enter).
        closes = answered + (grace_s if no_answer else 0.0) + margin_s
        self._turn.hold_until(closes)

    # -- what start-up and reconciliation read ----------------------------------------------------
    async def left_behind(self) -> dict[str, float | None]:
        """This ledger's open attempts of dead runs (the ledger lock proves them dead): key ->
        the latest local time the run could still have been sending (its last heartbeat)."""
        return await self._call(self._file.left_behind)

    async def unsent(self, intents: dict[str, float]) -> set[str]:
        """Which of this ledger's intents (key -> local time) never reached the wire.

        Each POST is registered after its intent and before it is sent, by every run since this
        ledger first used the registry: an intent from then on with no attempt and no claim
        here was never sent. Older intents (or a registry made anew) prove nothing.
        """
        return await self._call(self._file.unsent, intents)

    async def adopt(self, attempts: dict[str, tuple[float, float | None, str | None]]) -> None:
        """Own the ledger's ambiguous POSTs: key -> (sent, answered, floor)."""
        await self._call(
            self._file.transaction,
            [
                (
                    "INSERT INTO attempts VALUES (?, ?, ?, 'ambiguous', ?, ?, ?, 1, 1, 0) "
                    "ON CONFLICT (ledger, key) DO UPDATE SET run_id = excluded.run_id, "
                    "state = 'ambiguous', "
                    "answered_at = COALESCE(answered_at, excluded.answered_at)",
                    (self.ledger, key, self.run_id, sent, answered, floor),
                )
                for key, (sent, answered, floor) in attempts.items()
            ],
        )

    async def claim_all(self, jobs: Iterable[tuple[str, str, str]]) -> None:
        """Claim (key, job id, created_at) in bulk: jobs the registry may not know yet."""
        now = time.time()
        await self._call(
            self._file.transaction,
            [
                ("INSERT OR IGNORE INTO claims VALUES (?, ?, ?, ?, ?)",
                 (remote_id, created_at, self.ledger, key, now))
                for key, remote_id, created_at in jobs
            ],
        )  # fmt: skip

    async def snapshot(self, since: str | None, *, claims: bool = True) -> Snapshot:
        """Every open attempt of the account, with its run's liveness, and every claim of a job
        created at or after ``since`` (all claims when None; none without ``claims``)."""
        return await self._call(self._file.snapshot, since, claims)

    async def newest_claim(self) -> str | None:
        """The newest ``created_at`` any run of the account claimed."""
        rows = await self._call(self._file.rows, "SELECT MAX(created_at) FROM claims", ())
        return rows[0][0] if rows else None

    async def open_attempts(self) -> bool:
        """Whether any run of the account has a POST whose job is not known yet."""
        rows = await self._call(self._file.rows, "SELECT 1 FROM attempts LIMIT 1", ())
        return bool(rows)

    async def claimed_among(self, remote_ids: Iterable[str]) -> set[str]:
        """Which of ``remote_ids`` some run of the account claims."""
        ids = list(remote_ids)
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            sql = f"SELECT remote_id FROM claims WHERE remote_id IN ({','.join('?' * len(chunk))})"
            found |= {row[0] for row in await self._call(self._file.rows, sql, chunk)}
        return found

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except sqlite3.Error as exc:
            raise LedgerError(f"the account registry {self.path} cannot be used: {exc}") from None

    async def _write(self, sql: str, params: tuple[Any, ...], *, durable: bool = True) -> None:
        await self._call(partial(self._file.transaction, [(sql, params)], durable=durable))

    async def look_around(self) -> None:
        """Whether another run of the account is alive now (see :meth:`posting`)."""
        self.alone = not await self._call(self._file.others_alive)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            # A busy file: the next beat tries again (a late beat only widens a window).
            with suppress(LedgerError):
                await self._write(
                    "UPDATE runs SET alive_at = ? WHERE run_id = ?",
                    (time.time(), self.run_id),
                    durable=False,  # a lost beat is covered: see store.forget_dead_runs
                )
                await self.look_around()
