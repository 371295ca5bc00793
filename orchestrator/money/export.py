"""`orchestrator export`: every job (or event) row of the ledger, as CSV or a JSON list, streamed.

Columns are ``Ledger.EXPORT_*_COLUMNS``: each request is included (the user's own data) as
it was sent (a chained job's ``{"from": key}`` inputs as the URLs they went as, also listed
in ``inputs_sent``), with its result URL; never anything key-like. The rows are read a page
at a time (``Ledger.export_*_pages``) and each page is written before the next is read, so a
ledger of 100,000 jobs and 700,000 events takes the memory of one page. The JSON is
``json.dumps(rows, indent=2)``, written a page at a time: the same text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from orchestrator.chains import field_path, markers, replaced
from orchestrator.errors import InputError
from orchestrator.jobs import canonical_json
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
            write(_csv(_csv_row(row, names) for row in page))
            continue
        write(opening + _ENCODER.encode([_parsed(row) for row in page])[2:-2])  # no [ ]
        opening = ",\n"
    if fmt == "json":
        write("[]" if opening == "[\n" else "\n]")


def _parsed(row: dict[str, Any]) -> dict[str, Any]:
    request = row.get("request")
    if not isinstance(request, str):
        return row  # an event row
    sent = json.loads(row["inputs_sent"]) if row.get("inputs_sent") else None
    return {**row, "request": _as_sent(json.loads(request), sent), "inputs_sent": sent}


def _as_sent(request: dict[str, Any], sent: dict[str, str] | None) -> dict[str, Any]:
    """A chained job's request with each ``{"from": key}`` replaced by the URL it went as."""
    for trail, _ in list(markers(request)) if sent else ():
        url = sent.get(field_path(trail)) if sent else None
        request = replaced(request, trail, url) if url else request
    return request


def _csv_row(row: dict[str, Any], names: Sequence[str]) -> list[Any]:
    if row.get("inputs_sent"):  # the request as sent, as in JSON
        row = {**row, "request": canonical_json(_parsed(row)["request"])}
    return [row[name] for name in names]


def _csv(rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(["" if cell is None else cell for cell in row] for row in rows)
    return out.getvalue()
