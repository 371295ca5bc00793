"""What was spent, from ledger rows: billed, free, in flight; by batch, model, state, day (pure).

Krea has no endpoint that tells spend, so the ledger is the user's only account and must be exact.
This module turns its rows (plain values: no SQL, no I/O) into the figures ``reports`` renders.
Money is integer micro-USD throughout; a ratio is rounded half up to whole micro-USD once, last.

Which bucket a job falls in (:func:`bucket`), from our ``state`` and Krea's ``remote_status``:

* **billed**: Krea completed its current remote job (only completed jobs are charged): states
  completed, downloading and done, and submitted or orphan rows whose remote status is
  ``completed``. In ``submitting``/``ambiguous``/``pending`` rows remote_status is left over from
  an earlier, failed attempt and says nothing about the current one.
* **in flight** (exposure): submitting, submitted, ambiguous, and orphans Krea has not finished: a
  remote job may exist and may still be charged. Counted at the estimated price.
* **free**: everything else: failed, cancelled, rejected, pending (never created: not sent yet,
  held back by the budget, refused with 429/402, or reconciled as never created) and orphans Krea
  failed or cancelled.

``state`` is ours (``jobs.JobState``: where the orchestrator is with a job); ``remote_status`` is
Krea's (``jobs.RemoteStatus``: what Krea last said of the job's latest remote job). ``by_status``
groups by state. A job retried after a failure is one row, counted in its current state; its
earlier attempts are **free attempts**, counted from the events table (events entering failed or
cancelled).

History alone can rebuild the bill: every remote job whose events show ``completed`` is charged
once, at the price its row carried then (:func:`billed_from_events`). It equals the billed total
of the current rows; the tests hold both ways to that.

Clips are billed jobs other than orphans: the videos the manifest asked for. Cost per clip = all
billed money (orphan spend included: it is part of what the clips cost) / clips. Cost per second =
billed money less the price of clips of unknown length, / the seconds of the clips of known length
(``jobs.seconds``). An orphan's price is the reconciler's estimate (the dearest job that could
have created it), since Krea reports no price per job.

``as_dict`` gives each figure as the plain data the JSON report is built from (its shape is
documented in ``reports``): money as integer ``*_micro`` plus a ``*_usd`` number derived from it.

Days are UTC calendar days of the billing time: when the ledger saw the remote job complete (its
first event with remote status ``completed``), else Krea's ``completed_at``, else ``updated_at``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from orchestrator.clock import parse_utc
from orchestrator.jobs import IN_FLIGHT, REMOTE_TERMINAL, JobState
from orchestrator.prices import usd

S = JobState
#: States in which remote_status describes the row's current remote job.
_CURRENT_REMOTE = frozenset({S.SUBMITTED, S.COMPLETED, S.DOWNLOADING, S.DONE, S.ORPHAN})
#: States that only a job Krea completed can be in.
_COMPLETED_STATES = frozenset({S.COMPLETED, S.DOWNLOADING, S.DONE})
#: Events that record a free attempt: Krea failed or cancelled the remote job.
_FREE_ATTEMPT = frozenset({S.FAILED.value, S.CANCELLED.value})
UNKNOWN_DAY = "unknown"


class Bucket(StrEnum):
    """Where a job's estimated price belongs."""

    BILLED = "billed"  #: Krea completed it: charged
    IN_FLIGHT = "in_flight"  #: a remote job may exist and may still be charged
    FREE = "free"  #: not charged, and cannot be as things stand


@dataclass(frozen=True, slots=True)
class JobRow:
    """The columns of one ``jobs`` row that accounting reads."""

    key: str
    batch: str
    entry_id: str
    model: str
    state: JobState
    price_micro: int
    seconds: float | None = None
    remote_id: str | None = None
    remote_status: str | None = None
    remote_created_at: str | None = None
    completed_at: str | None = None
    updated_at: str | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> JobRow:
        """From a column -> value mapping (extra columns are ignored)."""
        values = {name: row[name] for name in _JOB_COLUMNS if name in row}
        return cls(**{**values, "state": JobState(row["state"])})


@dataclass(frozen=True, slots=True)
class EventRow:
    """The columns of one ``events`` row that accounting reads."""

    seq: int
    job_key: str
    at: str
    to_state: str
    remote_id: str | None = None
    remote_status: str | None = None
    price_micro: int | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> EventRow:
        """From a column -> value mapping (extra columns are ignored)."""
        return cls(**{name: row[name] for name in _EVENT_COLUMNS if name in row})


_JOB_COLUMNS = tuple(f.name for f in fields(JobRow))
_EVENT_COLUMNS = tuple(f.name for f in fields(EventRow))


@dataclass
class Tally:
    """A group of jobs added up."""

    jobs: int = 0
    billed_jobs: int = 0
    billed_micro: int = 0
    in_flight_jobs: int = 0
    in_flight_micro: int = 0
    free_jobs: int = 0
    free_attempts: int = 0  #: remote jobs Krea failed or cancelled (from the events)
    clips: int = 0  #: billed jobs other than orphans
    seconds: Decimal = Decimal(0)  #: seconds of the clips whose length is known
    unknown_length_micro: int = 0  #: price of the clips whose length is unknown

    def add(self, row: JobRow, free_attempts: int = 0) -> None:
        """Count one job (and its free attempts)."""
        self.jobs += 1
        self.free_attempts += free_attempts
        kind = bucket(row)
        if kind is Bucket.BILLED:
            self._bill(row)
        elif kind is Bucket.IN_FLIGHT:
            self.in_flight_jobs += 1
            self.in_flight_micro += row.price_micro
        else:
            self.free_jobs += 1

    def _bill(self, row: JobRow) -> None:
        self.billed_jobs += 1
        self.billed_micro += row.price_micro
        if row.state is S.ORPHAN:
            return
        self.clips += 1
        if row.seconds is None:
            self.unknown_length_micro += row.price_micro
        else:
            self.seconds += Decimal(str(row.seconds))

    @property
    def cost_per_clip_micro(self) -> int | None:
        """Billed money per clip; None without clips."""
        return ratio_micro(self.billed_micro, self.clips)

    @property
    def cost_per_second_micro(self) -> int | None:
        """Billed money per second of video; None without a clip of known length."""
        return ratio_micro(self.billed_micro - self.unknown_length_micro, self.seconds)

    def as_dict(self) -> dict[str, Any]:
        """The group's figures as plain data (see ``reports``)."""
        return {
            "jobs": self.jobs,
            "billed_jobs": self.billed_jobs,
            **money("billed", self.billed_micro),
            "in_flight_jobs": self.in_flight_jobs,
            **money("in_flight", self.in_flight_micro),
            "free_jobs": self.free_jobs,
            "free_attempts": self.free_attempts,
            "clips": self.clips,
            "billed_seconds": float(self.seconds),
            **money("cost_per_clip", self.cost_per_clip_micro),
            **money("cost_per_second", self.cost_per_second_micro),
        }


@dataclass(frozen=True, slots=True)
class Orphan:
    """A remote job reconciliation found that no entry could claim: duplicate spend if billed."""

    key: str
    remote_id: str
    batch: str
    model: str
    remote_status: str | None
    price_micro: int
    bucket: Bucket
    remote_created_at: str | None

    @property
    def billed(self) -> bool:
        return self.bucket is Bucket.BILLED

    def as_dict(self) -> dict[str, Any]:
        """The orphan as plain data (see ``reports``)."""
        return {
            "key": self.key,
            "remote_id": self.remote_id,
            "batch": self.batch,
            "model": self.model,
            "remote_status": self.remote_status,
            **money("price", self.price_micro),
            "billed": self.billed,
            "in_flight": self.bucket is Bucket.IN_FLIGHT,
            "remote_created_at": self.remote_created_at,
        }


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
            **money("billed", self.billed_micro),
            "free_attempts": self.free_attempts,
        }


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything a report shows, added up."""

    totals: Tally
    by_batch: dict[str, Tally]
    by_model: dict[str, Tally]
    by_status: dict[JobState, Tally]
    by_day: list[Day]
    orphans: list[Orphan]
    charges: list[Charge] = field(default_factory=list)

    @property
    def orphan_billed_micro(self) -> int:
        return sum(o.price_micro for o in self.orphans if o.billed)


def bucket(row: JobRow) -> Bucket:
    """Billed, in flight or free (rules in the module docstring)."""
    if row.state in _COMPLETED_STATES:
        return Bucket.BILLED
    if row.state in _CURRENT_REMOTE and row.remote_status == "completed":
        return Bucket.BILLED
    if row.state is S.ORPHAN or row.state is S.SUBMITTED:
        return Bucket.FREE if row.remote_status in REMOTE_TERMINAL else Bucket.IN_FLIGHT
    return Bucket.IN_FLIGHT if row.state in IN_FLIGHT else Bucket.FREE


def account(jobs: Iterable[JobRow], events: Iterable[EventRow]) -> Figures:
    """Add ``jobs`` up, with their ``events`` for free attempts and billing times."""
    rows, history = list(jobs), list(events)
    attempts = free_attempts(history)
    totals = Tally()
    by_batch: dict[str, Tally] = {}
    by_model: dict[str, Tally] = {}
    by_status: dict[JobState, Tally] = {}
    for row in rows:
        for tally in (
            totals,
            by_batch.setdefault(row.batch, Tally()),
            by_model.setdefault(row.model, Tally()),
            by_status.setdefault(row.state, Tally()),
        ):
            tally.add(row, attempts[row.key])
    spent = charges(rows, billing_times(history))
    return Figures(
        totals=totals,
        by_batch=dict(sorted(by_batch.items())),
        by_model=dict(sorted(by_model.items())),
        by_status={state: by_status[state] for state in JobState if state in by_status},
        by_day=days(spent, history, {row.key for row in rows}),
        orphans=[_orphan(row) for row in rows if row.state is S.ORPHAN],
        charges=spent,
    )


def free_attempts(events: Iterable[EventRow]) -> Counter[str]:
    """Job key -> remote jobs of it that Krea failed or cancelled (each one free)."""
    return Counter(e.job_key for e in events if e.to_state in _FREE_ATTEMPT)


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
        if event.remote_status != "completed" or JobState(event.to_state) not in _CURRENT_REMOTE:
            continue
        first.setdefault(event.remote_id or event.job_key, (event.at, event.price_micro or 0))
    return first


def charges(rows: Iterable[JobRow], times: Mapping[str, str]) -> list[Charge]:
    """Billed rows in billing order, each with the running total."""
    billed = [
        (times.get(row.remote_id or row.key) or row.completed_at or row.updated_at, row)
        for row in rows
        if bucket(row) is Bucket.BILLED
    ]
    billed.sort(key=lambda pair: (pair[0] is None, _sortable(pair[0]), pair[1].key))
    out, total = [], 0
    for at, row in billed:
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
        if event.to_state in _FREE_ATTEMPT and event.job_key in keys:
            free[utc_day(event.at)] += 1
    names = sorted(set(jobs) | set(free), key=lambda d: (d == UNKNOWN_DAY, d))
    return [Day(d, jobs[d], micro[d], free[d]) for d in names]


def utc_day(moment: str | None) -> str:
    """The UTC calendar day of an ISO timestamp (``unknown`` without one)."""
    if not moment:
        return UNKNOWN_DAY
    return parse_utc(moment).astimezone(UTC).date().isoformat()


def ratio_micro(micro: int, count: int | Decimal) -> int | None:
    """``micro / count`` rounded half up to whole micro-USD; None when ``count`` is zero."""
    if not count:
        return None
    return int((Decimal(micro) / Decimal(count)).to_integral_value(rounding=ROUND_HALF_UP))


def money(name: str, micro: int | None) -> dict[str, Any]:
    """``{name}_micro`` (the number to compute with) and ``{name}_usd`` (derived, for reading)."""
    return {f"{name}_micro": micro, f"{name}_usd": None if micro is None else usd(micro)}


def _sortable(moment: str | None) -> float:
    return parse_utc(moment).timestamp() if moment else 0.0


def _orphan(row: JobRow) -> Orphan:
    return Orphan(
        key=row.key,
        remote_id=row.remote_id or row.key.removeprefix("orphan:"),
        batch=row.batch,
        model=row.model,
        remote_status=row.remote_status,
        price_micro=row.price_micro,
        bucket=bucket(row),
        remote_created_at=row.remote_created_at,
    )
