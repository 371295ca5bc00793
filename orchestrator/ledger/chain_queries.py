"""Chained jobs in the ledger: which jobs take which results, when a waiting job may be sent,
and why one never will be as things stand (issue 16).

A mixin of :class:`~orchestrator.ledger.store.Ledger`. Why it is built this way:

* **The edges are rows** (``inputs``, migration 11), written by ``sync_plan`` with the jobs in
  the same transaction, so a job never exists without the list of the results it waits for.
* **Waiting ends in the statement that ends it.** A trigger makes a ``waiting`` job ``pending``
  in the very statement that gives the last of its inputs a result, whichever path wrote it (the
  poller's group commit, ``cancel``, a recovery): none can forget it, no crash can come between.
  ``sync_plan`` runs :data:`PROMOTE_READY` once at its end for inputs that had a result before
  their taker was planned (the frame an earlier run made, the shot new); :meth:`promote_ready`
  is the same statement on its own.
* **Blocked is derived, never stored.** A waiting job is blocked while one of its inputs,
  directly or through other waiting jobs, failed, was cancelled or rejected, or will never be
  sent (no longer planned, or not in the ledger). Nothing is written when an input fails, so a
  ``retry`` of that input (failed -> pending) unblocks its takers without touching them.

A reader opens the file read-only and never migrates it: on a ledger older than migration 11 no
job takes another's result, and these reads say so without asking for the table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrator.clock import now_utc
from orchestrator.jobs import HAS_RESULT, JobState

#: The first migration with the ``inputs`` table.
CHAINS_VERSION = 11
#: Keys per ``IN (...)`` list (SQLite allows 32,766 parameters; small lists plan well).
CHUNK = 500
#: What a failed input's error may add to a blocked job's reason, at most (characters).
REASON_ERROR_CHARS = 120

_HAS_RESULT = ", ".join(f"'{state.value}'" for state in sorted(HAS_RESULT))
#: One edge: ``job_key`` takes the result of ``from_key``.
INSERT_EDGE = "INSERT OR IGNORE INTO inputs (job_key, from_key) VALUES (?, ?)"
#: Every waiting job of batch ``?2`` whose inputs all have a result becomes pending at ``?1``;
#: the rev bump has the ``jobs_transitioned`` trigger write each one's event.
PROMOTE_READY = (
    "UPDATE jobs SET state = 'pending', cause = 'inputs ready', detail = NULL, updated_at = ?1, "
    "rev = rev + 1 WHERE batch = ?2 AND state = 'waiting' AND NOT EXISTS (SELECT 1 FROM inputs "
    "AS i WHERE i.job_key = jobs.key AND NOT EXISTS (SELECT 1 FROM jobs AS u "
    f"WHERE u.key = i.from_key AND u.state IN ({_HAS_RESULT})))"
)
#: The newest take of job ``?`` (or itself) with a result: the end of its reroll chain first;
#: a take the plan no longer keeps is none.
_NEWEST_RESULT = (
    "WITH RECURSIVE chain(key, depth) AS (SELECT ?, 0 UNION ALL SELECT j.key, c.depth + 1 "
    "FROM jobs AS j JOIN chain AS c ON j.reroll_of = c.key WHERE c.depth < 1000) "
    "SELECT c.key FROM chain AS c JOIN jobs AS u ON u.key = c.key "
    f"WHERE u.state IN ({_HAS_RESULT}) AND (c.depth = 0 OR u.planned = 1) "
    "ORDER BY c.depth DESC LIMIT 1"
)
#: Per blocked job of batch ``?1``: its key and id, the input that blocks it (``root``: its
#: key, id, state, whether planned, error) and the input of its own through which (``via``).
#: Direct causes come first; a cycle (no plan has one) ends, since UNION drops repeated rows.
_BLOCKED = """
WITH RECURSIVE
waiting(key) AS (SELECT key FROM jobs WHERE batch = ?1 AND state = 'waiting' AND planned = 1),
stuck(key, root, via) AS (
    SELECT i.job_key, i.from_key, i.from_key FROM inputs AS i
    JOIN waiting AS w ON w.key = i.job_key LEFT JOIN jobs AS u ON u.key = i.from_key
    WHERE u.key IS NULL OR u.state IN ('failed', 'cancelled', 'rejected')
       OR (u.planned = 0 AND u.state IN ('waiting', 'pending'))
    UNION
    SELECT i.job_key, s.root, i.from_key FROM stuck AS s
    JOIN inputs AS i ON i.from_key = s.key JOIN waiting AS w ON w.key = i.job_key
),
first(key, root, via, transitive) AS (
    SELECT key, root, via, min(via != root) FROM stuck GROUP BY key
)
SELECT j.key, j.entry_id, f.root, r.entry_id, r.state, r.planned, r.last_error,
       CASE WHEN f.transitive THEN coalesce(v.entry_id, f.via) END
FROM first AS f JOIN jobs AS j ON j.key = f.key
LEFT JOIN jobs AS r ON r.key = f.root LEFT JOIN jobs AS v ON v.key = f.via
ORDER BY j.seq, j.key
"""


class Blocked(NamedTuple):
    """A waiting job that cannot be sent as things stand, and why."""

    key: str
    entry_id: str
    reason: str  #: e.g. "input keeper-frame failed: <its error>"


class ChainQueries:
    """Edges, promotion and the blocked; the Ledger provides the connection and its lock."""

    if TYPE_CHECKING:

        async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

        async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

        async def pragma(self, name: str) -> Any: ...

    async def promote_ready(self, batch: str) -> int:
        """Make pending every waiting job of ``batch`` whose inputs all have a result; how many.

        The trigger does this as inputs complete, and ``sync_plan`` at the end of each sync: this
        is for a ledger changed by other means (an edit by hand) on a path that skips the sync.
        """
        return await self._execute(PROMOTE_READY, (now_utc(), batch))

    async def inputs_of(self, key: str) -> list[str]:
        """Keys of the jobs whose results job ``key`` takes, in manifest order."""
        if not await self._chains():
            return []
        rows = await self._fetch(
            "SELECT i.from_key FROM inputs AS i LEFT JOIN jobs AS u ON u.key = i.from_key "
            "WHERE i.job_key = ? ORDER BY u.seq, i.from_key",
            (key,),
        )
        return [str(from_key) for (from_key,) in rows]

    async def with_inputs(self, keys: Iterable[str]) -> set[str]:
        """``keys`` and the keys of every job whose result they take, directly or not."""
        found = set(keys)
        if not await self._chains():
            return found
        frontier = list(found)
        while frontier:
            chunk, frontier = frontier[:CHUNK], frontier[CHUNK:]
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT DISTINCT from_key FROM inputs WHERE job_key IN ({marks})"
            new = {str(row[0]) for row in await self._fetch(sql, chunk)} - found
            found |= new
            frontier += sorted(new)
        return found

    async def newest_result(self, key: str) -> str:
        """The key of the newest take of job ``key`` (``jobs.reroll_of``, followed to its end)
        that has a result, or ``key``: what a job sent now takes as that input (``takes``)."""
        rows = await self._fetch(_NEWEST_RESULT, (key,))
        return str(rows[0][0]) if rows else key

    async def promoted_at(self, key: str) -> str | None:
        """When job ``key`` last went from waiting to pending (from its events), or None."""
        rows = await self._fetch(
            "SELECT max(at) FROM events WHERE job_key = ? AND from_state = 'waiting' "
            "AND to_state = 'pending'",
            (key,),
        )
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    async def blocked(self, batch: str) -> list[Blocked]:
        """The waiting jobs of ``batch``'s current manifest that cannot be sent as things stand,
        in manifest order: an input (directly, or through other waiting jobs) failed, was
        cancelled or rejected, or will never be sent."""
        if not await self._chains():
            return []
        rows = await self._fetch(_BLOCKED, (batch,))
        return [Blocked(str(row[0]), str(row[1]), _reason(*row[2:])) for row in rows]

    async def _chains(self) -> bool:
        """Whether the file has the ``inputs`` table (a reader never migrates a ledger)."""
        return int(await self.pragma("user_version") or 0) >= CHAINS_VERSION


def _reason(
    root: str,
    entry_id: str | None,
    state: str | None,
    planned: int | None,
    error: str | None,
    via: str | None,
) -> str:
    """Why a job is blocked, in a line: the input at fault, and (``via``, when it is not one of
    the job's own) the input of its own that waits on it."""
    if entry_id is None:
        text = f"input {root} is not in the ledger"
    elif state in (JobState.WAITING, JobState.PENDING) and not planned:
        text = f"input {entry_id} is no longer in the manifest"
    else:
        verb = "failed" if state == JobState.FAILED else f"was {state}"
        text = f"input {entry_id} {verb}" + (f": {_short(error)}" if error else "")
    if via is not None:
        text += f" (through {via})"
    return text


def _short(error: str) -> str:
    """The first line of an error, at most :data:`REASON_ERROR_CHARS` characters."""
    line = error.strip().splitlines()[0] if error.strip() else ""
    return line if len(line) <= REASON_ERROR_CHARS else line[: REASON_ERROR_CHARS - 1] + "…"
