"""The :class:`Ledger`: opening the file, transactions, transitions and the queries a run needs.

See the package docstring for why it is built this way. Every write goes through one
``aiosqlite`` connection guarded by an ``asyncio.Lock``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from orchestrator.clock import now_utc
from orchestrator.errors import LedgerError
from orchestrator.jobs import JobRecord, JobState
from orchestrator.ledger.chain_queries import ChainQueries
from orchestrator.ledger.commits import GroupCommit
from orchestrator.ledger.migrations import migrate
from orchestrator.ledger.plan_queries import BATCH_API_VERSION, PlanQueries
from orchestrator.ledger.records import (
    JOB_COLUMNS,
    Batch,
    Event,
    Move,
    Unattributed,
    filters,
    record,
)
from orchestrator.ledger.report_queries import ReportQueries
from orchestrator.ledger.review_queries import ReviewQueries
from orchestrator.ledger.view_queries import ViewQueries


class Ledger(PlanQueries, ChainQueries, ReportQueries, ReviewQueries, ViewQueries):
    """An open ledger file. Use :meth:`open` (async context manager)."""

    def __init__(self, db: aiosqlite.Connection, path: Path, readonly: bool) -> None:
        self._db = db
        self.path = path
        self.readonly = readonly
        self._lock = asyncio.Lock()  # serialises every use of the one connection (P1.5)
        self._commits = GroupCommit(db, self._lock)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: str | os.PathLike[str], *, readonly: bool = False
    ) -> AsyncIterator[Ledger]:
        """Open (creating and migrating unless ``readonly``) and close on exit."""
        ledger_path = Path(path)
        target = _connect_target(ledger_path, readonly)
        try:
            db = await aiosqlite.connect(target, uri=readonly, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open ledger {ledger_path}: {exc}") from None
        ledger: Ledger | None = None
        try:
            await _configure(db, readonly)
            ledger = cls(db, ledger_path, readonly)
            yield ledger
        finally:
            if ledger is not None:
                await ledger._commits.close()
            await db.close()

    @property
    def commit_counts(self) -> tuple[int, int]:
        """(transactions, transitions) committed through the group commit since opening."""
        return self._commits.rounds, self._commits.moves

    # -- transactions -------------------------------------------------------------------------

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One multi-statement unit: BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""
        await self._commits.settled()
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        await self._commits.settled()  # read your own queued transitions
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        await self._commits.settled()  # writes land in the order they were asked for
        async with self._lock:
            cursor = await self._db.execute(sql, params)
            return int(cursor.rowcount)

    # -- batches ------------------------------------------------------------------------------

    async def save_batch(self, batch: Batch) -> None:
        now = now_utc()
        await self._execute(
            "INSERT INTO batches (name, manifest_path, manifest_sha256, out_dir, budget_micro, "
            "api_base, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET manifest_path=excluded.manifest_path, "
            "manifest_sha256=excluded.manifest_sha256, out_dir=excluded.out_dir, "
            "budget_micro=excluded.budget_micro, "
            "api_base=ifnull(excluded.api_base, batches.api_base), updated_at=excluded.updated_at",
            (
                batch.name,
                batch.manifest_path,
                batch.manifest_sha256,
                batch.out_dir,
                batch.budget_micro,
                batch.api_base,
                now,
                now,
            ),
        )

    async def batch(self, name: str) -> Batch | None:
        """The batch row (a ledger read before its migrations lacks the newer columns)."""
        newer = int(await self.pragma("user_version") or 0) >= BATCH_API_VERSION
        columns = "api_base, cancelled_at" if newer else "NULL, NULL"
        rows = await self._fetch(
            "SELECT name, manifest_path, manifest_sha256, out_dir, budget_micro, "
            f"{columns} FROM batches WHERE name = ?",
            (name,),
        )
        return Batch(*rows[0]) if rows else None

    async def batch_names(self) -> list[str]:
        return [row[0] for row in await self._fetch("SELECT name FROM batches ORDER BY created_at")]

    # -- reading jobs (the plan's sync and start-up queries: plan_queries.PlanQueries) --------

    async def job(self, key: str) -> JobRecord | None:
        rows = await self._fetch(f"SELECT {JOB_COLUMNS} FROM jobs WHERE key = ?", (key,))
        return record(rows[0]) if rows else None

    async def job_by_remote_id(self, remote_id: str) -> JobRecord | None:
        rows = await self._fetch(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE remote_id = ?", (remote_id,)
        )
        return record(rows[0]) if rows else None

    async def jobs(
        self,
        *,
        batch: str | None = None,
        states: Iterable[JobState] | None = None,
        current_only: bool = False,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[JobRecord]:
        """Jobs in manifest order, filtered."""
        where, params = filters(batch, states, current_only, after_seq)
        sql = f"SELECT {JOB_COLUMNS} FROM jobs{where} ORDER BY batch, seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [record(row) for row in await self._fetch(sql, params)]

    async def state_counts(
        self, batch: str | None = None, *, current_only: bool = False
    ) -> dict[JobState, int]:
        where, params = filters(batch, None, current_only, None)
        rows = await self._fetch(f"SELECT state, count(*) FROM jobs{where} GROUP BY state", params)
        return {JobState(state): count for state, count in rows}

    async def oldest_in_flight(self, batch: str) -> str | None:
        """When the oldest job still in flight was sent (its intent time), for `status`."""
        rows = await self._fetch(
            "SELECT min(intent_at) FROM jobs WHERE batch = ? AND state IN "
            "('submitting', 'submitted', 'ambiguous')",
            (batch,),
        )
        return str(rows[0][0]) if rows and rows[0][0] else None

    async def newest_remote_created_at(self) -> str | None:
        rows = await self._fetch("SELECT max(remote_created_at) FROM jobs")
        return str(rows[0][0]) if rows and rows[0][0] else None

    async def remote_ids_since(self, created_at: str) -> set[str]:
        """Remote ids the ledger already holds or has judged no run's, created since then."""
        rows = await self._fetch(
            "SELECT remote_id FROM jobs WHERE remote_created_at >= ? "
            "UNION SELECT remote_id FROM unattributed WHERE created_at >= ?",
            (created_at, created_at),
        )
        return {row[0] for row in rows}

    async def foreign_since(self, created_at: str) -> set[str]:
        """Other clients' jobs recorded on the account, created at or after ``created_at``."""
        rows = await self._fetch(
            "SELECT remote_id FROM unattributed WHERE kind = 'foreign' AND created_at >= ?",
            (created_at,),
        )
        return {row[0] for row in rows}

    async def remote_jobs_since(self, created_at: str, limit: int) -> list[tuple[str, str, str]]:
        """(key, remote id, created_at) of the newest ``limit`` jobs since ``created_at``."""
        rows = await self._fetch(
            "SELECT key, remote_id, remote_created_at FROM jobs "
            "WHERE remote_created_at >= ? AND remote_id IS NOT NULL "
            "ORDER BY remote_created_at DESC LIMIT ?",
            (created_at, limit),
        )
        return [(row[0], row[1], row[2]) for row in rows]

    async def known_remote_ids(self, remote_ids: Sequence[str]) -> set[str]:
        """Which of ``remote_ids`` a row holds, or were recorded as no run's."""
        found: set[str] = set()
        for start in range(0, len(remote_ids), 400):
            chunk = list(remote_ids[start : start + 400])
            marks = ",".join("?" * len(chunk))
            rows = await self._fetch(
                f"SELECT remote_id FROM jobs WHERE remote_id IN ({marks}) "
                f"UNION SELECT remote_id FROM unattributed WHERE remote_id IN ({marks})",
                chunk + chunk,
            )
            found |= {row[0] for row in rows}
        return found

    # -- transitions --------------------------------------------------------------------------

    async def transition(
        self,
        key: str,
        to: JobState,
        *,
        expect: JobState,
        cause: str,
        detail: str | None = None,
        **fields: Any,
    ) -> None:
        """Move one job, durably. Raises IllegalTransition if the move is not allowed or stale."""
        await self.transition_soon(key, to, expect=expect, cause=cause, detail=detail, **fields)

    def transition_soon(
        self,
        key: str,
        to: JobState,
        *,
        expect: JobState,
        cause: str,
        detail: str | None = None,
        **fields: Any,
    ) -> asyncio.Future[None]:
        """Queue a transition without waiting: it is durable once any later write has returned.

        For a move the next remote call does not depend on (a job id after its POST: the next
        intent is queued behind it). The caller awaits the future later, to see any error.
        """
        return self._commits.submit([Move(key, expect, to, cause, fields, detail)])

    async def apply(self, moves: Sequence[Move]) -> None:
        """Several transitions as one unit, all or nothing (a sweep's worth of status changes)."""
        if moves:
            await self._commits.submit(moves)

    async def add_orphan(
        self,
        batch: str,
        remote_id: str,
        *,
        remote_status: str,
        created_at: str,
        price_micro: int,
        model: str,
        cause: str,
    ) -> str:
        """Record a remote job no entry can claim; returns its ledger key."""
        key = f"orphan:{remote_id}"
        now = now_utc()
        await self._execute(
            "INSERT INTO jobs (key, batch, entry_id, model, request, state, planned, seq, "
            "price_micro, remote_id, remote_status, remote_created_at, cause, created_at, "
            "updated_at) "
            "VALUES (?, ?, ?, ?, '{}', 'orphan', 0, -1, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO NOTHING",
            (
                key,
                batch,
                key,
                model,
                price_micro,
                remote_id,
                remote_status,
                created_at,
                cause,
                now,
                now,
            ),
        )
        return key

    async def add_unattributed(self, rows: Sequence[Unattributed]) -> None:
        """Record jobs on the account no run can claim (a possible duplicate stays one)."""
        if not rows:
            return
        async with self._write() as db:
            await db.executemany(
                "INSERT INTO unattributed (remote_id, kind, batch, model, price_micro, "
                "remote_status, created_at, seen_at, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(remote_id) DO UPDATE SET remote_status = excluded.remote_status, "
                "kind = CASE WHEN unattributed.kind = 'possible_duplicate' THEN unattributed.kind "
                "ELSE excluded.kind END",
                [
                    (r.remote_id, r.kind, r.batch, r.model, r.price_micro, r.remote_status,
                     r.created_at, now_utc(), r.note)
                    for r in rows
                ],
            )  # fmt: skip

    async def unattributed(self, batch: str | None = None) -> list[Unattributed]:
        """Jobs seen on the account that no run claims, oldest first (foreign for every batch)."""
        sql = (
            "SELECT remote_id, kind, batch, model, price_micro, remote_status, created_at, note "
            "FROM unattributed"
        )
        params: tuple[Any, ...] = ()
        if batch is not None:
            sql += " WHERE batch IS NULL OR batch = ?"
            params = (batch,)
        rows = await self._fetch(sql + " ORDER BY created_at", params)
        return [Unattributed(*row) for row in rows]

    # -- assets -------------------------------------------------------------------------------

    async def asset_url(self, sha256: str) -> str | None:
        rows = await self._fetch("SELECT url FROM assets WHERE sha256 = ?", (sha256,))
        return str(rows[0][0]) if rows else None

    async def save_asset(
        self, sha256: str, url: str, *, asset_id: str | None, size_bytes: int, mime_type: str
    ) -> None:
        await self._execute(
            "INSERT OR REPLACE INTO assets (sha256, url, asset_id, size_bytes, mime_type, "
            "uploaded_at) VALUES (?, ?, ?, ?, ?, ?)",
            (sha256, url, asset_id, size_bytes, mime_type, now_utc()),
        )

    # -- history ------------------------------------------------------------------------------

    async def events(self, *, key: str | None = None, batch: str | None = None) -> list[Event]:
        clauses, params = [], []
        if key is not None:
            clauses.append("job_key = ?")
            params.append(key)
        if batch is not None:
            clauses.append("batch = ?")
            params.append(batch)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._fetch(
            "SELECT seq, job_key, batch, at, from_state, to_state, cause, remote_id, "
            "remote_status, "
            f"price_micro, detail FROM events{where} ORDER BY seq",
            params,
        )
        return [Event(*row) for row in rows]

    async def pragma(self, name: str) -> Any:
        rows = await self._fetch(f"PRAGMA {name}")
        return rows[0][0] if rows else None


def _connect_target(path: Path, readonly: bool) -> str:
    """What to hand sqlite: a read-only URI for readers, the path (parents made) for the writer."""
    if readonly:
        if not path.exists():
            raise LedgerError(f"no ledger at {path} (has `orchestrator run` been used here?)")
        return f"file:{path}?mode=ro"
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


async def _configure(db: aiosqlite.Connection, readonly: bool) -> None:
    await db.execute("PRAGMA busy_timeout = 5000")
    if readonly:
        await db.execute("PRAGMA query_only = ON")
        return
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = FULL")
    await db.execute("PRAGMA foreign_keys = ON")
    await migrate(db)
