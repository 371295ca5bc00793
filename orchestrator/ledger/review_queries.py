"""The review loop in the ledger: marks on clips, and the new takes a reroll asks for (issue 15).

A mixin of :class:`~orchestrator.ledger.store.Ledger`. Why it is built this way:

* **Marks are the one write beside a run.** ``orchestrator view`` runs while a ``run`` holds the
  ledger's lock, and a reviewer's pick must neither wait for the run nor be lost. So a mark is
  one short statement on the ``marks`` table, which no run touches, under a long busy timeout
  (a run's commits are milliseconds; a 100,000-job sync is seconds); it never writes ``jobs``.
* **A reroll is a new job, never a reset one** (``takes``): the rejected clip keeps its row,
  cost, history and file, and a shot made from a rejected frame gets a new take made from the
  new frame. A take stays planned as long as the job it takes again is (``plan_queries``), so a
  manifest edit drops both.
* **Asked once.** A rejected clip that already has a new take is not taken again: running
  ``reroll`` twice (or after a crash) sends each take once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import aiosqlite

from orchestrator.clock import now_utc
from orchestrator.errors import ConfigError
from orchestrator.ledger.takes import add_take, fetcher, plan_takes, wait_for_takes

Mark = Literal["pick", "reject"]
MARKS: tuple[Mark, ...] = ("pick", "reject")
#: How long a mark waits for a run's transaction before it is refused (ms): longer than any
#: transaction a run holds, so a reviewer's mark is never refused in practice.
MARK_BUSY_MS = 60_000


@dataclass(frozen=True)
class Reroll:
    """What ``reroll`` did with one rejected job: a new take, or why not."""

    rejected: str  #: the id of the job taken again: rejected, or made from one that is
    take: str | None  #: the new take's id; None when none was made
    reason: str = ""  #: why no take can be made ("" when one was, or can be)
    price_micro: int = 0  #: what the new take is estimated to cost
    #: for a job made from jobs taken again: their ids (their takes' once made)
    made_from: tuple[str, ...] = ()
    waits: bool = False  #: not sent yet: no take; it will be made from ``made_from``


class ReviewQueries:
    """Marks and rerolls; the Ledger provides the connection, its lock and commits."""

    if TYPE_CHECKING:

        def _write(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

        async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

        async def _chains(self) -> bool: ...

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
        """A new pending take of every rejected clip of ``batch`` not yet taken again, and a
        waiting one of every job made from one of them (``takes``).

        Only a clip on disk (``done``) is taken again: one in flight is not a verdict yet, and a
        failed one is ``retry``'s. One transaction: all the takes, or none.
        """
        done: list[Reroll] = []
        async with self._write() as db:
            plan = await plan_takes(fetcher(db), batch, chains=True)
            paths: set[str] = set()  # the batch's paths, casefolded: read once, takes added
            if any(not planned.reason for planned in plan):
                paths = {str(p).casefold() for (p,) in await db.execute_fetchall(_PATHS, (batch,))}
            new: dict[str, tuple[str, str]] = {}  # key taken again -> its take's key and id
            for job, reason, made_from, waits in plan:
                if reason:
                    done.append(Reroll(job.entry_id, None, reason, job.price_micro))
                    continue
                froms = tuple(new[key][1] for key in made_from)
                if waits:
                    await wait_for_takes(db, job, made_from, new)
                    done.append(Reroll(job.entry_id, None, "", 0, froms, waits=True))
                    continue
                take = await add_take(db, batch, job, paths, new)
                done.append(Reroll(job.entry_id, take, "", job.price_micro, froms))
        return done

    async def rerolls_due(self, batch: str) -> list[Reroll]:
        """What :meth:`add_rerolls` would do now, without writing (``reroll --dry-run``)."""
        plan = await plan_takes(self._fetch, batch, chains=await self._chains())
        ids = {planned.job.key: planned.job.entry_id for planned in plan}
        return [
            Reroll(job.entry_id, None, reason, 0 if waits else job.price_micro,
                   tuple(ids[k] for k in made_from), waits)
            for job, reason, made_from, waits in plan
        ]  # fmt: skip

    async def reroll_keys(self, batch: str) -> frozenset[str]:
        """Keys of the takes rerolls made in ``batch`` that are still to be sent, or may be: a
        take a killed run left ``submitting`` or ``ambiguous`` goes back to ``pending`` when
        reconciliation finds its POST made nothing, and this run must then send it."""
        rows = await self._fetch(
            "SELECT key FROM jobs WHERE batch = ? AND reroll_of IS NOT NULL AND planned = 1 "
            "AND state IN ('pending', 'waiting', 'submitting', 'ambiguous')",
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


_PATHS = "SELECT output_path FROM jobs WHERE batch = ? AND output_path IS NOT NULL"


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
