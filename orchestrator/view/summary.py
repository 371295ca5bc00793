"""One line of the batches page: a batch's jobs per state, its money, its pace and its ETA.

Money is the report's: :func:`orchestrator.money.reports.totals` adds up billed, in flight and
not sent exactly as ``orchestrator report`` does (SQLite sums, a few dozen rows however large
the batch), so the page and the report can never disagree. Pace is the clips verified in the
last :data:`RATE_WINDOW_S` seconds; the ETA is the jobs still to finish at that pace (none
while nothing is finishing: a batch no run is working on has no ETA).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from orchestrator.clock import format_utc
from orchestrator.jobs import UNFINISHED, JobState
from orchestrator.ledger import Ledger
from orchestrator.money import reports

#: The window clips per minute are counted over.
RATE_WINDOW_S = 300
#: The states in the order the page shows them (orphans are not the batch's jobs).
STATES = tuple(state.value for state in JobState if state is not JobState.ORPHAN)


async def summaries(ledger: Ledger, now: datetime) -> list[dict[str, Any]]:
    """Every batch's line, oldest batch first."""
    return [await summary(ledger, batch, now) for batch in await ledger.view_batches()]


async def summary(ledger: Ledger, batch: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The line of one batch (a row of :meth:`Ledger.view_batches`) as plain data."""
    name = str(batch["name"])
    counts = {s.value: n for s, n in (await ledger.state_counts(name, current_only=True)).items()}
    counts.pop(JobState.ORPHAN.value, None)
    totals = await reports.totals(ledger, name)
    since = format_utc(now - timedelta(seconds=RATE_WINDOW_S))
    last, recent = await ledger.view_activity(name, since)
    per_minute = recent * 60 / RATE_WINDOW_S
    # A blocked job is no work left for a run, but for a retry of its input.
    blocked = len(await ledger.blocked(name)) if counts.get(JobState.WAITING.value) else 0
    left = sum(n for state, n in counts.items() if JobState(state) in UNFINISHED) - blocked
    return {
        "batch": name,
        "jobs": sum(counts.values()),
        "states": counts,
        "billed_micro": totals.billed_micro,
        "in_flight_micro": totals.in_flight_micro,
        "not_sent_micro": totals.not_sent_micro,
        "budget_micro": batch["budget_micro"],
        "clips_per_minute": round(per_minute, 2),
        "left": left,
        "blocked": blocked,
        "eta_s": round(left / per_minute * 60) if left and per_minute else None,
        "last_activity": last,
        "cancelled_at": batch["cancelled_at"],
    }


def usd(micro: int | None) -> str:
    """``$1.23`` (``-`` for none): what a person reads; the JSON keeps the micro-USD."""
    return "-" if micro is None else f"${micro / 1_000_000:,.2f}"


def duration(seconds: float | None) -> str:
    """``2h05m``, ``3m07s``, ``12s`` (``-`` for none)."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def cells(line: dict[str, Any]) -> dict[str, str]:
    """The batches table's cells of one line, as text: the page renders them, the live stream
    sends them, so both always read the same."""
    states = line["states"]
    shown = {f"state.{state}": str(states.get(state, 0)) for state in STATES}
    per_minute = line["clips_per_minute"]
    return shown | {
        "jobs": str(line["jobs"]),
        "billed": usd(line["billed_micro"]),
        "in_flight": usd(line["in_flight_micro"]),
        "not_sent": usd(line["not_sent_micro"]),
        "rate": f"{per_minute:g}" if per_minute else "-",
        "eta": duration(line["eta_s"]),
        "last_activity": line["last_activity"] or "-",
    }
