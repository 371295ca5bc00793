"""After spending: the `report` (table, CSV, JSON, HTML), the after-run summary (and `export`).

Figures come from ``accounting`` (pure; its docstring says what billed, in flight, not sent and
free mean); this module reads the ledger through its read-only report queries and renders. No
HTTP, no SQL.

``report --format json`` has a stable shape (the README copies it; add keys, never rename)::

    {
      "generated_at": "2026-02-13T02:20:58.265Z",
      "ledger": "/home/me/orchestrator.db",
      "batch": "demo",                      # null: every batch in the ledger
      "totals": {
        "jobs": 7,                          # billed + in flight + not sent + free
        "billed_jobs": 2, "billed_micro": 1101934, "billed_usd": 1.101934,
        "in_flight_jobs": 1, "in_flight_micro": 366700, "in_flight_usd": 0.3667,
        "free_jobs": 1,                     # failed, cancelled, rejected (never charged)
        "free_attempts": 2,                 # remote jobs Krea failed or cancelled (history)
        "clips": 2, "billed_seconds": 15.0, # billed jobs other than orphans; their seconds
        "cost_per_clip_micro": 550967, "cost_per_clip_usd": 0.550967,
        "cost_per_second_micro": 73462, "cost_per_second_usd": 0.073462,
        "not_sent_jobs": 3,                 # pending or waiting: not sent yet, waiting for
                                            # inputs or held back by the budget
        "not_sent_micro": 1100100, "not_sent_usd": 1.1001,  # what sending them will cost
        "orphans": 0, "orphan_billed_micro": 0, "orphan_billed_usd": 0.0,
        "possible_duplicates": 1,           # maybe ours, maybe another client's: apart from all
        "possible_duplicate_micro": 366700, "possible_duplicate_usd": 0.3667,  # up to, if ours
        "foreign_jobs": 3                   # another client's jobs on the account: counted only
      },
      "by_batch": [{"batch": "demo", <the keys of totals from "jobs" to "not_sent_usd">,
                    "budget_micro": 5000000, "budget_usd": 5.0}],
      "by_model": [{"model": "kling/kling-2.5", <the same keys>}],
      "by_status": [{"state": "done", <the same keys>}, {"state": "submitted", ...}],
      "by_day": [{"day": "2026-02-13", "billed_jobs": 2, "billed_micro": 1101934,
                  "billed_usd": 1.101934, "free_attempts": 2}],
      "orphans": [{"key": "orphan:a1b2", "remote_id": "a1b2", "batch": "demo",
                   "model": "kling/kling-2.5", "remote_status": "completed",
                   "price_micro": 366700, "price_usd": 0.3667, "billed": true,
                   "in_flight": false, "remote_created_at": "2026-02-13T02:19:01.004Z"}],
      "possible_duplicates": [{"remote_id": "c3d4", "batch": "demo", "model": "kling/kling-2.5",
                               "remote_status": "queued", "price_if_ours_micro": 366700,
                               "price_if_ours_usd": 0.3667, "free": false,
                               "created_at": "2026-02-13T02:19:05.120Z", "note": null}]
    }

Money is integer micro-USD (``*_micro``), the numbers to compute with; ``*_usd`` is derived from
it for reading (exact to 6 places). A ratio is null when there is nothing to divide by. Groups
are sorted by name (``by_status`` in the order of ``jobs.JobState``, ``by_day`` by date, UTC);
each group's figures add up exactly to ``totals``, and in every group ``jobs`` = billed + in
flight + not sent + free. Billed is what Krea charged; billed + in flight + not sent is what the
batch will have cost once every job still to go completes. (Until the ``not_sent_*`` keys were
added, pending jobs were counted in ``free_jobs``.) ``state`` is ours and ``remote_status`` is
Krea's (see ``accounting``). Orphans are remote jobs reconciliation found that no entry could
claim: duplicate spend when billed.

Possible duplicates and foreign jobs are jobs on the account no run on this machine can claim
(added after the keys above; older reports lack them). A possible duplicate may have been made
by one of our POSTs whose answer was lost, but another client was active on the account and it
cannot be told apart from theirs; its entry was sent again. Each is listed with Krea's status
when last seen and ``price_if_ours_*``, what it costs if it is ours and completes; ``free`` is
true once Krea failed or cancelled it (nothing to pay, ours or not). ``possible_duplicate_*``
is the most they can cost together (the non-free ones): an "up to", since they may all be
another client's, and never part of billed, orphan or any group's figures. ``foreign_jobs``
counts jobs another client made: never touched, never counted as ours. With ``batch`` set, the
report holds that batch's possible duplicates and the foreign jobs its runs saw or that no run
is named for.

CSV is one table: ``section`` (total, batch, model, status, day, orphan, possible_duplicate),
``name``, the figures (USD as exact decimals; new columns go before ``note``); a
``possible_duplicate`` row's ``possible_duplicate_micro`` is what it adds to the total row's.
HTML is one self-contained file (inline CSS and SVG; no script, no network) with every ledger
string escaped, since ids and prompts are user input. ``export`` (its own module, re-exported
here) gives every job (or event) row as CSV or a JSON list.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from orchestrator.clock import now_utc
from orchestrator.errors import InputError
from orchestrator.ledger import Ledger
from orchestrator.money.accounting import (
    Bucket,
    Figures,
    Tally,
    account,
    account_groups,
    bucket,
    money,
    possible_duplicate_dict,
)
from orchestrator.money.export import export, export_to
from orchestrator.money.report_html import report_html
from orchestrator.money.report_sections import (
    GROUPS,
    dollars,
    foreign_text,
    highlights,
    plural,
    rate,
    seconds_text,
    sections,
    usd_text,
)
from orchestrator.money.rows import (
    AttemptGroup,
    DayGroup,
    EventRow,
    JobGroup,
    JobRow,
    PossibleDuplicateRow,
)
from orchestrator.money.spend_history import CURRENT_REMOTE, FREE_ATTEMPT, Charge, chart_every
from orchestrator.spec import is_image_model

FORMATS = ("table", "csv", "json", "html")
__all__ = [
    "FORMATS", "batch_summary", "export", "export_to", "figures", "figures_by_row", "render",
    "totals",
]  # fmt: skip
#: The states and events the ledger's sums are told about (``spend_history``'s rules).
_CURRENT, _FREE = sorted(map(str, CURRENT_REMOTE)), sorted(FREE_ATTEMPT)
# fmt: off
CSV_COLUMNS = (
    "section", "name", "jobs", "billed_jobs", "billed_micro", "billed_usd", "in_flight_jobs",
    "in_flight_micro", "in_flight_usd", "free_jobs", "free_attempts", "clips", "billed_seconds",
    "cost_per_clip_usd", "cost_per_second_usd", "not_sent_jobs", "not_sent_micro", "not_sent_usd",
    "possible_duplicates", "possible_duplicate_micro", "possible_duplicate_usd", "foreign_jobs",
    "note",
)
# fmt: on


# -- the three entry points ---------------------------------------------------------------------


async def batch_summary(ledger: Ledger, batch: str) -> str:
    """A few lines for the end of a run: billed, clips, by model, rates, in flight, orphans,
    and the jobs on the account no run can claim."""
    return summary_text(await figures(ledger, batch))


async def render(ledger: Ledger, batch: str | None, fmt: str) -> str:
    """`orchestrator report` in ``fmt`` (table, csv, json or html)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
    result = await figures(ledger, batch, chart=fmt == "html")
    document = _report_json(result, await _budgets(ledger), str(ledger.path), batch)
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False)
    if fmt == "csv":
        return _report_csv(document)
    if fmt == "html":
        return report_html(document, result.chart)
    return _report_table(document)


async def figures(ledger: Ledger, batch: str | None, *, chart: bool = False) -> Figures:
    """The ledger's jobs of ``batch`` (or of all batches), added up by SQLite; and beside them,
    the jobs on the account that no run can claim. With ``chart``, the spend chart's points.

    The same figures as :func:`figures_by_row`, which reads every row: a report of 100,000 jobs
    reads a few dozen sums instead. The chart needs billing times in the ledger's fixed-width
    form to be ordered by SQLite; a ledger with any other form is charted row by row.
    """
    await _check_batch(ledger, batch)
    async with ledger.report_snapshot():
        current = _CURRENT
        jobs = [JobGroup.of(row) for row in await ledger.report_groups(batch)]
        free = await ledger.report_free_attempts(batch, _FREE)
        days = [DayGroup.of(row) for row in await ledger.report_billed_days(batch, current)]
        billed = [day for day in days if bucket(day.sample) is Bucket.BILLED]
        if chart and any(day.day is None and day.at is not None for day in billed):
            return await figures_by_row(ledger, batch)
        orphans = [JobRow.of(row) for row in await ledger.report_orphans(batch)]
        points = await _chart(ledger, batch, billed) if chart else []
        duplicates, foreign = await _unattributed(ledger, batch)
    return account_groups(
        jobs, [AttemptGroup.of(row) for row in free], days, orphans, points, duplicates, foreign
    )


async def totals(ledger: Ledger, batch: str | None) -> Tally:
    """:func:`figures`' totals alone, the same to the micro-USD: from the job sums and the free
    attempts, without the days, orphans and unattributed jobs (for the view's batches page)."""
    await _check_batch(ledger, batch)
    async with ledger.report_snapshot():
        jobs = [JobGroup.of(row) for row in await ledger.report_groups(batch)]
        free = await ledger.report_free_attempts(batch, _FREE)
    return account_groups(jobs, [AttemptGroup.of(row) for row in free], [], []).totals


async def figures_by_row(ledger: Ledger, batch: str | None) -> Figures:
    """:func:`figures` from every job row and money event, added up in Python (the reference)."""
    await _check_batch(ledger, batch)
    jobs = [JobRow.of(row) for row in await ledger.report_jobs(batch)]
    events = [EventRow.of(row) for row in await ledger.report_events(batch)]
    duplicates, foreign = await _unattributed(ledger, batch)
    return account(jobs, events, duplicates, foreign)


async def _unattributed(
    ledger: Ledger, batch: str | None
) -> tuple[list[PossibleDuplicateRow], int]:
    rows = await ledger.report_possible_duplicates(batch)
    foreign = (await ledger.unattributed_counts(batch))["foreign"]
    return [PossibleDuplicateRow.of(row) for row in rows], foreign


async def _chart(ledger: Ledger, batch: str | None, billed: list[DayGroup]) -> list[Charge]:
    """The spend chart's points (``spend_history.chart_points``), picked out by SQLite."""
    total = sum(day.jobs for day in billed)
    every = chart_every(total)
    kinds = sorted({day.kind for day in billed}, key=repr)
    rows = await ledger.report_chart(batch, _CURRENT, kinds, every, total)
    points = [
        Charge(r["at"], r["key"], r["batch"], r["model"], r["price_micro"], r["cumulative_micro"])
        for r in rows
    ]
    return [c for c, r in zip(points, rows, strict=True) if (r["n"] - 1) % every == 0] + points[-1:]


async def _check_batch(ledger: Ledger, batch: str | None) -> None:
    if batch is not None and await ledger.batch(batch) is None:
        raise InputError(f"no batch {batch!r} in {ledger.path}")


async def _budgets(ledger: Ledger) -> dict[str, int | None]:
    return {row["name"]: row["budget_micro"] for row in await ledger.report_batches()}


# -- JSON and CSV -------------------------------------------------------------------------------


def _report_json(
    result: Figures, budgets: dict[str, int | None], ledger: str, batch: str | None
) -> dict[str, Any]:
    """The report in the stable JSON shape documented above."""
    orphans = {"orphans": len(result.orphans), **money("orphan_billed", result.orphan_billed_micro)}
    unattributed = {
        "possible_duplicates": len(result.possible_duplicates),
        **money("possible_duplicate", result.possible_duplicate_micro),
        "foreign_jobs": result.foreign_jobs,
    }
    return {
        "generated_at": now_utc(),
        "ledger": ledger,
        "batch": batch,
        "totals": result.totals.as_dict() | orphans | unattributed,
        "by_batch": [
            {"batch": name, **t.as_dict(), **money("budget", budgets.get(name))}
            for name, t in result.by_batch.items()
        ],
        "by_model": [{"model": name, **t.as_dict()} for name, t in result.by_model.items()],
        "by_status": [{"state": s.value, **t.as_dict()} for s, t in result.by_status.items()],
        "by_day": [day.as_dict() for day in result.by_day],
        "orphans": [orphan.as_dict() for orphan in result.orphans],
        "possible_duplicates": [possible_duplicate_dict(d) for d in result.possible_duplicates],
    }


def _report_csv(document: dict[str, Any]) -> str:
    """The report as one CSV table (see the module docstring)."""
    rows = [_csv_row("total", "total", document["totals"])]
    for name, key in GROUPS:
        section = key.removeprefix("by_")
        rows += [_csv_row(section, group[name], group) for group in document[key]]
    rows += [_csv_row("day", day["day"], day) for day in document["by_day"]]
    rows += [_csv_row("orphan", o["remote_id"], _orphan_figures(o)) for o in document["orphans"]]
    rows += [
        _csv_row("possible_duplicate", d["remote_id"], _duplicate_figures(d))
        for d in document["possible_duplicates"]
    ]
    return _csv(CSV_COLUMNS, rows)


def _csv_row(section: str, name: str, values: dict[str, Any]) -> list[Any]:
    """One CSV row; each ``*_usd`` cell is written exactly from its ``*_micro`` value."""
    cells: list[Any] = [section, name]
    for column in CSV_COLUMNS[2:]:
        micro = values.get(column[:-4] + "_micro") if column.endswith("_usd") else None
        cells.append(values.get(column) if micro is None else usd_text(micro))
    return cells


def _orphan_figures(o: dict[str, Any]) -> dict[str, Any]:
    kind = "billed" if o["billed"] else ("in_flight" if o["in_flight"] else "free")
    note = f"batch {o['batch']}; model {o['model']}; Krea status {o['remote_status']}"
    values = {"jobs": 1, f"{kind}_jobs": 1, "note": note}
    return values | ({} if kind == "free" else {f"{kind}_micro": o["price_micro"]})


def _duplicate_figures(d: dict[str, Any]) -> dict[str, Any]:
    """A possible duplicate's CSV cells: what it adds to the "up to" total; the rest, a note."""
    free = ["free: Krea failed or cancelled it"] if d["free"] else []
    note = "; ".join([
        f"price if ours {usd_text(d['price_if_ours_micro'])}", *free, f"batch {d['batch']}",
        f"model {d['model']}", f"Krea status when seen {d['remote_status']}",
        f"created {d['created_at']}",
    ])  # fmt: skip
    added = 0 if d["free"] else d["price_if_ours_micro"]
    return {"possible_duplicates": 1, "possible_duplicate_micro": added, "note": note}


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if cell is None else cell for cell in row] for row in rows)
    return out.getvalue()


# -- text: the plain table, the after-run summary, money --------------------------------------


def _report_table(document: dict[str, Any]) -> str:
    """The report as aligned plain text."""
    scope = f"batch {document['batch']}" if document["batch"] else "all batches"
    lines = [f"spend in {document['ledger']} ({scope}), {document['generated_at']}"]
    lines += [f"{label:<10}  {value}" for label, value in highlights(document["totals"])]
    parts = ["\n".join(lines)]
    parts += [f"{title}\n{_table(head, rows)}" for title, head, rows in sections(document) if rows]
    return "\n\n".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, *rows]]  # fmt: skip
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def summary_text(result: Figures) -> str:
    """The lines `run` prints at the end (see :func:`batch_summary`)."""
    t = result.totals
    per = f"{dollars(t.cost_per_clip_micro)} a clip, {rate(t.cost_per_second_micro)} a second"
    video = f"{seconds_text(float(t.seconds))} of video"
    stills = sum(m.clips for model, m in result.by_model.items() if is_image_model(model))
    made = plural(t.clips - stills, "clip") + (f" and {plural(stills, 'still')}" if stills else "")
    lines = [f"spend: {dollars(t.billed_micro)} billed for {made} ({video}): {per}"]
    width = max((len(m) for m in result.by_model), default=0)
    for model, m in result.by_model.items():
        if m.billed_jobs:
            noun = "still" if is_image_model(model) else "clip"
            lines.append(
                f"  {model.ljust(width)}  {plural(m.clips, noun)}  {dollars(m.billed_micro)}"
            )
    if t.in_flight_jobs:
        lines.append(
            f"in flight: {plural(t.in_flight_jobs, 'job')}, up to {dollars(t.in_flight_micro)} more"
        )
    if t.not_sent_jobs:
        lines.append(
            f"not sent: {plural(t.not_sent_jobs, 'job')} (pending, waiting for inputs or held "
            f"back by the budget), {dollars(t.not_sent_micro)} more once sent"
        )
    if t.free_attempts:
        lines.append(f"free: {t.free_attempts} attempts Krea failed or cancelled (not charged)")
    if result.orphans:
        billed, count = dollars(result.orphan_billed_micro), len(result.orphans)
        lines.append(
            f"orphans: {plural(count, 'remote job')} no entry could claim, {billed} billed"
        )
    return "\n".join(lines + _unattributed_lines(result))


def _unattributed_lines(result: Figures) -> list[str]:
    """Jobs on the account no run can claim, only when there are some; never added to spend."""
    lines = []
    if result.possible_duplicates:
        count = plural(len(result.possible_duplicates), "remote job")
        lines.append(
            f"possible duplicates: {count} a lost POST of ours may have made (unattributable: "
            f"another client was active), up to {dollars(result.possible_duplicate_micro)} "
            "if ours; not in billed"
        )
    if result.foreign_jobs:
        lines.append(
            f"foreign activity: {foreign_text(result.foreign_jobs)}; never touched, not counted"
        )
    return lines
