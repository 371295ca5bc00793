"""Read-only queries for `report` and `export`: SELECTs only, rows as column -> value dicts.

A mixin of :class:`~orchestrator.ledger.store.Ledger`, kept in its own module because reports
read the ledger in bulk while a run reads it one job at a time. The pure ``accounting`` module
needs nothing from here but the dicts. ``result_url`` (a signed media link), ``floor`` and the
assets table are never selected.

Readers open the file read-only and so never migrate it: a ledger last written by an older
version may lack the ``unattributed`` table (migration 6), which then reads as empty.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiosqlite


class ReportQueries:
    """Bulk reads for reports; the Ledger provides the connection and its lock."""

    _db: aiosqlite.Connection
    _lock: asyncio.Lock

    #: Job columns `export` writes, in order.
    EXPORT_JOB_COLUMNS = (
        "key, batch, entry_id, model, state, planned, seq, remote_id, remote_status, "
        "remote_created_at, price_micro, seconds, output_path, bytes, sha256, attempts, "
        "last_error, request, cause, intent_at, answered_at, completed_at, done_at, "
        "created_at, updated_at"
    )
    #: Event columns `export --events` writes, in order (every column of the table).
    EXPORT_EVENT_COLUMNS = (
        "seq, job_key, batch, at, from_state, to_state, cause, remote_id, remote_status, "
        "price_micro, detail"
    )
    _MONEY_JOB_COLUMNS = (
        "key, batch, entry_id, model, state, price_micro, seconds, remote_id, remote_status, "
        "remote_created_at, completed_at, updated_at, planned"
    )
    _MONEY_EVENT_COLUMNS = "seq, job_key, at, to_state, remote_id, remote_status, price_micro"
    _DUPLICATE_COLUMNS = "remote_id, batch, model, price_micro, remote_status, created_at, note"
    #: A batch's share of the jobs no run claims: its possible duplicates, and the foreign jobs
    #: its runs saw or that no batch's run is named for.
    _UNATTRIBUTED_OF_BATCH = "(batch = ? OR (batch IS NULL AND kind = 'foreign'))"

    async def report_jobs(self, batch: str | None = None) -> list[dict[str, Any]]:
        """What accounting reads of the jobs of ``batch`` (or all), in batch and manifest order.

        Rows that are pending, were never sent and have left the manifest are skipped: they are
        no part of any spend, past or future. ``planned`` tells accounting whether a pending row
        will still be sent (it costs money then) or has left the manifest (it never will).
        """
        ever_sent = "(planned = 1 OR state != 'pending' OR attempts > 0)"
        where, params = self._batch_where(batch, ever_sent)
        sql = f"SELECT {self._MONEY_JOB_COLUMNS} FROM jobs{where} ORDER BY batch, seq, key"
        return await self._dicts(sql, params)

    async def report_events(self, batch: str | None = None) -> list[dict[str, Any]]:
        """The events money depends on, oldest first: remote jobs completed, failed, cancelled.

        A superset of what ``accounting`` reads (it decides which count). The rest of the
        history (planned, intents, queued, ...) stays in the file: a large ledger's report
        must fit in memory.
        """
        money = "(to_state IN ('failed', 'cancelled') OR remote_status = 'completed')"
        where, params = self._batch_where(batch, money)
        sql = f"SELECT {self._MONEY_EVENT_COLUMNS} FROM events{where} ORDER BY seq"
        return await self._dicts(sql, params)

    async def export_jobs(self, batch: str | None = None) -> list[dict[str, Any]]:
        """Every job row of ``batch`` (or all), in batch and manifest order."""
        where, params = self._batch_where(batch)
        sql = f"SELECT {self.EXPORT_JOB_COLUMNS} FROM jobs{where} ORDER BY batch, seq, key"
        return await self._dicts(sql, params)

    async def export_events(self, batch: str | None = None) -> list[dict[str, Any]]:
        """Every event row of ``batch`` (or all), oldest first."""
        where, params = self._batch_where(batch)
        sql = f"SELECT {self.EXPORT_EVENT_COLUMNS} FROM events{where} ORDER BY seq"
        return await self._dicts(sql, params)

    async def report_batches(self) -> list[dict[str, Any]]:
        """Every batch's name, budget and creation time, oldest first."""
        return await self._dicts(
            "SELECT name, budget_micro, created_at FROM batches ORDER BY created_at, name"
        )

    async def report_possible_duplicates(self, batch: str | None = None) -> list[dict[str, Any]]:
        """Jobs a lost POST of ``batch`` (or any) may have made, or another client; oldest first."""
        if not await self._has_table("unattributed"):
            return []
        where, params = self._batch_where(batch, "kind = 'possible_duplicate'")
        sql = (
            f"SELECT {self._DUPLICATE_COLUMNS} FROM unattributed{where} "
            "ORDER BY created_at, remote_id"
        )
        return await self._dicts(sql, params)

    async def unattributed_counts(self, batch: str | None = None) -> dict[str, int]:
        """How many jobs no run claims, by kind (``foreign``, ``possible_duplicate``).

        For a batch: its possible duplicates, and the foreign jobs seen by its runs or recorded
        with no batch (another client's jobs belong to no batch, so each batch shows them).
        """
        counts = {"foreign": 0, "possible_duplicate": 0}
        if not await self._has_table("unattributed"):
            return counts
        where = "" if batch is None else f" WHERE {self._UNATTRIBUTED_OF_BATCH}"
        sql = f"SELECT kind, count(*) AS n FROM unattributed{where} GROUP BY kind"
        rows = await self._dicts(sql, [] if batch is None else [batch])
        return counts | {row["kind"]: row["n"] for row in rows}

    async def _has_table(self, name: str) -> bool:
        """Whether the file has table ``name`` (a reader never migrates an older ledger)."""
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return bool(await self._dicts(sql, [name]))

    async def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a SELECT as column -> value dicts."""
        async with self._lock:
            cursor = await self._db.execute(sql, params)
            rows = await cursor.fetchall()
            names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in rows]

    @staticmethod
    def _batch_where(batch: str | None, *clauses: str) -> tuple[str, list[Any]]:
        """WHERE ``clauses``, and ``batch = ?`` when a batch is given."""
        params = [] if batch is None else [batch]
        wanted = [*clauses, *(["batch = ?"] if params else [])]
        return (f" WHERE {' AND '.join(wanted)}" if wanted else ""), params
