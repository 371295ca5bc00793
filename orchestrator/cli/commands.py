"""What each CLI command does, without click: load, call the library, return text and exit codes.

``cli`` parses arguments and prints; this module does the work, so the commands can be called
from Python (and tested) without a terminal. Text for people is plain aligned columns; anything a
program reads has a JSON form whose shape is documented in the README.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator import errors
from orchestrator.clock import parse_utc
from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from orchestrator.money import reports

if TYPE_CHECKING:
    from orchestrator.manifest.manifest import Manifest
    from orchestrator.selection import Selection

S = JobState
T = TypeVar("T")
#: ``click.echo``'s shape: what prints for the commands that write as they read.
Echo = Callable[..., object]
#: Columns a table for people may take: it never wraps in a terminal this wide.
WIDTH = 100
#: Blocked jobs whose reasons `status` prints per batch; the rest are counted (JSON has all).
BLOCKED_SHOWN = 5


def validate(manifest_path: str) -> str:
    """`orchestrator validate`: a one-paragraph verdict, or ManifestErrors."""
    from orchestrator.manifest.manifest import load_manifest  # the spec: only these two need it
    from orchestrator.money import costs

    manifest = load_manifest(manifest_path, keyed=False)  # nothing is stored: no keys needed
    total = costs.estimate(manifest, itemized=False)
    models = ", ".join(sorted(total.by_model))
    return (
        f"{manifest_path}: OK: batch {manifest.batch!r}, {total.jobs_count} jobs ({models}), "
        f"estimated {_money(total.total_micro)}"
    )


def estimate(manifest_path: str, budget_usd: float | None, fmt: str) -> tuple[str, bool | None]:
    """`orchestrator estimate`: the text and whether it fits the budget (None without one)."""
    from orchestrator.manifest.manifest import load_manifest

    return estimate_of(load_manifest(manifest_path, keyed=False), budget_usd, fmt)


def estimate_of(
    manifest: Manifest, budget_usd: float | None, fmt: str, trial: Selection | None = None
) -> tuple[str, bool | None]:
    """:func:`estimate` of a loaded manifest; with ``trial``, of the jobs it selects alone."""
    from orchestrator.money import costs

    budget = None if budget_usd is None else costs.micro_from_usd(budget_usd)
    itemized = fmt == "json"  # the table shows totals only
    if trial is None or trial.everything:
        result = costs.estimate(manifest, budget, itemized=itemized)
    else:
        chosen = trial.chosen([spec.entry_id for spec in manifest.specs])
        specs = [spec for spec in manifest.specs if spec.entry_id in chosen]
        budget = manifest.budget_micro if budget is None else budget
        result = costs.estimate(specs, budget, itemized=itemized)
    if fmt == "json":
        return json.dumps(costs.estimate_json(result), indent=2), result.fits_budget
    rows = [(model, str(c.jobs), _money(c.micro)) for model, c in result.by_model.items()]
    rows.append(("total", str(result.jobs_count), _money(result.total_micro)))
    text = table(("model", "jobs", "usd"), rows)
    if result.budget_micro is not None:
        verdict = "fits" if result.fits_budget else "EXCEEDS"
        text += f"\nbudget {_money(result.budget_micro)}: the estimate {verdict} it"
    return text, result.fits_budget


@asynccontextmanager
async def read_ledger(path: str | Path, batch: str | None = None) -> AsyncIterator[Ledger]:
    """The ledger at ``path``, read-only; a missing ledger or batch is bad input (exit 2)."""
    require_ledger(path)
    async with Ledger.open(path, readonly=True) as ledger:
        await check_batch(ledger, batch)
        yield ledger


def require_ledger(path: str | Path) -> None:
    """Readers never create a ledger: a path with none is a typo, said as bad input (exit 2),
    with the ledgers that are in that folder (after `--simulate`, ``simulated.db``)."""
    if not Path(path).is_file():
        raise errors.NoLedger(str(path), _ledgers_beside(Path(path)))


def _ledgers_beside(path: Path) -> tuple[str, ...]:
    """The SQLite files in ``path``'s folder that hold a ledger (a ``batches`` table), by name."""
    folder = path.parent
    found = []
    for candidate in sorted(folder.glob("*.db"))[:50]:
        try:
            with sqlite3.connect(f"file:{candidate}?mode=ro", uri=True) as db:
                tables = db.execute("SELECT name FROM sqlite_master WHERE name = 'batches'")
                if tables.fetchone():
                    found.append(str(candidate) if folder != Path() else candidate.name)
        except sqlite3.Error:
            continue  # not SQLite, or unreadable: not a ledger to suggest
    return tuple(found)


async def check_batch(ledger: Ledger, batch: str | None) -> None:
    if batch is not None and await ledger.batch(batch) is None:
        raise errors.InputError(f"no batch {batch!r} in {ledger.path}")


async def status(ledger_path: Path, batch: str | None, fmt: str) -> str:
    """`orchestrator status`: counts per batch and state, jobs no run claims, oldest in flight,
    and why each blocked job waits (the first :data:`BLOCKED_SHOWN` of a batch's in the text).

    ``--format json`` is a list with one object per batch (README, Commands)::

        [{"batch": "demo", "states": {"done": 9}, "blocked": [], "orphans": 0,
          "possible_duplicates": 1, "foreign": 3, "superseded": 1, "oldest_in_flight": "3m05s",
          "oldest_in_flight_s": 185.2}]

    ``states`` counts the current manifest's jobs; ``blocked``, its waiting jobs that an input
    stops (``{"id", "reason"}`` each, all of them); ``superseded``, rows of entries since edited or
    removed (cost kept in reports); ``foreign``, other clients' jobs seen by its runs or by none.
    """
    async with read_ledger(ledger_path, batch) as ledger:
        names = [batch] if batch else await ledger.batch_names()
        data = [await _batch_status(ledger, name) for name in names]
    if fmt == "json":
        return json.dumps(data, indent=2)
    if not data:
        return "the ledger has no batches yet"
    return "\n".join([_status_table(data), *_blocked_lines(data)])


#: Columns of `status` after the states: (JSON key, header, header when shortened).
_STATUS_COUNTS = (
    ("orphans", "orphans", "orph"),
    ("possible_duplicates", "possible dups", "dups"),
    ("foreign", "foreign", "frgn"),
    ("superseded", "superseded", "sups"),
    ("oldest_in_flight", "oldest in flight", "oldest"),
)
#: State headers when the full names would not fit ``WIDTH`` (and "blocked", shown after them).
_SHORT_STATES = {
    "waiting": "wait", "blocked": "blkd", "pending": "pend", "submitting": "sbmtg",
    "submitted": "sbmtd", "completed": "compl", "downloading": "dlng", "rejected": "rej",
    "cancelled": "canc", "ambiguous": "amb",
}  # fmt: skip


def _status_table(data: Sequence[dict[str, Any]]) -> str:
    """One row per batch, within ``WIDTH`` columns: the states some batch has jobs in and every
    count; if that is too wide, only the counts some batch has, then shorter headers, and
    when even those do not fit, one row per batch and count."""
    states = [s.value for s in JobState if any(d["states"].get(s.value) for d in data)]
    states += ["blocked"] if any(d["blocked"] for d in data) else []  # some of the waiting
    some = [c for c in _STATUS_COUNTS if any(d[c[0]] for d in data)]
    text = ""
    for counts, short in ((_STATUS_COUNTS, False), (some, False), (some, True)):
        rows, header = _status_rows(data, states, counts, short=short)
        text = table(("batch", *header), rows)
        if fits(text):
            return text
    rows, header = _status_rows(data, states, some, short=False)
    return table(("batch", "jobs or count", "n"), _status_long(rows, header))


def _status_rows(
    data: Sequence[dict[str, Any]],
    states: Sequence[str],
    counts: Sequence[tuple[str, str, str]],
    *,
    short: bool,
) -> tuple[list[tuple[str, ...]], tuple[str, ...]]:
    """The rows of `status`'s table (no "batch" header), with full or shortened headers."""
    rows = [
        (clip(d["batch"], 30), *(str(_state_cell(d, s)) for s in states),
         *("-" if d[key] is None else str(d[key]) for key, _, _ in counts))
        for d in data
    ]  # fmt: skip
    if short:
        header = (*(_SHORT_STATES.get(s, s) for s in states), *(c[2] for c in counts))
    else:
        header = (*states, *(c[1] for c in counts))
    return rows, header


def _state_cell(data: dict[str, Any], state: str) -> int:
    """A batch's count of jobs in ``state`` (or blocked, which is derived, never stored)."""
    return len(data["blocked"]) if state == "blocked" else int(data["states"].get(state, 0))


def _blocked_lines(data: Sequence[dict[str, Any]]) -> list[str]:
    """Below the table: why each blocked job waits, :data:`BLOCKED_SHOWN` of a batch at most,
    then how to unblock them. Each line is one job's (a reason is never cut to fit)."""
    if not any(d["blocked"] for d in data):
        return []
    lines = [""]
    for d in data:
        whose = f"[{d['batch']}] " if len(data) > 1 else ""
        lines += [f"{whose}{b['id']}: blocked: {b['reason']}" for b in d["blocked"][:BLOCKED_SHOWN]]
        more = len(d["blocked"]) - BLOCKED_SHOWN
        if more > 0:
            lines.append(f"{whose}and {more} more blocked (`status --format json` lists each)")
    lines.append(
        "`orchestrator retry MANIFEST` sends a failed or cancelled input again, then the jobs "
        "waiting for it"
    )
    return lines


def _status_long(rows: Sequence[tuple[str, ...]], header: Sequence[str]) -> list[tuple[str, ...]]:
    """The status table turned on its side: (batch, column, value) for each value it shows."""
    return [(row[0], *cell) for row in rows for cell in zip(header, row[1:], strict=True)]


async def _batch_status(ledger: Ledger, name: str) -> dict[str, Any]:
    counts = await ledger.state_counts(name, current_only=True)
    every = await ledger.state_counts(name)
    orphans = every.get(S.ORPHAN, 0)  # remote jobs no entry claims: not the batch's jobs
    counts.pop(S.ORPHAN, None)
    unclaimed = await ledger.unattributed_counts(name)  # nor these: no run claims them
    oldest = await ledger.oldest_in_flight(name)
    seconds = (datetime.now(UTC) - parse_utc(oldest)).total_seconds() if oldest else None
    blocked = await ledger.blocked(name)
    return {
        "batch": name,
        "states": {s.value: n for s, n in counts.items()},
        "blocked": [{"id": b.entry_id, "reason": b.reason} for b in blocked],
        "orphans": orphans,
        "possible_duplicates": unclaimed["possible_duplicate"],
        "foreign": unclaimed["foreign"],
        "superseded": sum(every.values()) - orphans - sum(counts.values()),
        "oldest_in_flight": None if seconds is None else _age(seconds),
        "oldest_in_flight_s": None if seconds is None else round(seconds, 1),
    }


def _age(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


async def report(ledger_path: Path, batch: str | None, fmt: str) -> str:
    """`orchestrator report` (see ``reports``)."""
    async with read_ledger(ledger_path, batch) as ledger:
        return await reports.render(ledger, batch, fmt)


async def export(
    ledger_path: Path, batch: str | None, events: bool, fmt: str, output: Path | None, echo: Echo
) -> None:
    """`orchestrator export`: every job (or event) row, as CSV or JSON, written as it is read:
    to ``output`` (created once the ledger and batch are found), else through ``echo``
    (``click.echo``: the text and its closing newline, as for the other commands)."""
    async with read_ledger(ledger_path, batch) as ledger:
        if output is None:
            write = functools.partial(echo, nl=False)
            await reports.export_to(ledger, batch, write, events=events, fmt=fmt)
            echo("")
            return
        with output.open("w") as file:
            await reports.export_to(ledger, batch, file.write, events=events, fmt=fmt)
    echo(f"wrote {output}", err=True)


def _money(micro: int | None) -> str:
    return "-" if micro is None else f"${micro / 1_000_000:,.2f}"


def _usd(micro: int | None) -> float | None:
    return None if micro is None else micro / 1_000_000


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """Plain aligned columns under a header and a rule (cells are not cut: see :func:`clip`)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def fits(text: str) -> bool:
    """Whether every line of ``text`` fits a terminal ``WIDTH`` columns wide."""
    return all(len(line) <= WIDTH for line in text.splitlines())


def clip(text: str, width: int, *, keep_end: bool = False) -> str:
    """``text`` in at most ``width`` columns, an ellipsis where it was cut (at its start with
    ``keep_end``, so a path keeps its file name)."""
    if len(text) <= width:
        return text
    if keep_end:
        return "…" + text[len(text) - width + 1 :]
    return text[: width - 1] + "…"
