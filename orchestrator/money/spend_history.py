"""Money over time, from the events table: free attempts, the bill rebuilt, billing times (pure).

The ``jobs`` table holds each job's *current* remote job; the ``events`` table is the only record
of the earlier ones and of *when* things happened. ``accounting`` adds the rows up and asks this
module for what the rows alone cannot tell:

* **Free attempts**: every event entering failed or cancelled is one remote job Krea did not
  charge. A job retried after a failure is one row; its earlier attempts live only here.
* **The bill rebuilt**: every remote job whose events show ``completed`` is charged once, at the
  price its row carried then (:func:`billed_from_events`). It equals the billed total of the
  current rows; the tests hold both ways to that.
* **Billing times**: when the ledger first saw a remote job completed, else Krea's
  ``completed_at``, else ``updated_at``. They order the spend-over-time series (:func:`charges`)
  and place money in UTC calendar days (:func:`days`).

A report reads these through the ledger's sums instead (``accounting.account_groups``): the same
rules in SQL, so that 100,000 jobs are never read one by one. The functions here stay the
reference the tests hold the sums to.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from orchestrator.clock import parse_utc
from orchestrator.jobs import JobState
from orchestrator.money.prices import usd
from orchestrator.money.rows import EventRow, JobRow

S = JobState
#: States in which remote_status describes the row's current remote job.
CURRENT_REMOTE = frozenset({S.SUBMITTED, S.COMPLETED, S.DOWNLOADING, S.DONE, S.ORPHAN})
#: Events that record a free attempt: Krea failed or cancelled the remote job.
FREE_ATTEMPT = frozenset({S.FAILED.value, S.CANCELLED.value})
UNKNOWN_DAY = "unknown"
MAX_STEPS = 2000  #: most steps the spend-over-time chart draws


@dataclass(frozen=True, slots=True)
class Charge:
    """One billed job at its billing time, with the running total: the spend-over-time chart."""

    at: str | None
    key: str
    batch: str
    model: str
    price_micro: int
    cumulative_micro: int


@dataclass(frozen=True, slots=True)
class Day:
    """One UTC day: what was billed, and how many attempts Krea failed or cancelled for free."""

    day: str
    billed_jobs: int
    billed_micro: int
    free_attempts: int

    def as_dict(self) -> dict[str, Any]:
        """The day as plain data (see ``reports``)."""
        return {
            "day": self.day,
            "billed_jobs": self.billed_jobs,
            "billed_micro": self.billed_micro,
            "billed_usd": usd(self.billed_micro),
            "free_attempts": self.free_attempts,
        }


def free_attempts(events: Iterable[EventRow]) -> Counter[str]:
    """Job key -> remote jobs of it that Krea failed or cancelled (each one free)."""
    return Counter(e.job_key for e in events if e.to_state in FREE_ATTEMPT)


def billed_from_events(events: Iterable[EventRow]) -> int:
    """The bill rebuilt from history alone: each remote job seen completed, once, at its price."""
    return sum(price for _, price in _completions(events).values())


def billing_times(events: Iterable[EventRow]) -> dict[str, str]:
    """Remote id (job key without one) -> when the ledger first saw that remote job completed."""
    return {ident: at for ident, (at, _) in _completions(events).items()}


def _completions(events: Iterable[EventRow]) -> dict[str, tuple[str, int]]:
    """Remote id -> (time, price) of the first event that shows it completed."""
    first: dict[str, tuple[str, int]] = {}
    for event in events:
        if event.remote_status != "completed" or JobState(event.to_state) not in CURRENT_REMOTE:
            continue
        first.setdefault(event.remote_id or event.job_key, (event.at, event.price_micro or 0))
    return first


def charges(billed: Iterable[JobRow], times: Mapping[str, str]) -> list[Charge]:
    """The ``billed`` rows in billing order, each with the running total."""
    timed = [(times.get(row.remote_id or row.key) or row.completed_at or row.updated_at, row)
             for row in billed]  # fmt: skip
    timed.sort(key=lambda pair: (pair[0] is None, _sortable(pair[0]), pair[1].key))
    out, total = [], 0
    for at, row in timed:
        total += row.price_micro
        out.append(Charge(at, row.key, row.batch, row.model, row.price_micro, total))
    return out


def days(spent: Iterable[Charge], events: Iterable[EventRow], keys: set[str]) -> list[Day]:
    """Billed money and free attempts per UTC day, oldest first (unknown times last)."""
    jobs, micro, free = Counter[str](), Counter[str](), Counter[str]()
    for charge in spent:
        jobs[utc_day(charge.at)] += 1
        micro[utc_day(charge.at)] += charge.price_micro
    for event in events:
        if event.to_state in FREE_ATTEMPT and event.job_key in keys:
            free[utc_day(event.at)] += 1
    return day_list(jobs, micro, free)


def day_list(jobs: Counter[str], micro: Counter[str], free: Counter[str]) -> list[Day]:
    """Billed jobs, billed money and free attempts by day as Days, oldest first (unknown last)."""
    names = sorted(set(jobs) | set(free), key=lambda d: (d == UNKNOWN_DAY, d))
    return [Day(d, jobs[d], micro[d], free[d]) for d in names]


def day_of(day: str | None, at: str | None) -> str:
    """The UTC day of a row the ledger grouped: its own if it could tell, else read from ``at``."""
    return day if day is not None else utc_day(at)


def chart_every(charges: int) -> int:
    """The spend chart draws one step per this many charges (and the last)."""
    return max(1, charges // MAX_STEPS)


def chart_points(spent: Sequence[Charge]) -> list[Charge]:
    """The charges the spend chart draws: every :func:`chart_every`-th one, and the last."""
    return [*spent[:: chart_every(len(spent))], *spent[-1:]]


def utc_day(moment: str | None) -> str:
    """The UTC calendar day of an ISO timestamp (``unknown`` without one)."""
    if not moment:
        return UNKNOWN_DAY
    return parse_utc(moment).astimezone(UTC).date().isoformat()


def _sortable(moment: str | None) -> float:
    return parse_utc(moment).timestamp() if moment else 0.0
