"""New takes: which jobs a reroll takes again, and the row each new take is (issues 15, 16).

Why it is built this way:

* **A take is a new job, never a reset one.** The job taken again keeps its row, cost, history
  and file; the take is a row of its own (``reroll_of`` names that job) with the same request,
  an id ``<entry>~r<n>`` no manifest id can have (``~`` is not allowed there), and a file beside
  the first, ``<path>~r<n>.mp4`` (a still's extension once its format is known), so nothing is
  overwritten.
* **Down the chain.** A job made from a rejected one's result (a shot from its frame) was made
  from what the reviewer turned down. So the new take of the frame brings a new take of each
  job made from it (the newest take of each, the one with no take of its own), and of each job
  made from those, in manifest order: its marker and its edge name the new frame, it waits for
  it, and it costs what the shot did. A shot that is rejected too gets that one take, no other.
* **Not sent yet: made from the new take.** A job that takes the frame and was not sent yet
  (frames first, reviewed, then the shots) gets no take: it gains an edge to the new frame and
  waits for it, and is then sent with the newest take of its input that has a result
  (``ChainQueries.newest_result``); its request and key stay the manifest's.
* **One plan for both.** ``reroll --dry-run`` lists what :func:`plan_takes` finds, and the
  reroll makes exactly that list, in one transaction.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, NamedTuple

import aiosqlite

from orchestrator.chains import marker, markers, replaced
from orchestrator.clock import now_utc
from orchestrator.jobs import canonical_json
from orchestrator.ledger.chain_queries import INSERT_EDGE
from orchestrator.ledger.records import like_escaped
from orchestrator.still_names import IMAGE_SUFFIX, still_stem

#: What separates an entry's id (and file name) from the number of a take a reroll made.
TAKE_MARK = "~r"
#: The first reroll of a clip is its second take.
FIRST_REROLL = 2

_UNTAKEN = "NOT EXISTS (SELECT 1 FROM jobs AS t WHERE t.reroll_of = j.key)"
#: Every rejected job of batch ``?`` the manifest still plans that has no take yet.
_REJECTED_UNTAKEN = (
    "SELECT j.key, j.entry_id, j.state, j.price_micro, j.seq "
    "FROM jobs AS j JOIN marks AS m ON m.job_key = j.key "
    f"WHERE m.batch = ? AND m.mark = 'reject' AND j.planned = 1 AND {_UNTAKEN} ORDER BY j.seq"
)
#: The jobs sent with job ``?``'s result as an input (made from it), planned, with no take yet.
_MADE_FROM = (
    "SELECT j.key, j.entry_id, j.state, j.price_micro, j.seq FROM inputs AS i "
    "JOIN jobs AS j ON j.key = i.job_key WHERE i.from_key = ? AND j.planned = 1 "
    f"AND j.state NOT IN ('pending', 'waiting') AND {_UNTAKEN}"
)
#: The jobs that take job ``?``'s result and were not sent yet, planned.
_UNSENT_TAKERS = (
    "SELECT j.key, j.entry_id, j.state, j.price_micro, j.seq FROM inputs AS i "
    "JOIN jobs AS j ON j.key = i.job_key WHERE i.from_key = ? AND j.planned = 1 "
    "AND j.state IN ('pending', 'waiting')"
)
#: An unsent taker of an input taken again waits for the new take (the rev bump: its event).
_WAIT_AGAIN = (
    "UPDATE jobs SET state = 'waiting', cause = ?, detail = ?, updated_at = ?, rev = rev + 1 "
    "WHERE key = ? AND state = 'pending'"
)
_INSERT_TAKE = (
    "INSERT INTO jobs (key, batch, entry_id, model, request, state, seq, price_micro, seconds, "
    "output_path, cause, detail, reroll_of, created_at, updated_at) "
    "SELECT ?, batch, ?, model, ?, ?, seq, price_micro, seconds, ?, ?, ?, key, ?, ? "
    "FROM jobs WHERE key = ?"
)
_REJECTED_CAUSE = "reroll: a new take of a rejected clip"
_FOLLOW_CAUSE = "reroll: a new take of what it was made from"
_WAIT_CAUSE = "reroll: waits for the new take of an input"


class Candidate(NamedTuple):
    """A job a reroll may take again."""

    key: str
    entry_id: str
    state: str
    price_micro: int
    seq: int


class Planned(NamedTuple):
    """One line of a reroll's plan."""

    job: Candidate
    reason: str  #: why it gets no take; "" when it does
    made_from: tuple[str, ...]  #: keys of its inputs taken again by the same reroll
    waits: bool = False  #: not sent yet: no take, it waits for the new takes of its inputs


#: ``fetch(sql, params)``: rows, read on the connection that will write (or the reader's).
Fetch = Callable[[str, Sequence[Any]], Awaitable[Iterable[sqlite3.Row]]]


def fetcher(db: aiosqlite.Connection) -> Fetch:
    """A :data:`Fetch` on ``db`` (inside the writing transaction)."""

    async def fetch(sql: str, params: Sequence[Any]) -> Iterable[sqlite3.Row]:
        return await db.execute_fetchall(sql, params)

    return fetch


def _candidate(row: sqlite3.Row) -> Candidate:
    return Candidate(str(row[0]), str(row[1]), str(row[2]), int(row[3]), int(row[4]))


async def plan_takes(fetch: Fetch, batch: str, *, chains: bool) -> list[Planned]:
    """Which jobs of ``batch`` get a new take, in manifest order (a frame before the shots made
    from it): each rejected job with no take yet (or why not: only a clip on disk is), each
    job made from one that gets a take, and (``waits``) each taker of one not sent yet.
    ``chains``: the ledger has the edges."""
    jobs = {job.key: job for job in map(_candidate, await fetch(_REJECTED_UNTAKEN, (batch,)))}
    queue = [(job.seq, job.entry_id, job.key) for job in jobs.values()]
    heapq.heapify(queue)
    sources: dict[str, list[str]] = {}  # a taker of jobs taken again -> their keys
    unsent: set[str] = set()
    seen: set[str] = set()
    plan: list[Planned] = []
    while queue:
        key = heapq.heappop(queue)[2]
        if key in seen:
            continue
        seen.add(key)
        job, made_from = jobs[key], tuple(sources.get(key, ()))
        if key in unsent:
            plan.append(Planned(job, "", made_from, waits=True))
            continue
        if not made_from and job.state != "done":
            plan.append(Planned(job, _not_a_clip(job.state), ()))
            continue
        plan.append(Planned(job, "", made_from))
        for sql, is_sent in ((_MADE_FROM, True), (_UNSENT_TAKERS, False)) if chains else ():
            for row in await fetch(sql, (key,)):
                taker = jobs.setdefault(str(row[0]), _candidate(row))
                sources.setdefault(taker.key, []).append(key)
                if not is_sent:
                    unsent.add(taker.key)
                heapq.heappush(queue, (taker.seq, taker.entry_id, taker.key))
    return plan


def _not_a_clip(state: str) -> str:
    """Why a rejected job in ``state`` is not taken again."""
    why = f"it is {state}, not a clip on disk"
    return why + (
        " (`orchestrator retry` sends it again)" if state in ("failed", "cancelled") else ""
    )


async def add_take(
    db: aiosqlite.Connection,
    batch: str,
    job: Candidate,
    paths: set[str],
    new: dict[str, tuple[str, str]],
) -> str:
    """Insert the next take of ``job``'s entry, beside its first file, on a path not in
    ``paths`` (the batch's, casefolded; the take's is added); its id.

    It takes the inputs ``job`` took, each replaced by its new take when ``new`` has one (key
    -> the take's key and id; this take is added); then it waits for them.
    """
    root = job.entry_id.split(TAKE_MARK, 1)[0]
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
    take_key = hashlib.sha256(f"reroll\0{job.key}\0{n}".encode()).hexdigest()[:32]
    inputs = [str(k) for (k,) in await db.execute_fetchall(_INPUTS, (job.key,))]
    swaps = {key: new[key] for key in inputs if key in new}
    ((request,),) = await db.execute_fetchall(_REQUEST, (job.key,))
    detail = f"takes {job.entry_id} again"
    if swaps:
        froms = ", ".join(take for _, take in swaps.values())
        cause, state, detail = _FOLLOW_CAUSE, "waiting", f"{detail}, from {froms}"
        request = _renamed_inputs(str(request), {k: key for k, (key, _) in swaps.items()})
    else:
        cause, state = _REJECTED_CAUSE, "pending"  # its inputs have their results: it was sent
    await db.execute(
        _INSERT_TAKE, (take_key, take_id, request, state, path, cause, detail, now, now, job.key)
    )
    edges = [(take_key, swaps[key][0] if key in swaps else key) for key in inputs]
    await db.executemany(INSERT_EDGE, edges)
    new[job.key] = (take_key, take_id)
    return take_id


async def wait_for_takes(
    db: aiosqlite.Connection,
    job: Candidate,
    made_from: Sequence[str],
    new: dict[str, tuple[str, str]],
) -> None:
    """``job``, not sent yet, takes the new takes of ``made_from`` (keys in ``new``): an edge to
    each, and it waits for them (it is sent with the newest result of each input)."""
    takes = [new[key] for key in made_from]
    await db.executemany(INSERT_EDGE, [(job.key, take_key) for take_key, _ in takes])
    detail = "to be made from " + ", ".join(take_id for _, take_id in takes)
    await db.execute(_WAIT_AGAIN, (_WAIT_CAUSE, detail, now_utc(), job.key))


_REQUEST = "SELECT request FROM jobs WHERE key = ?"
_INPUTS = "SELECT from_key FROM inputs WHERE job_key = ?"


def _renamed_inputs(request: str, renames: dict[str, str]) -> str:
    """The stored request with each marker of a key in ``renames`` naming the new key."""
    value = json.loads(request)
    for trail, key in list(markers(value)):
        if key in renames:
            value = replaced(value, trail, marker(renames[key]))
    return canonical_json(value)


def _take_path(first: str | None, n: int) -> str:
    """``clips/hero.mp4`` -> ``clips/hero~r2.mp4``: the new take beside the first; a still's
    (``frames/keeper.png``) -> ``frames/keeper~r2.{ext}``, named once its format is known."""
    stem = first or "take.mp4"
    still = still_stem(stem)
    if still is not None:
        return f"{still}{TAKE_MARK}{n}{IMAGE_SUFFIX}"
    stem = stem[: -len(".mp4")] if stem.casefold().endswith(".mp4") else stem
    return f"{stem}{TAKE_MARK}{n}.mp4"
