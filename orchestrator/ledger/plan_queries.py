"""The plan in the ledger: syncing a manifest's jobs, and the set-based queries of a run's start.

A mixin of :class:`~orchestrator.ledger.store.Ledger`, kept apart from the per-job reads and
transitions of a running batch because these statements touch a whole batch at once, and at
100,000 jobs their shape decides how long a run takes to start (issue 6):

* :meth:`sync_plan` streams the rows in chunks inside one transaction, together with the batch row,
  the record of the plan it was synced from (``batches.synced_plan``) and the edges of chained
  jobs (``chain_queries``), so a crash mid-sync leaves the previous plan whole and never a batch
  that claims jobs it does not hold;
* crash recovery moves every job of one state with one UPDATE (:meth:`move_all`); the trigger
  still writes one event per job, and the move is checked against ``jobs.TRANSITIONS``;
* the in-flight window and spend are sums SQLite computes (:meth:`flight_totals`): no start-up
  step builds a JobRecord per job.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite

from orchestrator.clock import now_utc
from orchestrator.errors import IllegalTransition
from orchestrator.jobs import (
    IN_FLIGHT,
    REMOTE_TERMINAL,
    UNSENT,
    JobSpec,
    JobState,
    can_transition,
    canonical_json,
)
from orchestrator.ledger.chain_queries import INSERT_EDGE, PROMOTE_READY
from orchestrator.ledger.records import Batch, DoneFile, Move, PlanSync, filters, update_sql
from orchestrator.still_names import IMAGE_EXTENSIONS, same_file

#: Rows per executemany of a sync: bounded memory, few thread hops.
SYNC_CHUNK = 5_000
#: The first migration with ``batches.synced_plan``.
SYNCED_PLAN_VERSION = 3
#: The schema version from which batches record their API base and a cancel (migration 7).
BATCH_API_VERSION = 7

Seconds = Mapping[str, float | None] | Callable[[JobSpec], float | None]

#: Planned and never sent (``jobs.UNSENT``): a superseded row in one of these is not history.
_UNSENT_IN = ", ".join(f"'{state.value}'" for state in sorted(UNSENT))

_UPSERT_JOB = (
    "INSERT INTO jobs (key, batch, entry_id, model, request, state, seq, price_micro, "
    "seconds, output_path, cause, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
    "planned = 1, seq = excluded.seq, seconds = excluded.seconds, "
    "output_path = CASE WHEN jobs.state = 'done' THEN jobs.output_path "
    "                   ELSE excluded.output_path END, "
    f"price_micro = CASE WHEN jobs.state IN ({_UNSENT_IN}) THEN excluded.price_micro "
    "                   ELSE jobs.price_micro END"
)
_UPSERT_BATCH = (
    "INSERT INTO batches (name, manifest_path, manifest_sha256, out_dir, budget_micro, "
    "synced_plan, api_base, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(name) DO UPDATE SET manifest_path=excluded.manifest_path, "
    "manifest_sha256=excluded.manifest_sha256, out_dir=excluded.out_dir, "
    "budget_micro=excluded.budget_micro, synced_plan=excluded.synced_plan, "
    "api_base=ifnull(excluded.api_base, batches.api_base), updated_at=excluded.updated_at"
)
#: Rerolls (``jobs.reroll_of``, issue 15) stay planned while the job they take again is, at that
#: job's place in the order, unless the manifest now maps a job of its own to their path.
_KEEP_REROLLS = (
    "WITH RECURSIVE kept(key, seq) AS ("
    " SELECT key, seq FROM jobs WHERE batch = ?1 AND planned = 1 AND reroll_of IS NULL"
    " UNION SELECT j.key, kept.seq FROM jobs AS j JOIN kept ON j.reroll_of = kept.key) "
    "UPDATE jobs SET planned = 1, seq = (SELECT seq FROM kept WHERE kept.key = jobs.key) "
    "WHERE batch = ?1 AND reroll_of IS NOT NULL AND key IN (SELECT key FROM kept) "
    "AND output_path NOT IN (SELECT output_path FROM jobs WHERE batch = ?1 AND planned = 1 "
    "AND reroll_of IS NULL AND output_path IS NOT NULL)"
)
_DONE_PATHS = "SELECT key, output_path FROM jobs WHERE batch = ? AND state = 'done'"
_DROPPED = f"SELECT count(*) FROM jobs WHERE batch = ? AND planned = 0 AND state IN ({_UNSENT_IN})"
#: A job that may still cost money: in flight, or an orphan Krea has not finished.
_FLYING = (
    f"(state IN ({', '.join('?' * len(IN_FLIGHT))}) OR (state = 'orphan' AND "
    f"ifnull(remote_status, '') NOT IN ({', '.join('?' * len(REMOTE_TERMINAL))})))"
)


T = TypeVar("T")


class PlanQueries:
    """Whole-batch writes and reads; the Ledger provides the connection, its lock and commits."""

    if TYPE_CHECKING:

        def _write(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

        async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        async def pragma(self, name: str) -> Any: ...

    async def sync_plan(
        self,
        batch: str,
        specs: Iterable[JobSpec],
        seconds: Seconds,
        *,
        record: Batch | None = None,
        synced_plan: str | None = None,
    ) -> PlanSync:
        """Insert new jobs as pending (or waiting), keep existing ones, mark what was dropped.

        A job that takes other jobs' results (``JobSpec.inputs``) is inserted ``waiting``, with
        its edges. In the same transaction: done jobs whose output path changed go back to
        ``completed`` (their file must be fetched to the new place); every waiting job whose
        inputs all have a result (made by an earlier run) becomes pending; and, with ``record``,
        the batch row is written with ``synced_plan``, the record that lets an unchanged manifest
        skip loading.
        """
        seconds_of = seconds if callable(seconds) else _lookup(seconds)
        now = now_utc()
        async with self._write() as db:
            if record is not None:
                await db.execute(_UPSERT_BATCH, _batch_row(record, synced_plan, now))
            done = {str(key): path for key, path in await _rows(db, _DONE_PATHS, (batch,))}
            before = await _count(db, "SELECT count(*) FROM jobs WHERE batch = ?", (batch,))
            await db.execute(
                "UPDATE jobs SET planned = 0 WHERE batch = ? AND planned = 1", (batch,)
            )
            planned, moves = 0, []
            for chunk in _chunks(specs, SYNC_CHUNK):
                rows = [_job_row(batch, spec, seconds_of(spec), now) for spec in chunk]
                await db.executemany(_UPSERT_JOB, rows)
                if edges := [(s.key, source) for s in chunk for source in s.inputs]:
                    await db.executemany(INSERT_EDGE, edges)
                moves += [_moved(s) for s in chunk if not _in_place(done.get(s.key), s)]
                planned += len(chunk)
            await db.execute(_KEEP_REROLLS, (batch,))
            await _apply(db, moves, now)
            await db.execute(PROMOTE_READY, (now, batch))
            after = await _count(db, "SELECT count(*) FROM jobs WHERE batch = ?", (batch,))
            dropped = await _count(db, _DROPPED, (batch,))
        return PlanSync(added=after - before, kept=planned - (after - before), dropped=dropped)

    async def synced_plans(self, manifest_sha256: str) -> list[tuple[Batch, str]]:
        """Batches last synced from a manifest with these bytes, with their ``synced_plan``."""
        if int(await self.pragma("user_version") or 0) < SYNCED_PLAN_VERSION:
            return []  # an older ledger, read before its migration: nothing recorded yet
        rows = await self._fetch(
            "SELECT name, manifest_path, manifest_sha256, out_dir, budget_micro, synced_plan "
            "FROM batches WHERE manifest_sha256 = ? AND synced_plan IS NOT NULL",
            (manifest_sha256,),
        )
        return [(Batch(*row[:5]), str(row[5])) for row in rows]

    async def set_cancelled(self, batch: str, cancelled: bool) -> None:
        """Record that `cancel` stopped ``batch`` (or, resumed, clear it)."""
        async with self._write() as db:
            await db.execute(
                "UPDATE batches SET cancelled_at = ? WHERE name = ?",
                (now_utc() if cancelled else None, batch),
            )

    async def entry_states(self, batch: str) -> list[tuple[str, str, JobState]]:
        """(key, entry id, state) of the batch's current jobs, in manifest order."""
        rows = await self._fetch(
            "SELECT key, entry_id, state FROM jobs WHERE batch = ? AND planned = 1 ORDER BY seq",
            (batch,),
        )
        return [(str(key), str(entry_id), JobState(state)) for key, entry_id, state in rows]

    async def any_pending(self, keys: Iterable[str]) -> bool:
        """Is any of these jobs pending and in its batch's current manifest?"""
        for chunk in _chunks(keys, 500):
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT 1 FROM jobs WHERE state = 'pending' AND planned = 1 AND key IN ({marks})"
            if await self._fetch(sql + " LIMIT 1", chunk):
                return True
        return False

    async def output_owners(self, batch: str) -> list[tuple[str, str]]:
        """(entry id, output path) of every job of ``batch`` that has written or may write a file.

        Unsent (pending or waiting) jobs their manifest dropped will write nothing and are left
        out.
        """
        rows = await self._fetch(
            "SELECT entry_id, output_path FROM jobs WHERE batch = ? AND output_path IS NOT NULL "
            f"AND (planned = 1 OR state NOT IN ({_UNSENT_IN}))",
            (batch,),
        )
        return [(str(entry_id), str(path)) for entry_id, path in rows]

    async def move_all(
        self, expect: JobState, to: JobState, cause: str, *, batch: str | None = None
    ) -> list[str]:
        """Move every job in ``expect`` (of ``batch``, or of all batches) to ``to``, atomically.

        Two statements whatever the number of jobs; each job still gets its event (trigger).
        Returns the keys moved, in manifest order.
        """
        if not can_transition(expect, to):
            raise IllegalTransition("*", expect.value, to.value)
        where, params = filters(batch, [expect], False, None)
        async with self._write() as db:
            found = await _rows(db, f"SELECT key FROM jobs{where} ORDER BY batch, seq", params)
            keys = [str(row[0]) for row in found]
            await db.execute(
                "UPDATE jobs SET state = ?, cause = ?, detail = NULL, updated_at = ?, "
                f"rev = rev + 1{where}",
                [to.value, cause, now_utc(), *params],
            )
        return keys

    async def done_files(self, batch: str) -> list[DoneFile]:
        """What was recorded of the file of every done job of ``batch``'s current manifest.

        Superseded jobs are left out: their path may now be another job's, and only the job the
        current manifest maps to a path may ever write it.
        """
        rows = await self._fetch(
            "SELECT key, output_path, bytes, sha256, file_mtime_ns FROM jobs "
            "WHERE batch = ? AND state = 'done' AND planned = 1 ORDER BY seq",
            (batch,),
        )
        return [DoneFile(*row) for row in rows]

    async def superseded_stills(self, batch: str, stem: str, saved: str) -> list[DoneFile]:
        """The files superseded jobs of ``batch`` saved as still ``stem`` in another format than
        ``saved`` (``x.png`` beside a new ``x.jpg``), at a path no current job has: the files a
        new still of that name replaces, as a new clip overwrites an old one."""
        paths = [stem + extension for extension in IMAGE_EXTENSIONS if stem + extension != saved]
        rows = await self._fetch(
            "SELECT key, output_path, bytes, sha256, file_mtime_ns FROM jobs AS j "
            "WHERE batch = ? AND state = 'done' AND planned = 0 "
            f"AND output_path IN ({', '.join('?' * len(paths))}) AND NOT EXISTS (SELECT 1 "
            "FROM jobs AS p WHERE p.batch = j.batch AND p.planned = 1 "
            "AND p.output_path = j.output_path)",
            (batch, *paths),
        )
        return [DoneFile(*row) for row in rows]

    async def flight_totals(self, batch: str) -> tuple[int, int, int]:
        """(jobs that may still cost money, their prices, prices Krea billed) of ``batch``.

        "Billed" counts jobs not in flight whose remote status is ``completed``.
        """
        states = [*sorted(IN_FLIGHT), *sorted(REMOTE_TERMINAL)]
        rows = await self._fetch(
            f"SELECT ifnull(sum(CASE WHEN {_FLYING} THEN 1 ELSE 0 END), 0), "
            f"ifnull(sum(CASE WHEN {_FLYING} THEN price_micro ELSE 0 END), 0), "
            f"ifnull(sum(CASE WHEN NOT {_FLYING} AND remote_status = 'completed' "
            "THEN price_micro ELSE 0 END), 0) FROM jobs WHERE batch = ?",
            [*states, *states, *states, batch],
        )
        count, exposure, billed = rows[0]
        return int(count), int(exposure), int(billed)

    async def job_keys(self, batch: str, state: JobState) -> list[str]:
        """Keys of the jobs of ``batch``'s current manifest in ``state``, in manifest order."""
        rows = await self._fetch(
            "SELECT key FROM jobs WHERE batch = ? AND state = ? AND planned = 1 ORDER BY seq",
            (batch, state.value),
        )
        return [str(row[0]) for row in rows]


def _lookup(seconds: Mapping[str, float | None]) -> Callable[[JobSpec], float | None]:
    return lambda spec: seconds.get(spec.key)


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _job_row(batch: str, spec: JobSpec, seconds: float | None, now: str) -> tuple[Any, ...]:
    return (
        spec.key, batch, spec.entry_id, spec.model, canonical_json(spec.request),
        (JobState.WAITING if spec.inputs else JobState.PENDING).value, spec.seq,
        spec.price_micro, seconds, spec.output_path, "planned", now, now,
    )  # fmt: skip


def _batch_row(batch: Batch, synced_plan: str | None, now: str) -> tuple[Any, ...]:
    return (
        batch.name, batch.manifest_path, batch.manifest_sha256, batch.out_dir,
        batch.budget_micro, synced_plan, batch.api_base, now, now,
    )  # fmt: skip


def _in_place(saved: str | None, spec: JobSpec) -> bool:
    """Not done, or done where the manifest now plans it (a still as its verified x.png)."""
    return saved is None or same_file(saved, spec.output_path)


def _moved(spec: JobSpec) -> Move:
    """A done job whose output path the manifest changed: back to completed, to fetch again."""
    cause, fields = "output path changed in the manifest", {"output_path": spec.output_path}
    return Move(spec.key, JobState.DONE, JobState.COMPLETED, cause, fields)


async def _apply(db: aiosqlite.Connection, moves: Sequence[Move], now: str) -> None:
    """Compare-and-set each move inside the caller's transaction."""
    for move in moves:
        sql, params = update_sql(move, now)
        cursor = await db.execute(sql, params)
        if cursor.rowcount != 1:
            raise IllegalTransition(move.key, move.expect.value, move.to.value)


async def _rows(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params))


async def _count(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> int:
    return int((await _rows(db, sql, params))[0][0])
