"""What was spent and what the rest will cost, by batch, model, state and day (pure).

Krea has no endpoint that tells spend, so the ledger is the user's only account and must be exact.
This module turns its rows (plain values: no SQL, no I/O) into the figures ``reports`` renders;
``spend_history`` reads the events for what the rows alone cannot tell (earlier attempts, billing
times, days). Money is integer micro-USD throughout; a ratio is rounded half up to whole micro-USD
once, last.

Which bucket a job falls in (:func:`bucket`), from our ``state`` and Krea's ``remote_status``:

* **billed**: Krea completed its current remote job (only completed jobs are charged): states
  completed, downloading and done, and submitted or orphan rows whose remote status is
  ``completed``. In ``submitting``/``ambiguous``/``pending`` rows remote_status is left over from
  an earlier, failed attempt and says nothing about the current one.
* **in flight** (exposure): submitting, submitted, ambiguous, and orphans Krea has not finished: a
  remote job may exist and may still be charged. Counted at the estimated price.
* **not sent**: pending jobs the manifest still has: not sent yet, held back by the budget,
  refused with 429/402, reconciled as never created, or sent back by a retry; and waiting jobs
  (they take another job's result, and are sent once it exists). No remote job exists, but a
  run sends them: each will cost its estimated price once completed.
* **free**: failed, cancelled, rejected, orphans Krea failed or cancelled, and pending or
  waiting jobs the manifest no longer has (never created, and no run will send them).

``state`` is ours (``jobs.JobState``: where the orchestrator is with a job); ``remote_status`` is
Krea's (``jobs.RemoteStatus``: what Krea last said of the job's latest remote job). ``by_status``
groups by state. A job retried after a failure is one row, counted in its current state; its
earlier attempts are **free attempts** (``spend_history``).

Clips are billed jobs other than orphans: the videos the manifest asked for. Cost per clip = all
billed money (orphan spend included: it is part of what the clips cost) / clips. Cost per second =
billed money less the price of clips of unknown length, / the seconds of the clips of known length
(``jobs.seconds``). An orphan's price is the reconciler's estimate (the dearest job that could
have created it), since Krea reports no price per job.

**Possible duplicates** and **foreign jobs** are jobs on the account that no run on this machine
can claim (the ledger's ``unattributed`` table): one of our lost POSTs may have made a possible
duplicate, but another client was active and it cannot be told apart from theirs; a foreign job
is another client's. Neither is added to any figure above: possible duplicates are itemised
with their price *if ours* and an "up to" total (nothing for one Krea failed or cancelled:
free, ours or not); foreign jobs are only counted.

:func:`account` adds rows up one by one; :func:`account_groups` gives the same figures from
groups the ledger has already added up (``rows.JobGroup``...), applying the same :func:`bucket`
to each group, so a report of 100,000 jobs reads a few dozen rows. ``as_dict`` gives each
figure as the plain data the JSON report is built from (its shape is
documented in ``reports``): money as integer ``*_micro`` plus a ``*_usd`` number derived from it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from orchestrator.jobs import IN_FLIGHT, REMOTE_TERMINAL, UNSENT, JobState
from orchestrator.money.prices import usd
from orchestrator.money.rows import (
    AttemptGroup,
    DayGroup,
    EventRow,
    JobGroup,
    JobRow,
    PossibleDuplicateRow,
)
from orchestrator.money.spend_history import (
    CURRENT_REMOTE,
    Charge,
    Day,
    billing_times,
    charges,
    chart_points,
    day_list,
    day_of,
    days,
    free_attempts,
)

S = JobState
#: States that only a job Krea completed can be in.
_COMPLETED_STATES = frozenset({S.COMPLETED, S.DOWNLOADING, S.DONE})
#: Krea's statuses of a remote job that will never be charged, whoever made it.
_FREE_REMOTE = frozenset({"failed", "cancelled"})


class Bucket(StrEnum):
    """Where a job's estimated price belongs."""

    BILLED = "billed"  #: Krea completed it: charged
    IN_FLIGHT = "in_flight"  #: a remote job may exist and may still be charged
    NOT_SENT = "not_sent"  #: no remote job yet; a run will send it, and it will cost then
    FREE = "free"  #: not charged, and cannot be as things stand


@dataclass
class Tally:
    """A group of jobs added up."""

    jobs: int = 0
    billed_jobs: int = 0
    billed_micro: int = 0
    in_flight_jobs: int = 0
    in_flight_micro: int = 0
    not_sent_jobs: int = 0  #: pending or waiting: no remote job yet (or held back by the budget)
    not_sent_micro: int = 0  #: their estimated price: what sending them will cost
    free_jobs: int = 0
    free_attempts: int = 0  #: remote jobs Krea failed or cancelled (from the events)
    clips: int = 0  #: billed jobs other than orphans
    seconds: Decimal = Decimal(0)  #: seconds of the clips whose length is known
    unknown_length_micro: int = 0  #: price of the clips whose length is unknown

    def add(self, row: JobRow, free_attempts: int = 0, jobs: int = 1) -> None:
        """Count one job (and its free attempts), or ``jobs`` alike whose summed price ``row``
        carries (a ``JobGroup``'s sample)."""
        self.jobs += jobs
        self.free_attempts += free_attempts
        kind = bucket(row)
        if kind is Bucket.BILLED:
            self._bill(row, jobs)
        elif kind is Bucket.IN_FLIGHT:
            self.in_flight_jobs += jobs
            self.in_flight_micro += row.price_micro
        elif kind is Bucket.NOT_SENT:
            self.not_sent_jobs += jobs
            self.not_sent_micro += row.price_micro
        else:
            self.free_jobs += jobs

    def _bill(self, row: JobRow, jobs: int) -> None:
        self.billed_jobs += jobs
        self.billed_micro += row.price_micro
        if row.state is S.ORPHAN:
            return
        self.clips += jobs
        if row.seconds is None:
            self.unknown_length_micro += row.price_micro
        else:  # exact: Decimal adds and multiplies these without rounding
            self.seconds += Decimal(str(row.seconds)) * jobs

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
            "not_sent_jobs": self.not_sent_jobs,
            **money("not_sent", self.not_sent_micro),
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
class Figures:
    """Everything a report shows, added up."""

    totals: Tally
    by_batch: dict[str, Tally]
    by_model: dict[str, Tally]
    by_status: dict[JobState, Tally]
    by_day: list[Day]
    orphans: list[Orphan]
    charges: list[Charge] = field(default_factory=list)  #: every charge (row by row only)
    chart: list[Charge] = field(default_factory=list)  #: the charges the spend chart draws
    #: maybe ours, maybe another client's: itemised, never added to the figures above
    possible_duplicates: list[PossibleDuplicateRow] = field(default_factory=list)
    foreign_jobs: int = 0  #: jobs on the account another client made: counted, nothing more

    @property
    def orphan_billed_micro(self) -> int:
        return sum(o.price_micro for o in self.orphans if o.billed)

    @property
    def possible_duplicate_micro(self) -> int:
        """The most the possible duplicates can cost if every one is ours (kept apart)."""
        return sum(if_ours_micro(d) for d in self.possible_duplicates)


def bucket(row: JobRow) -> Bucket:
    """Billed, in flight, not sent or free (rules in the module docstring)."""
    if row.state in _COMPLETED_STATES:
        return Bucket.BILLED
    if row.state in CURRENT_REMOTE and row.remote_status == "completed":
        return Bucket.BILLED
    if row.state is S.ORPHAN or row.state is S.SUBMITTED:
        return Bucket.FREE if row.remote_status in REMOTE_TERMINAL else Bucket.IN_FLIGHT
    if row.state in UNSENT:
        return Bucket.NOT_SENT if row.planned else Bucket.FREE
    return Bucket.IN_FLIGHT if row.state in IN_FLIGHT else Bucket.FREE


@dataclass
class _Groups:
    """The tallies of a report: the total, and one per batch, model and state."""

    totals: Tally = field(default_factory=Tally)
    by_batch: dict[str, Tally] = field(default_factory=dict)
    by_model: dict[str, Tally] = field(default_factory=dict)
    by_status: dict[JobState, Tally] = field(default_factory=dict)

    def of(self, batch: str, model: str, state: JobState) -> tuple[Tally, ...]:
        """The four tallies a job of ``batch``, ``model`` and ``state`` counts in."""
        return (
            self.totals,
            self.by_batch.setdefault(batch, Tally()),
            self.by_model.setdefault(model, Tally()),
            self.by_status.setdefault(state, Tally()),
        )

    def figures(self, **rest: Any) -> Figures:
        """The tallies in report order, with the ``rest`` of the Figures."""
        return Figures(
            totals=self.totals,
            by_batch=dict(sorted(self.by_batch.items())),
            by_model=dict(sorted(self.by_model.items())),
            by_status={s: self.by_status[s] for s in JobState if s in self.by_status},
            **rest,
        )


def account(
    jobs: Iterable[JobRow],
    events: Iterable[EventRow],
    possible_duplicates: Iterable[PossibleDuplicateRow] = (),
    foreign_jobs: int = 0,
) -> Figures:
    """Add ``jobs`` up, with their ``events`` for free attempts and billing times.

    ``possible_duplicates`` and ``foreign_jobs`` are carried alongside, never added in. The
    reference for :func:`account_groups`, which gives the same figures from the ledger's sums.
    """
    rows, history = list(jobs), list(events)
    attempts = free_attempts(history)
    groups = _Groups()
    for row in rows:
        for tally in groups.of(row.batch, row.model, row.state):
            tally.add(row, attempts[row.key])
    billed = [row for row in rows if bucket(row) is Bucket.BILLED]
    spent = charges(billed, billing_times(history))
    return groups.figures(
        by_day=days(spent, history, {row.key for row in rows}),
        orphans=[_orphan(row) for row in rows if row.state is S.ORPHAN],
        charges=spent,
        chart=chart_points(spent),
        possible_duplicates=list(possible_duplicates),
        foreign_jobs=foreign_jobs,
    )


def account_groups(
    jobs: Iterable[JobGroup],
    attempts: Iterable[AttemptGroup],
    billed_days: Iterable[DayGroup],
    orphans: Iterable[JobRow],
    chart: Sequence[Charge] = (),
    possible_duplicates: Iterable[PossibleDuplicateRow] = (),
    foreign_jobs: int = 0,
) -> Figures:
    """The figures of :func:`account`, from jobs and events the ledger has added up.

    ``billed_days`` may hold groups that are not billed (``bucket`` decides, as for rows);
    ``chart`` is the spend chart's points (``charges`` stays empty: no job is read alone).
    """
    groups = _Groups()
    for group in jobs:
        for tally in groups.of(group.batch, group.model, group.state):
            tally.add(group.sample, jobs=group.jobs)
    free: Counter[str] = Counter()
    for attempt in attempts:
        for tally in groups.of(attempt.batch, attempt.model, attempt.state):
            tally.free_attempts += attempt.attempts
        free[day_of(attempt.day, attempt.at)] += attempt.attempts
    billed, micro = Counter[str](), Counter[str]()
    for day in billed_days:
        if bucket(day.sample) is Bucket.BILLED:
            billed[day_of(day.day, day.at)] += day.jobs
            micro[day_of(day.day, day.at)] += day.price_micro
    return groups.figures(
        by_day=day_list(billed, micro, free),
        orphans=[_orphan(row) for row in orphans],
        chart=list(chart),
        possible_duplicates=list(possible_duplicates),
        foreign_jobs=foreign_jobs,
    )


def is_free(duplicate: PossibleDuplicateRow) -> bool:
    """Krea failed or cancelled it when last seen: it costs nothing, ours or not."""
    return duplicate.remote_status in _FREE_REMOTE


def if_ours_micro(duplicate: PossibleDuplicateRow) -> int:
    """What a possible duplicate adds to the bill if it is ours: its price, unless it is free."""
    return 0 if is_free(duplicate) else duplicate.price_micro


def possible_duplicate_dict(duplicate: PossibleDuplicateRow) -> dict[str, Any]:
    """A possible duplicate as plain data (see ``reports``)."""
    return {
        "remote_id": duplicate.remote_id,
        "batch": duplicate.batch,
        "model": duplicate.model,
        "remote_status": duplicate.remote_status,
        **money("price_if_ours", duplicate.price_micro),
        "free": is_free(duplicate),
        "created_at": duplicate.created_at,
        "note": duplicate.note,
    }


def ratio_micro(micro: int, count: int | Decimal) -> int | None:
    """``micro / count`` rounded half up to whole micro-USD; None when ``count`` is zero."""
    if not count:
        return None
    return int((Decimal(micro) / Decimal(count)).to_integral_value(rounding=ROUND_HALF_UP))


def money(name: str, micro: int | None) -> dict[str, Any]:
    """``{name}_micro`` (the number to compute with) and ``{name}_usd`` (derived, for reading)."""
    return {f"{name}_micro": micro, f"{name}_usd": None if micro is None else usd(micro)}


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
