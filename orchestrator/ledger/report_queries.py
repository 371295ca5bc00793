"""Read-only queries for `report` and `export`: SELECTs only, rows as column -> value dicts.

A report asks SQLite for sums (``report_groups``, ``report_free_attempts``,
``report_billed_days``, ``report_chart``), never for every job: at 100,000 jobs that is a few
dozen rows, not a few hundred megabytes of dicts. An export reads its rows a page at a time.

A mixin of :class:`~orchestrator.ledger.store.Ledger`, kept in its own module because reports
read the ledger in bulk while a run reads it one job at a time. The pure ``accounting`` module
needs nothing from here but the dicts. ``result_url`` (a signed media link), ``floor`` and the
assets table are never selected.

Readers open the file read-only and so never migrate it: a ledger last written by an older
version may lack the ``unattributed`` table (migration 6), which then reads as empty, and its
billing times are found by joining ``billed_first`` (migration 8) or among the events. From
migration 10 each job's billing time is on its row and indexed: billed days are read from an index
in GROUP BY order and the chart from one in billing order (no join, no sort), and free attempts
from an index of the few events into failed or cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from orchestrator.jobs import UNSENT
from orchestrator.ledger.migrations import (
    BILLED_ROWS,
    BILLED_STATES,
    BILLING_DAY,
    BILLING_OTHER,
    BILLING_TIME,
    FREE_EVENTS,
    FREE_STATES,
)

#: Rows an export reads (and writes) at a time.
EXPORT_PAGE = 1_000
#: From this schema version each remote job's billing time is kept in ``billed_first``.
BILLED_FIRST_VERSION = 8


class ReportQueries:
    """Bulk reads for reports; the Ledger provides the connection and its lock."""

    _db: aiosqlite.Connection
    _lock: asyncio.Lock
    readonly: bool

    #: Job columns `export` writes, in order.
    EXPORT_JOB_COLUMNS = (
        "key, batch, entry_id, model, state, planned, seq, remote_id, remote_status, "
        "remote_created_at, price_micro, seconds, output_path, bytes, sha256, attempts, "
        "last_error, request, inputs_sent, result_url, cause, intent_at, answered_at, "
        "completed_at, done_at, created_at, updated_at"
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

        Rows that are unsent (pending or waiting), were never sent and have left the manifest are
        skipped: they are no part of any spend, past or future. ``planned`` tells accounting
        whether an unsent row will still be sent (it costs money then) or has left the manifest
        (it never will).
        """
        where, params = self._batch_where(batch, _ever_sent())
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

    @asynccontextmanager
    async def report_snapshot(self) -> AsyncIterator[None]:
        """One read transaction around a report's queries, so they see one moment of the file
        while a run writes it (a reader's own connection only: a run's summary reads its own
        writes, between its commits)."""
        if not self.readonly:
            yield
            return
        async with self._lock:
            await self._db.execute("BEGIN")
        try:
            yield
        finally:
            async with self._lock:
                await self._db.execute("COMMIT")

    async def report_groups(self, batch: str | None = None) -> list[dict[str, Any]]:
        """The jobs :meth:`report_jobs` reads, added up by every column accounting tells apart.

        One row per (batch, model, state, planned, remote_status, seconds) with ``jobs`` and
        the sum of ``price_micro``: a few dozen rows, however large the ledger.
        """
        where, params = self._batch_where(batch, _ever_sent())
        return await self._dicts(
            f"SELECT {_GROUPED}, count(*) AS jobs, sum(price_micro) AS price_micro "
            f"FROM jobs{where} GROUP BY {_GROUPED}",
            params,
        )

    async def report_orphans(self, batch: str | None = None) -> list[dict[str, Any]]:
        """The orphan rows of ``batch`` (or all), in the order of :meth:`report_jobs`."""
        where, params = self._batch_where(batch, "state = 'orphan'")
        sql = f"SELECT {self._MONEY_JOB_COLUMNS} FROM jobs{where} ORDER BY batch, seq, key"
        return await self._dicts(sql, params)

    async def report_free_attempts(
        self, batch: str | None, free_states: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Events entering ``free_states`` of the jobs :meth:`report_jobs` reads, counted by
        their job's batch, model and state and by UTC day (``day``; else the raw time ``at``)."""
        indexed = sorted(free_states) == sorted(FREE_STATES)
        indexed = indexed and await self._has("index", "events_free")  # migration 10
        states = f"e.{FREE_EVENTS}" if indexed else f"e.to_state IN ({_marks(free_states)})"
        where, params = _events_of(batch, states)  # the index's states, literally, to use it
        events = "events e INDEXED BY events_free" if indexed else "events e"
        sql = (
            f"SELECT j.batch, j.model, j.state, {_day('e.at')}, count(*) AS attempts "
            f"FROM {events} JOIN jobs j ON j.key = e.job_key{where} AND {_ever_sent('j.')} "
            "GROUP BY 1, 2, 3, 4, 5"
        )
        return await self._dicts(sql, [*([] if indexed else free_states), *params])

    async def report_billed_days(
        self, batch: str | None, current: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Jobs in ``current`` states (a superset of the billed; from migration 10's index, the
        billed ones alone), by billing day.

        A job's billing time is when an event first showed its remote job completed (an event
        into one of ``current`` with remote status ``completed``, matched by remote id, else by
        key), else Krea's ``completed_at``, else ``updated_at``. Rows are counted and summed by
        (state, remote_status, planned) and UTC day (``day``; else the raw time ``at``), so
        accounting decides which groups are billed.
        """
        sums = "count(*) AS jobs, sum(price_micro) AS price_micro"
        if await self._billed_at(current):  # billed states are sent: no _ever_sent() needed
            return await self._dicts(
                f"SELECT state, remote_status, planned, {BILLING_DAY} AS day, "
                f"{BILLING_OTHER} AS at, {sums} FROM jobs INDEXED BY jobs_billed_days "
                f"WHERE {BILLED_ROWS} AND (? IS NULL OR batch = ?) GROUP BY 1, 2, 3, 4, 5",
                [batch, batch],
            )
        billing, params = await self._billing(batch, current)
        sql = (
            f"{billing} SELECT state, remote_status, planned, {_day('at')}, {sums} "
            "FROM billed GROUP BY 1, 2, 3, 4, 5"
        )
        return await self._dicts(sql, params)

    async def report_chart(
        self,
        batch: str | None,
        current: Sequence[str],
        kinds: Sequence[Sequence[Any]],
        every: int,
        total: int | None = None,
    ) -> list[dict[str, Any]]:
        """Every ``every``-th charge in billing order (the first, ...) and the last, each with
        the running total: the points of the spend chart, without reading every billed job.

        ``kinds`` are the (state, remote_status, planned) groups accounting calls billed; the
        order is by billing time (``at``, NULL last), then key. ``n`` counts from 1. ``total``,
        the number of charges when the caller knows it (the sums of report_billed_days), spares
        SQLite counting them in a window of its own (a tenth of a second at 100,000 jobs).
        """
        if not kinds:
            return []
        billed = " OR ".join(["(state = ? AND remote_status IS ? AND planned = ?)"] * len(kinds))
        counted = ", count(*) OVER () AS total" if total is None else ""
        running = f"row_number() OVER w AS n, sum(price_micro) OVER w AS cumulative_micro{counted}"
        picked = f"WHERE (n - 1) % ? = 0 OR n = {'total' if total is None else '?'} ORDER BY n"
        flat = [value for kind in kinds for value in kind]
        last = [] if total is None else [total]
        if await self._billed_at(current):
            # The window reads the index in its order (no sort); only the rows drawn are read
            # from the table, by rowid.
            at = BILLING_TIME
            sql = (
                f"WITH ordered AS (SELECT rowid AS id, {running} FROM jobs "
                f"INDEXED BY jobs_billed_order WHERE {BILLED_ROWS} AND (? IS NULL OR batch = ?) "
                f"AND ({billed}) WINDOW w AS (ORDER BY {at} IS NULL, {at}, key ROWS UNBOUNDED "
                f"PRECEDING)), drawn AS (SELECT * FROM ordered {picked}) "
                f"SELECT {at} AS at, key, batch, model, price_micro, cumulative_micro, n "
                "FROM drawn CROSS JOIN jobs ON jobs.rowid = drawn.id ORDER BY n"
            )
            return await self._dicts(sql, [batch, batch, *flat, every, *last])
        billing, params = await self._billing(batch, current)
        sql = (
            f"{billing}, ordered AS (SELECT at, key, batch, model, price_micro, {running} "
            f"FROM billed WHERE {billed} "
            "WINDOW w AS (ORDER BY at IS NULL, at, key ROWS UNBOUNDED PRECEDING)) "
            f"SELECT at, key, batch, model, price_micro, cumulative_micro, n FROM ordered {picked}"
        )
        return await self._dicts(sql, [*params, *flat, every, *last])

    async def _billed_at(self, current: Sequence[str]) -> bool:
        """Whether the jobs keep these states' billing times, indexed (migration 10, from
        ``billed_first``). A job's time there is its remote job's, whichever batch's events
        showed it first: the same as in a batch's own events, since a remote id (or key) is
        only ever one batch's."""
        return await self._billed_first(current) and await self._has("index", "jobs_billed_order")

    async def _billed_first(self, current: Sequence[str]) -> bool:
        """Whether ``billed_first`` holds the billing times for these states (migration 8)."""
        if sorted(current) != sorted(BILLED_STATES):
            return False
        async with self._lock:
            cursor = await self._db.execute("PRAGMA user_version")
            row = await cursor.fetchone()
        return int(row[0] if row else 0) >= BILLED_FIRST_VERSION

    async def _billing(self, batch: str | None, current: Sequence[str]) -> tuple[str, list[Any]]:
        """``WITH first AS (...), billed AS (...)`` and its parameters: the report's jobs in
        ``current`` states, each with its billing time ``at`` (see :meth:`report_billed_days`);
        ``first`` is read from ``billed_first`` where the ledger keeps it, else found among the
        events."""
        ident = "coalesce(nullif({0}remote_id, ''), {0}{1})"
        kept = await self._billed_first(current)
        if kept:
            first = "SELECT ident, at FROM billed_first WHERE (? IS NULL OR batch = ?)"
        else:
            first = (
                f"SELECT {ident.format('', 'job_key')} AS ident, nullif(at, '') AS at, "
                "min(seq) FROM events WHERE remote_status = 'completed' "
                f"AND to_state IN ({_marks(current)}) AND (? IS NULL OR batch = ?) GROUP BY ident"
            )
        sql = (
            f"WITH first AS ({first}), "
            "billed AS (SELECT j.key, j.batch, j.model, j.state, j.remote_status, j.planned, "
            "j.price_micro, coalesce(f.at, nullif(j.completed_at, ''), nullif(j.updated_at, '')) "
            f"AS at FROM jobs j LEFT JOIN first f ON f.ident = {ident.format('j.', 'key')} "
            f"WHERE {_ever_sent('j.')} AND j.state IN ({_marks(current)}) "
            "AND (? IS NULL OR j.batch = ?))"
        )
        states = [] if kept else [*current]
        return sql, [*states, batch, batch, *current, batch, batch]

    async def export_jobs(self, batch: str | None = None) -> list[dict[str, Any]]:
        """Every job row of ``batch`` (or all), in batch and manifest order."""
        return [row async for page in self.export_job_pages(batch) for row in page]

    async def export_events(self, batch: str | None = None) -> list[dict[str, Any]]:
        """Every event row of ``batch`` (or all), oldest first."""
        return [row async for page in self.export_event_pages(batch) for row in page]

    def export_job_pages(self, batch: str | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """:meth:`export_jobs` a page at a time, each read as the one before is consumed."""
        where, params = self._batch_where(batch)
        sql = f"SELECT {self.EXPORT_JOB_COLUMNS} FROM jobs{where} ORDER BY batch, seq, key"
        return self._pages(sql, params)

    def export_event_pages(self, batch: str | None = None) -> AsyncIterator[list[dict[str, Any]]]:
        """:meth:`export_events` a page at a time, each read as the one before is consumed."""
        where, params = self._batch_where(batch)
        return self._pages(
            f"SELECT {self.EXPORT_EVENT_COLUMNS} FROM events{where} ORDER BY seq", params
        )

    async def report_batches(self) -> list[dict[str, Any]]:
        """Every batch's name, budget and creation time, oldest first."""
        return await self._dicts(
            "SELECT name, budget_micro, created_at FROM batches ORDER BY created_at, name"
        )

    async def report_possible_duplicates(self, batch: str | None = None) -> list[dict[str, Any]]:
        """Jobs a lost POST of ``batch`` (or any) may have made, or another client; oldest first."""
        if not await self._has("table", "unattributed"):
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
        if not await self._has("table", "unattributed"):
            return counts
        where = "" if batch is None else f" WHERE {self._UNATTRIBUTED_OF_BATCH}"
        sql = f"SELECT kind, count(*) AS n FROM unattributed{where} GROUP BY kind"
        rows = await self._dicts(sql, [] if batch is None else [batch])
        return counts | {row["kind"]: row["n"] for row in rows}

    async def _has(self, kind: str, name: str) -> bool:
        """Whether the file has table (or index) ``name`` (a reader never migrates a ledger)."""
        sql = "SELECT 1 FROM sqlite_master WHERE type = ? AND name = ?"
        return bool(await self._dicts(sql, [kind, name]))

    async def _pages(
        self, sql: str, params: Sequence[Any] = ()
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Rows of a SELECT as column -> value dicts, ``EXPORT_PAGE`` at a time, from one cursor:
        memory holds two pages whatever the ledger's size (the next is read while the caller
        writes this one, so SQLite's thread and the writing overlap)."""
        async with self._lock:
            cursor = await self._db.execute(sql, params)
            names = [column[0] for column in cursor.description]
        following = asyncio.ensure_future(self._page(cursor))
        try:
            while rows := await following:
                following = asyncio.ensure_future(self._page(cursor))
                yield [dict(zip(names, row, strict=True)) for row in rows]
        finally:
            following.cancel()
            async with self._lock:
                await cursor.close()

    async def _page(self, cursor: aiosqlite.Cursor) -> list[Any]:
        async with self._lock:
            return list(await cursor.fetchmany(EXPORT_PAGE))

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


#: Planned and never sent (``jobs.UNSENT``): such a row the manifest dropped is no spend.
_UNSENT_IN = ", ".join(f"'{state.value}'" for state in sorted(UNSENT))
#: What accounting tells jobs apart by (``rows.JobGroup``).
_GROUPED = "batch, model, state, planned, remote_status, seconds"
#: The fixed-width UTC form every timestamp the ledger writes has: its first ten characters are
#: its UTC day, and text order is time order. Other forms are left to the caller to read.
_FIXED_UTC = (
    "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'"
)


def _ever_sent(alias: str = "") -> str:
    """Rows that are part of some spend, past or future (see :meth:`report_jobs`)."""
    a = alias
    return f"({a}planned = 1 OR {a}state NOT IN ({_UNSENT_IN}) OR {a}attempts > 0)"


def _day(column: str) -> str:
    """``day`` (the UTC day, for the fixed-width form) and ``at`` (the time, for any other)."""
    fixed = f"{column} GLOB {_FIXED_UTC}"
    return (
        f"CASE WHEN {fixed} THEN substr({column}, 1, 10) END AS day, "
        f"CASE WHEN {fixed} THEN NULL ELSE {column} END AS at"
    )


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _events_of(batch: str | None, clause: str) -> tuple[str, list[Any]]:
    """WHERE ``clause`` for events ``e`` (and their batch, when one is given)."""
    if batch is None:
        return f" WHERE {clause}", []
    return f" WHERE {clause} AND e.batch = ? AND j.batch = ?", [batch, batch]
