"""`orchestrator jobs`: the current manifests' jobs, one per line, read page by page.

A ledger of 100,000 jobs is never in memory at once: each batch is read ``PAGE`` jobs at a
time, in manifest order (``seq``), and every line is written before the next page is read. The
table's widths come from the first page and the states asked for, and every line is cut to
``commands.WIDTH`` columns (an ellipsis where a field was cut); ``--format json`` is a JSON list
written one object per line, with every field in full::

    [{"batch": "demo", "id": "eagle", "key": "3f1c...", "model": "kling/kling-2.5",
      "state": "failed", "price_usd": 0.3667, "price_micro": 366700,
      "reason": "moderation: The request was flagged by content moderation.", "file": null,
      "remote_id": "...", "remote_status": "failed", "attempts": 1}]

``file`` is the output file of a done job (the batch's output folder joined with its path);
a blocked job's ``reason`` says which input stops it (``blocked: input frame failed: ...``).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orchestrator.cli.commands import WIDTH, clip, read_ledger
from orchestrator.jobs import JobRecord, JobState
from orchestrator.ledger import Ledger

S = JobState

#: Jobs read per query (of one state): at most this many per state are held at once.
PAGE = 1_000
#: The states `--state` accepts: orphans are no manifest's jobs (`status` counts them).
LISTED_STATES = tuple(s for s in JobState if s is not JobState.ORPHAN)

Write = Callable[[str], None]
#: A job and its output file (done jobs only).
Row = tuple[JobRecord, str | None]


async def jobs(
    ledger_path: Path,
    batch: str | None,
    states: Sequence[JobState] | None,
    fmt: str,
    write: Write,
) -> None:
    """`orchestrator jobs`: write each line of the listing with ``write`` as it is read."""
    async with read_ledger(ledger_path, batch) as ledger:
        names = [batch] if batch else await ledger.batch_names()
        pages = _pages(ledger, names, states)
        if fmt == "json":
            await _write_json(pages, write)
        else:
            await _write_table(pages, _Layout.of(states, many_batches=len(names) > 1), write)


async def _pages(
    ledger: Ledger, names: Sequence[str], states: Sequence[JobState] | None
) -> AsyncIterator[list[Row]]:
    """Pages of (job, its file), batch after batch, each batch in manifest order."""
    for name in names:
        found = await ledger.batch(name)
        out_dir = Path(found.out_dir) if found else Path()
        wanted = states or LISTED_STATES
        # A waiting job an input that failed stops says so, as a failed job says why.
        stuck = {b.key: b.reason for b in await ledger.blocked(name)} if S.WAITING in wanted else {}
        page: list[Row] = []
        async for job in _in_order(ledger, name, wanted):
            if job.key in stuck:
                job = replace(job, last_error=f"blocked: {stuck[job.key]}")
            page.append((job, _file(job, out_dir)))
            if len(page) == PAGE:
                yield page
                page = []
        if page:
            yield page


async def _in_order(
    ledger: Ledger, batch: str, states: Sequence[JobState]
) -> AsyncIterator[JobRecord]:
    """The batch's current jobs in ``states``, in manifest order: each state's jobs are one
    range of the ledger's (batch, state, seq) index, read a page at a time, and merged here
    (one query for every state would sort the whole batch again for each page)."""
    streams = [_of_state(ledger, batch, state) for state in dict.fromkeys(states)]
    heads: list[tuple[int, int, JobRecord]] = []
    for index, stream in enumerate(streams):
        if (job := await anext(stream, None)) is not None:
            heapq.heappush(heads, (job.seq, index, job))
    while heads:
        _, index, job = heapq.heappop(heads)
        yield job
        if (after := await anext(streams[index], None)) is not None:
            heapq.heappush(heads, (after.seq, index, after))


async def _of_state(ledger: Ledger, batch: str, state: JobState) -> AsyncIterator[JobRecord]:
    """The batch's current jobs in ``state``, in manifest order, ``PAGE`` per query."""
    after: int | None = None
    while True:
        page = await ledger.jobs(
            batch=batch, states=[state], current_only=True, after_seq=after, limit=PAGE
        )
        for job in page:
            yield job
        if len(page) < PAGE:
            return
        after = page[-1].seq


def _file(job: JobRecord, out_dir: Path) -> str | None:
    if job.state is not JobState.DONE or not job.output_path:
        return None
    return str(out_dir / job.output_path)


def as_json(job: JobRecord, file: str | None) -> dict[str, Any]:
    """One job of `orchestrator jobs --format json` (shape in the module docstring)."""
    return {
        "batch": job.batch,
        "id": job.entry_id,
        "key": job.key,
        "model": job.model,
        "state": job.state.value,
        "price_usd": job.price_micro / 1_000_000,
        "price_micro": job.price_micro,
        "reason": job.last_error,
        "file": file,
        "remote_id": job.remote_id,
        "remote_status": job.remote_status,
        "attempts": job.attempts,
    }


async def _write_json(pages: AsyncIterator[list[Row]], write: Write) -> None:
    """A JSON list, one object a line; each line is written once the next is known (its comma)."""
    held: str | None = None
    async for page in pages:
        for job, file in page:
            write("[" if held is None else held + ",")
            held = "  " + json.dumps(as_json(job, file), ensure_ascii=False)
    write("[]" if held is None else held + "\n]")


@dataclass(frozen=True)
class _Column:
    header: str
    width: int
    value: Callable[[Row], str]
    right: bool = False  #: aligned right (prices)
    files: bool = False  #: a done job's cell is its file: cut at the start, to keep its name

    def cell(self, row: Row) -> str:
        keep_end = self.files and row[1] is not None
        text = clip(self.value(row), self.width, keep_end=keep_end)
        return text.rjust(self.width) if self.right else text.ljust(self.width)


@dataclass(frozen=True)
class _Layout:
    """The table's columns. The last is the reason a job is not done, or a done job's file
    (a done job has no reason, and only a done job has a file): one column, as wide as the
    line has room for, headed by what the states asked for can show."""

    batch: bool  #: a batch column, when the ledger has several
    last: str
    state_width: int

    @classmethod
    def of(cls, states: Sequence[JobState] | None, *, many_batches: bool) -> _Layout:
        chosen = set(states or LISTED_STATES)
        width = max(len("state"), *(len(s.value) for s in chosen))
        done = JobState.DONE in chosen
        last = ("file" if chosen == {JobState.DONE} else "reason or file") if done else "reason"
        return cls(many_batches, last, width)

    def columns(self, first: Sequence[Row]) -> list[_Column]:
        """The columns, sized to the first page within ``WIDTH`` (later pages are cut to fit)."""

        def widest(value: Callable[[Row], str], header: str, cap: int) -> int:
            return min(cap, max(len(header), *(len(value(row)) for row in first)))

        fixed = [
            *([_Column("batch", widest(_batch, "batch", 16), _batch)] if self.batch else []),
            _Column("id", widest(_id, "id", 24), _id),
            _Column("model", widest(_model, "model", 24), _model),
            _Column("state", self.state_width, _state),
            _Column("price", widest(_price, "price", 10), _price, right=True),
        ]
        rest = WIDTH - sum(c.width + 2 for c in fixed)
        return [*fixed, _Column(self.last, max(rest, len(self.last)), _detail, files=True)]


def _batch(row: Row) -> str:
    return row[0].batch


def _id(row: Row) -> str:
    return row[0].entry_id


def _model(row: Row) -> str:
    return row[0].model


def _state(row: Row) -> str:
    return row[0].state.value


def _price(row: Row) -> str:
    return f"${row[0].price_micro / 1_000_000:,.2f}"


def _detail(row: Row) -> str:
    """A done job's file, from the working folder when it is under it; else why it is not done
    (on one line, whatever Krea wrote)."""
    if row[1] is None:
        return " ".join((row[0].last_error or "").split())
    path = Path(row[1])
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


async def _write_table(pages: AsyncIterator[list[Row]], layout: _Layout, write: Write) -> None:
    """Header, rule, then a line per job, each within ``WIDTH`` columns."""
    first = await anext(pages, None)
    if first is None:
        write("no jobs match")
        return
    columns = layout.columns(first)
    heads = (c.header.rjust(c.width) if c.right else c.header.ljust(c.width) for c in columns)
    write("  ".join(heads).rstrip())
    write("  ".join("-" * c.width for c in columns))
    for row in first:
        write(_line(columns, row))
    async for page in pages:
        for row in page:
            write(_line(columns, row))


def _line(columns: Sequence[_Column], row: Row) -> str:
    return "  ".join(c.cell(row) for c in columns).rstrip()[:WIDTH]
