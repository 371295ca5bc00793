"""What ``orchestrator view`` reads: a page of a batch's clips, one job in full, a clip's file.

A mixin of :class:`~orchestrator.ledger.store.Ledger`. Why it is built this way:

* **A page, never the batch.** A gallery of 100,000 jobs is read ``limit`` rows at a time with
  a keyset (the last row's sort values, then ``seq`` and ``key``), so the tenth page costs what
  the first does and a job added mid-scroll is never shown twice. ``OFFSET`` would re-read
  every row before the page.
* **Only what the page shows.** ``result_url`` (a signed media link), ``floor`` and the assets
  table are never selected; the prompt is pulled out of the request by SQLite.
* **Files by key.** :meth:`view_file` gives the batch's folder and the path the ledger records
  for a job; the web layer never builds a path from a URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.ledger.records import like_escaped

if TYPE_CHECKING:
    import sqlite3

#: Sort name -> (column, descending) pairs; ``seq`` and ``key`` end every order, so it is total.
SORTS: dict[str, tuple[tuple[str, bool], ...]] = {
    "manifest": (("j.seq", False), ("j.key", False)),
    "recent": (("j.updated_at", True), ("j.seq", False), ("j.key", False)),
    "price": (("j.price_micro", True), ("j.seq", False), ("j.key", False)),
    "state": (("j.state", False), ("j.seq", False), ("j.key", False)),
}
#: The columns of a gallery card, by name (``prompt`` is read out of the request).
CARD_COLUMNS = (
    "key", "entry_id", "model", "state", "price_micro", "seconds", "output_path", "remote_status",
    "intent_at", "updated_at", "last_error", "detail", "cause", "seq", "reroll_of", "sha256",
)  # fmt: skip
_CARD = ", ".join(f"j.{name}" for name in CARD_COLUMNS)
_CARD += ", json_extract(j.request, '$.prompt') AS prompt, m.mark"
_JOB = (
    "j.key, j.batch, j.entry_id, j.model, j.request, j.state, j.planned, j.seq, j.price_micro, "
    "j.seconds, j.output_path, j.remote_id, j.remote_status, j.remote_created_at, j.attempts, "
    "j.bytes, j.sha256, j.last_error, j.intent_at, j.answered_at, j.completed_at, j.done_at, "
    "j.cause, j.detail, j.reroll_of, j.created_at, j.updated_at, m.mark, b.out_dir"
)


@dataclass(frozen=True)
class PageQuery:
    """Which of a batch's current jobs a gallery page shows, and from where."""

    batch: str
    states: tuple[str, ...] = ()  #: empty: every state
    models: tuple[str, ...] = ()  #: empty: every model
    marks: tuple[str, ...] = ()  #: 'pick', 'reject', 'none' (unmarked); empty: any
    search: str = ""  #: text the prompt or the id contains (case-insensitive for ASCII)
    sort: str = "manifest"  #: a key of :data:`SORTS`
    after: tuple[Any, ...] | None = None  #: the sort values of the last row already shown
    limit: int = 60
    keys: tuple[str, ...] = ()  #: only these jobs (a page refreshing the cards it shows)


@dataclass(frozen=True)
class ClipFile:
    """Where the ledger says a job's file is: ``out_dir / output_path``."""

    key: str
    batch: str
    out_dir: str
    output_path: str
    sha256: str | None
    state: str


class ViewQueries:
    """Reads for the web view; the Ledger provides the connection and its lock."""

    if TYPE_CHECKING:

        async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

    async def view_batches(self) -> list[dict[str, Any]]:
        """Every batch: name, output folder, budget, created and cancelled times; oldest first."""
        rows = await self._fetch(
            "SELECT name, out_dir, budget_micro, created_at, cancelled_at FROM batches "
            "ORDER BY created_at, name"
        )
        names = ("name", "out_dir", "budget_micro", "created_at", "cancelled_at")
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def view_activity(self, batch: str, since: str) -> tuple[str | None, int]:
        """(time of the batch's last event, clips verified at or after ``since``)."""
        last = await self._fetch(
            "SELECT at FROM events WHERE batch = ? ORDER BY seq DESC LIMIT 1", (batch,)
        )
        done = await self._fetch(
            "SELECT count(*) FROM jobs WHERE batch = ? AND state = 'done' AND done_at >= ?",
            (batch, since),
        )
        return (str(last[0][0]) if last else None), int(done[0][0])

    async def view_models(self, batch: str) -> list[str]:
        """The models the batch's current jobs use, by name."""
        rows = await self._fetch(
            "SELECT DISTINCT model FROM jobs WHERE batch = ? AND planned = 1 ORDER BY model",
            (batch,),
        )
        return [str(model) for (model,) in rows]

    async def view_page(self, query: PageQuery) -> list[dict[str, Any]]:
        """Up to ``query.limit`` cards of the batch's current jobs, after ``query.after``."""
        order = SORTS[query.sort]
        where, params = _filters(query)
        if query.after is not None:
            clause, values = _keyset(order, query.after)
            where += f" AND {clause}"
            params += values
        by = ", ".join(f"{column}{' DESC' if desc else ''}" for column, desc in order)
        sql = (
            f"SELECT {_CARD} FROM jobs AS j LEFT JOIN marks AS m ON m.job_key = j.key "
            f"WHERE {where} ORDER BY {by} LIMIT ?"
        )
        rows = await self._fetch(sql, [*params, int(query.limit)])
        names = (*CARD_COLUMNS, "prompt", "mark")
        return [dict(zip(names, row, strict=True)) for row in rows]

    async def view_job(self, key: str) -> dict[str, Any] | None:
        """One job with its mark and its batch's folder (no ``result_url``); None if unknown."""
        rows = await self._fetch(
            f"SELECT {_JOB} FROM jobs AS j JOIN batches AS b ON b.name = j.batch "
            "LEFT JOIN marks AS m ON m.job_key = j.key WHERE j.key = ?",
            (key,),
        )
        names = [name.split(".")[-1] for name in _JOB.split(", ")]
        return dict(zip(names, rows[0], strict=True)) if rows else None

    async def view_takes(self, batch: str, prefix: str) -> list[dict[str, Any]]:
        """(key, entry_id, state, mark) of the jobs of ``batch`` whose id starts with ``prefix``
        (the caller keeps the takes of one entry), in manifest order."""
        rows = await self._fetch(
            "SELECT j.key, j.entry_id, j.state, m.mark FROM jobs AS j "
            "LEFT JOIN marks AS m ON m.job_key = j.key "
            "WHERE j.batch = ? AND j.entry_id LIKE ? ESCAPE '\\' ORDER BY j.seq, j.key LIMIT 200",
            (batch, like_escaped(prefix) + "%"),
        )
        return [dict(zip(("key", "entry_id", "state", "mark"), r, strict=True)) for r in rows]

    async def view_file(self, key: str) -> ClipFile | None:
        """Where job ``key``'s file is recorded to be; None for no job or no path."""
        rows = await self._fetch(
            "SELECT j.key, j.batch, b.out_dir, j.output_path, j.sha256, j.state FROM jobs AS j "
            "JOIN batches AS b ON b.name = j.batch WHERE j.key = ? AND j.output_path IS NOT NULL",
            (key,),
        )
        return ClipFile(*(rows[0])) if rows else None

    async def view_mark_counts(self, batch: str) -> dict[str, int]:
        """How many of the batch's jobs are picked and rejected."""
        rows = await self._fetch(
            "SELECT mark, count(*) FROM marks WHERE batch = ? GROUP BY mark", (batch,)
        )
        return {"pick": 0, "reject": 0} | {str(mark): int(n) for mark, n in rows}


def _filters(query: PageQuery) -> tuple[str, list[Any]]:
    """The WHERE of a page (without its keyset) and its parameters."""
    where, params = ["j.batch = ?", "j.planned = 1"], [query.batch]
    lists = (("j.state", query.states), ("j.model", query.models), ("j.key", query.keys))
    for column, values in lists:
        if values:
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params += values
    if query.marks:
        named = [mark for mark in query.marks if mark != "none"]
        either = [f"m.mark IN ({', '.join('?' * len(named))})"] if named else []
        either += ["m.mark IS NULL"] if "none" in query.marks else []
        where.append(f"({' OR '.join(either)})")
        params += named
    if query.search:
        like = f"%{like_escaped(query.search)}%"
        where.append(
            "(json_extract(j.request, '$.prompt') LIKE ? ESCAPE '\\' "
            "OR j.entry_id LIKE ? ESCAPE '\\')"
        )
        params += [like, like]
    return " AND ".join(where), params


def _keyset(order: Sequence[tuple[str, bool]], after: Sequence[Any]) -> tuple[str, list[Any]]:
    """Rows strictly after ``after`` in ``order``: (a > x) OR (a = x AND b > y) OR ..."""
    ors, params = [], []
    for depth, (column, desc) in enumerate(order):
        equal = [f"{c} = ?" for c, _ in order[:depth]]
        ors.append("(" + " AND ".join([*equal, f"{column} {'<' if desc else '>'} ?"]) + ")")
        params += [*after[:depth], after[depth]]
    return "(" + " OR ".join(ors) + ")", params
