"""The review loop in the ledger: marks on clips, and the new takes a reroll asks for (issue 15).

A mixin of :class:`~orchestrator.ledger.store.Ledger`. Why it is built this way:

* **Marks are the one write beside a run.** ``orchestrator view`` runs while a ``run`` holds the
  ledger's lock, and a reviewer's pick must neither wait for the run nor be lost. So a mark is
  one short statement on the ``marks`` table, which no run touches, under a long busy timeout
  (a run's commits are milliseconds; a 100,000-job sync is seconds); it never writes ``jobs``.
* **A reroll is a new job, never a reset one.** The rejected clip keeps its row, cost, history
  and file; the new take is a row of its own (``reroll_of`` names the job it takes again) with
  the same request, an id ``<entry>~r<n>`` no manifest id can have (``~`` is not allowed there),
  and a file beside the first, ``<path>~r<n>.mp4``, so nothing is overwritten. It stays planned
  as long as the job it takes again is (``plan_queries``), so a manifest edit drops both.
* **Asked once.** A rejected clip that already has a new take is not taken again: running
  ``reroll`` twice (or after a crash) sends each take once.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import aiosqlite

from orchestrator.clock import now_utc
from orchestrator.errors import ConfigError
from orchestrator.ledger.records import like_escaped
from orchestrator.still_names import IMAGE_SUFFIX, still_stem

Mark = Literal["pick", "reject"]
MARKS: tuple[Mark, ...] = ("pick", "reject")
#: How long a mark waits for a run's transaction before it is refused (ms): longer than any
#: transaction a run holds, so a reviewer's mark is never refused in practice.
MARK_BUSY_MS = 60_000
#: What separates an entry's id (and file name) from the number of a take a reroll made.
TAKE_MARK = "~r"
#: The first reroll of a clip is its second take.
FIRST_REROLL = 2

_REJECTED_UNTAKEN = (
    "SELECT j.key, j.entry_id, j.state, j.price_micro "
    "FROM jobs AS j JOIN marks AS m ON m.job_key = j.key "
    "WHERE m.batch = ? AND m.mark = 'reject' AND j.planned = 1 "
    "AND NOT EXISTS (SELECT 1 FROM jobs AS t WHERE t.reroll_of = j.key) ORDER BY j.seq"
)
_INSERT_TAKE = (
    "INSERT INTO jobs (key, batch, entry_id, model, request, state, seq, price_micro, seconds, "
    "output_path, cause, detail, reroll_of, created_at, updated_at) "
    "SELECT ?, batch, ?, model, request, 'pending', seq, price_micro, seconds, ?, "
    "'reroll: a new take of a rejected clip', ?, key, ?, ? FROM jobs WHERE key = ?"
)


@dataclass(frozen=True)
class Reroll:
    """What ``reroll`` did with one rejected job: a new take, or why not."""

    rejected: str  #: the rejected job's id
    take: str | None  #: the new take's id; None when none was made
    reason: str = ""  #: why no take can be made ("" when one was, or can be)
    price_micro: int = 0  #: what the new take is estimated to cost


class ReviewQueries:
    """Marks and rerolls; the Ledger provides the connection, its lock and commits."""

    if TYPE_CHECKING:

        def _write(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

        async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    async def set_mark(self, key: str, mark: Mark | None) -> bool:
        """Pick, reject or (None) unmark the job ``key``; False when no such job exists."""
        if mark is not None and mark not in MARKS:
            raise ConfigError(f"a mark is one of {', '.join(MARKS)} (got {mark!r})")
        await self._execute(f"PRAGMA busy_timeout = {MARK_BUSY_MS}")
        if mark is None:
            await self._execute("DELETE FROM marks WHERE job_key = ?", (key,))
            return bool(await self._fetch("SELECT 1 FROM jobs WHERE key = ?", (key,)))
        changed = await self._execute(
            "INSERT INTO marks (job_key, batch, mark, at) SELECT key, batch, ?, ? FROM jobs "
            "WHERE key = ? "
            "ON CONFLICT(job_key) DO UPDATE SET mark = excluded.mark, at = excluded.at",
            (mark, now_utc(), key),
        )
        return changed > 0

    async def marks(self, batch: str) -> dict[str, Mark]:
        """Job key -> mark, for every marked job of ``batch``."""
        rows = await self._fetch("SELECT job_key, mark FROM marks WHERE batch = ?", (batch,))
        return {str(key): mark for key, mark in rows}

    async def add_rerolls(self, batch: str) -> list[Reroll]:
        """A new pending take of every rejected clip of ``batch`` not yet taken again.

        Only a clip on disk (``done``) is taken again: one in flight is not a verdict yet, and a
        failed one is ``retry``'s. One transaction: all the takes, or none.
        """
        done: list[Reroll] = []
        async with self._write() as db:
            rejected = list(await db.execute_fetchall(_REJECTED_UNTAKEN, (batch,)))
            paths: set[str] = set()  # the batch's paths, casefolded: read once, takes added
            if any(state == "done" for _, _, state, _ in rejected):
                paths = {str(p).casefold() for (p,) in await db.execute_fetchall(_PATHS, (batch,))}
            for key, entry_id, state, price_micro in rejected:
                if state != "done":
                    done.append(Reroll(entry_id, None, _not_a_clip(state), price_micro))
                    continue
                take = await _new_take(db, batch, str(key), str(entry_id), paths)
                done.append(Reroll(entry_id, take, "", price_micro))
        return done

    async def rerolls_due(self, batch: str) -> list[Reroll]:
        """What :meth:`add_rerolls` would do now, without writing (``reroll --dry-run``)."""
        rows = await self._fetch(_REJECTED_UNTAKEN, (batch,))
        return [
            Reroll(entry_id, None, "" if state == "done" else _not_a_clip(state), price_micro)
            for _, entry_id, state, price_micro in rows
        ]

    async def reroll_keys(self, batch: str) -> frozenset[str]:
        """Keys of the takes rerolls made in ``batch`` that are still to be sent."""
        rows = await self._fetch(
            "SELECT key FROM jobs WHERE batch = ? AND reroll_of IS NOT NULL AND planned = 1 "
            "AND state IN ('pending', 'waiting')",
            (batch,),
        )
        return frozenset(str(key) for (key,) in rows)

    async def picked(self, batch: str) -> list[Picked]:
        """Every picked job of ``batch``, in manifest order: what ``export --picks`` checks and
        lists (the job may be in any state; the export leaves out all but verified clips)."""
        rows = await self._fetch(
            "SELECT j.key, j.entry_id, j.model, j.request, j.state, j.price_micro, j.output_path, "
            "j.bytes, j.sha256 FROM jobs AS j JOIN marks AS m ON m.job_key = j.key "
            "WHERE m.batch = ? AND m.mark = 'pick' ORDER BY j.seq, j.entry_id",
            (batch,),
        )
        return [Picked(*row) for row in rows]


async def _new_take(
    db: aiosqlite.Connection, batch: str, key: str, entry_id: str, paths: set[str]
) -> str:
    """Insert the next take of ``entry_id``'s entry, beside its first file, on a path not in
    ``paths`` (the batch's, casefolded; the take's is added); its id."""
    root = entry_id.split(TAKE_MARK, 1)[0]
    rows = list(
        await db.execute_fetchall(
            "SELECT entry_id, output_path FROM jobs WHERE batch = ? "
            "AND (entry_id = ? OR entry_id LIKE ? ESCAPE '\\')",
            (batch, root, like_escaped(root + TAKE_MARK) + "%"),
        )
    )
    first_path = next((str(p) for e, p in rows if e == root and p), None)
    taken = {str(e) for e, _ in rows}
    n = FIRST_REROLL
    while f"{root}{TAKE_MARK}{n}" in taken or _take_path(first_path, n).casefold() in paths:
        n += 1
    take_id, path, now = f"{root}{TAKE_MARK}{n}", _take_path(first_path, n), now_utc()
    paths.add(path.casefold())
    take_key = hashlib.sha256(f"reroll\0{key}\0{n}".encode()).hexdigest()[:32]
    detail = f"takes {entry_id} again"
    await db.execute(_INSERT_TAKE, (take_key, take_id, path, detail, now, now, key))
    await db.execute(_COPY_INPUTS, (take_key, key))  # a take of a chained clip takes its inputs
    return take_id


def _not_a_clip(state: str) -> str:
    why = f"it is {state}, not a clip on disk"
    return why + (
        " (`orchestrator retry` sends it again)" if state in ("failed", "cancelled") else ""
    )


_PATHS = "SELECT output_path FROM jobs WHERE batch = ? AND output_path IS NOT NULL"
#: The take of a clip made from other jobs' results (its request holds their ``{from:}``
#: markers) takes the same results; they are there already: the clip was made from them.
_COPY_INPUTS = (
    "INSERT OR IGNORE INTO inputs (job_key, from_key) SELECT ?, from_key FROM inputs "
    "WHERE job_key = ?"
)


def _take_path(first: str | None, n: int) -> str:
    """``clips/hero.mp4`` -> ``clips/hero~r2.mp4``: the new take beside the first; a still's
    (``frames/keeper.png``) -> ``frames/keeper~r2.{ext}``, named once its format is known."""
    stem = first or "take.mp4"
    still = still_stem(stem)
    if still is not None:
        return f"{still}{TAKE_MARK}{n}{IMAGE_SUFFIX}"
    stem = stem[: -len(".mp4")] if stem.casefold().endswith(".mp4") else stem
    return f"{stem}{TAKE_MARK}{n}.mp4"


@dataclass(frozen=True)
class Picked:
    """A picked job: what the deliverable set lists, and what proves its file (``picked``)."""

    key: str
    entry_id: str
    model: str
    request: str  #: the canonical JSON of the body that was sent
    state: str
    price_micro: int
    output_path: str | None  #: relative to the batch's out_dir
    bytes: int | None
    sha256: str | None
