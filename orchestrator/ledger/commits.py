"""Group commit: transitions asked for by concurrent tasks share one durable transaction.

Under ``synchronous=FULL`` every commit is an fsync of the WAL, and with aiosqlite every
statement is a hop to the connection's thread and back. A run moves each job through four or five
states, from several tasks at once (submit workers, the poller, download workers), so committing
them one by one made fsyncs and thread hops most of the orchestrator's CPU time per job.

So a transition is *queued*, and one flusher task commits everything queued so far in a single
``BEGIN IMMEDIATE ... COMMIT``, then resolves each caller's future. While it commits, new requests
queue up for the next round: a lone caller waits no longer than before, and under load one fsync
covers many transitions (the classic group commit of databases' write-ahead logs).

Durability is unchanged: a future resolves only after the COMMIT that contains its transition has
returned, and rounds run in queue order, so a caller that awaits one transition knows that every
transition queued before it is durable too. That is what lets the submitter queue a job's id
without waiting and still have it on disk before its next POST (the next intent is queued after
it). Each caller's moves are one unit: a compare-and-set that misses undoes its unit only
(a SAVEPOINT for multi-move units) and fails that caller alone with ``IllegalTransition``.
Runs of identical statements go to SQLite as one ``executemany``, and the whole round is one
thread hop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from orchestrator.clock import now_utc
from orchestrator.errors import IllegalTransition
from orchestrator.ledger.records import Move, update_sql


@dataclass(frozen=True)
class _Unit:
    """One caller's moves (all or nothing) and the future it waits on."""

    moves: Sequence[Move]
    statements: Sequence[tuple[str, list[Any]]]
    done: asyncio.Future[None]


class GroupCommit:
    """The queue of pending transitions of one ledger connection, and its flusher task."""

    def __init__(self, db: aiosqlite.Connection, lock: asyncio.Lock) -> None:
        self._db = db
        self._lock = lock  #: the ledger's: a round holds it like any other write
        self._queue: list[_Unit] = []
        self._flusher: asyncio.Task[None] | None = None
        self.rounds = 0  #: transactions committed that held at least one move
        self.moves = 0  #: moves committed

    def submit(self, moves: Sequence[Move]) -> asyncio.Future[None]:
        """Queue ``moves`` as one unit; the future resolves once they are committed.

        Illegal moves raise here, before anything is queued.
        """
        now = now_utc()
        statements = [update_sql(move, now) for move in moves]
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieved)  # a caller cancelled before awaiting logs no noise
        self._queue.append(_Unit(moves, statements, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="ledger group commit")
        return done

    async def settled(self) -> None:
        """Return once everything queued before this call is committed (or has failed)."""
        if self._queue or (self._flusher is not None and not self._flusher.done()):
            await asyncio.shield(self.submit(()))

    async def close(self) -> None:
        """Let the flusher finish what is queued; used before the connection closes."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])

    async def _flush(self) -> None:
        while self._queue:
            units, self._queue = self._queue, []
            try:
                async with self._lock:
                    missed = await self._commit(units)
            except BaseException as exc:
                for unit in units:
                    _fail(unit.done, exc)
                if not isinstance(exc, Exception):
                    raise  # cancelled: the waiting callers have been told; stop here
                continue
            for unit, miss in zip(units, missed, strict=True):
                if miss is None:
                    _resolve(unit.done)
                else:
                    _fail(unit.done, IllegalTransition(miss.key, miss.expect.value, miss.to.value))

    async def _commit(self, units: list[_Unit]) -> list[Move | None]:
        """Apply ``units`` in one transaction; per unit, the move whose compare-and-set missed.

        The whole transaction is one call on the connection's thread (aiosqlite's ``_execute``,
        the hop its own ``execute`` makes): BEGIN, the statements and COMMIT used to be a hop
        each, and on a busy machine each hop costs a thread switch both ways, on the path of
        every POST (its intent). One hop also means a cancelled caller can no longer leave a
        transaction half-way: it runs to its COMMIT or ROLLBACK on the thread.
        """
        statements = [s for unit in units for s in unit.statements]
        if not statements:
            return [None] * len(units)
        self.rounds += 1
        self.moves += len(statements)
        db = self._db
        missed: list[Move | None] = await db._execute(  # type: ignore[no-untyped-call]
            lambda: _commit_units(db._conn, units, statements)
        )
        return missed


def _commit_units(
    conn: sqlite3.Connection, units: list[_Unit], statements: list[tuple[str, list[Any]]]
) -> list[Move | None]:
    """:meth:`GroupCommit._commit` on the connection's thread (autocommit connection)."""
    if len(statements) == 1:  # autocommit: one statement, one fsync
        hit = conn.execute(*statements[0]).rowcount == 1
        return [None if hit or not unit.statements else unit.moves[0] for unit in units]
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _apply_runs(conn, statements):
            missed: list[Move | None] = [None] * len(units)
        else:  # some compare-and-set missed: start again, unit by unit, to tell whose
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            missed = [_apply_unit(conn, unit) for unit in units]
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return missed


def _apply_runs(conn: sqlite3.Connection, statements: list[tuple[str, list[Any]]]) -> bool:
    """The fast path: each run of identical SQL as one ``executemany``, in the queue's order
    (two moves of one job in one round apply in order). True when every statement changed
    its one row."""
    start = 0
    while start < len(statements):
        sql = statements[start][0]
        end = start + 1
        while end < len(statements) and statements[end][0] == sql:
            end += 1
        if conn.executemany(sql, [p for _, p in statements[start:end]]).rowcount != end - start:
            return False
        start = end
    return True


def _apply_unit(conn: sqlite3.Connection, unit: _Unit) -> Move | None:
    """Run one unit inside the round's transaction; undo it alone if a move misses."""
    several = len(unit.statements) > 1
    if several:
        conn.execute("SAVEPOINT unit")
    for move, (sql, params) in zip(unit.moves, unit.statements, strict=True):
        if conn.execute(sql, params).rowcount != 1:
            if several:
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
            return move
    if several:
        conn.execute("RELEASE unit")
    return None


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail(future: asyncio.Future[None], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)
