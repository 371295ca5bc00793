"""`orchestrator export`: every job (or event) row of the ledger, as CSV or a JSON list, streamed.

Columns are ``Ledger.EXPORT_*_COLUMNS``: each request is included (the user's own data), never
media URLs or anything key-like. The rows are read a page at a time (``Ledger.export_*_pages``)
and each page is written before the next is read, so a ledger of 100,000 jobs and 700,000
events takes the memory of one page. The JSON is ``json.dumps(rows, indent=2)``, written a
page at a time: the same text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from orchestrator.errors import InputError
from orchestrator.ledger import Ledger

Write = Callable[[str], object]
#: ``json.dumps(rows, indent=2, ensure_ascii=False)``'s encoder: a page of rows encodes as
#: ``[\n  {...},\n  {...}\n]``, and its items are the whole list's, one level in.
_ENCODER = json.JSONEncoder(indent=2, ensure_ascii=False)


async def export(
    ledger: Ledger, batch: str | None, *, events: bool = False, fmt: str = "csv"
) -> str:
    """Every job row (or event row) of ``batch`` (or all), as CSV or JSON text."""
    pieces: list[str] = []
    await export_to(ledger, batch, pieces.append, events=events, fmt=fmt)
    return "".join(pieces)


async def export_to(
    ledger: Ledger, batch: str | None, write: Write, *, events: bool = False, fmt: str = "csv"
) -> None:
    """:func:`export`, given to ``write`` a page at a time as the rows are read."""
    if fmt not in ("csv", "json"):
        raise InputError(f"unknown export format {fmt!r}; use csv or json")
    if batch is not None and await ledger.batch(batch) is None:
        raise InputError(f"no batch {batch!r} in {ledger.path}")
    if events:
        pages, columns = ledger.export_event_pages(batch), ledger.EXPORT_EVENT_COLUMNS
    else:
        pages, columns = ledger.export_job_pages(batch), ledger.EXPORT_JOB_COLUMNS
    names = [name.strip() for name in columns.split(",")]
    if fmt == "csv":
        write(_csv([names]))
    opening = "[\n"  # what comes before the next item; "[]" if there is none
    async for page in pages:
        if fmt == "csv":
            write(_csv([row[name] for name in names] for row in page))
            continue
        write(opening + _ENCODER.encode([_parsed(row) for row in page])[2:-2])  # no [ ]
        opening = ",\n"
    if fmt == "json":
        write("[]" if opening == "[\n" else "\n]")


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    request = row.get("request")
    return {**row, "request": json.loads(request)} if isinstance(request, str) else row


def _csv(rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(["" if cell is None else cell for cell in row] for row in rows)
    return out.getvalue()
