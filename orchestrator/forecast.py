"""When in-flight jobs will finish, predicted from how long the same model's jobs took (pure).

Once the durations of a model are known, the poller spends about one ``GET /jobs`` sweep per ten
jobs on it (the :class:`Allowance`; before that it sweeps every ``poll_min_s``, see ``poller``).
Spread evenly, that is one sweep every several seconds at full concurrency, and a finished job
waits half an interval on average to be noticed: no better than the naive 5-second poller. Spent
at the moments jobs should finish instead, most jobs are noticed within a second. Everything is
learned from sweeps, on Krea's clock (its ``created_at`` / ``completed_at``):

* **skew**: our API clock minus Krea's. A timestamp in an answer is at most Krea's "now" when it
  answered, so ``answered - timestamp`` bounds the skew from above; the smallest bound seen is
  kept. It is tight as soon as one sweep closely follows a POST or a completion.
* **start**: when a job got a concurrency slot. A job that was not ``backlogged`` when Krea
  answered its POST started at ``created_at``. A backlogged one starts when a slot frees, which is
  when one of the account's jobs ends, and Krea starts them in submission order: the jobs a sweep
  finds newly started are matched, oldest first, with the endings the same sweep finds, earliest
  first (never before the job was last seen waiting).
* **durations**: ``completed_at - start`` of completed jobs, the last ``keep`` per model.

A job's predicted end is its start plus the median of the durations it has not yet outlived (the
conditional median). The sweep after a prediction finds the job finished or, if not, the next
prediction moves later: a bisection of the remaining durations. A job that outlived every one is
looked at again after as long as it has overrun (doubling). A backlogged job has no prediction,
nor has one of a model with no finished job yet: the poller's own timer covers those.

:class:`Allowance` keeps the sweeps the forecast asks for within a budget of requests per job
(0.1 each: with the sweeps made before any duration is known, a 400-job batch stays under 0.2
status requests per job; ``make bench``, figure 3).
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.answers import RemoteJob
from orchestrator.clock import parse_utc
from orchestrator.jobs import REMOTE_TERMINAL, RemoteStatus

BACKLOGGED = RemoteStatus.BACKLOGGED.value
#: Shortest wait (Krea seconds) before looking again at a job that outlived every duration.
RECHECK_S = 1.0


def epoch_s(stamp: str | None) -> float | None:
    """Krea's ISO timestamp as epoch seconds (Krea's clock); None when absent or unreadable."""
    try:
        return parse_utc(stamp).timestamp() if stamp else None
    except ValueError:
        return None


@dataclass
class _Job:
    """What the forecast knows of one in-flight job; times on Krea's clock (epoch seconds)."""

    model: str
    created_s: float
    start_s: float | None  #: None while it may still be waiting in the backlog
    alive_s: float  #: last moment it was known unfinished (or waiting, while start_s is None)


@dataclass
class Forecast:
    """Predicted ends of in-flight jobs, learned from sweeps (see the module docstring)."""

    keep: int = 64  #: durations remembered per model
    quantile: float = 0.5  #: of the durations a job has not outlived
    skew_s: float | None = None  #: our API clock minus Krea's clock
    swept_s: float = float("-inf")  #: Krea time of the last sweep
    _jobs: dict[str, _Job] = field(default_factory=dict)
    _durations: dict[str, deque[float]] = field(default_factory=dict)
    _sorted: dict[str, list[float]] = field(default_factory=dict)

    def track(self, remote_id: str, model: str, status: str | None, created_at: str) -> bool:
        """Follow a job from the status Krea gave it (its POST answer); False if already known."""
        created = epoch_s(created_at)
        if remote_id in self._jobs or created is None:
            return False
        start = None if status == BACKLOGGED else created
        self._jobs[remote_id] = _Job(model, created, start, created)
        return True

    def keep_only(self, remote_ids: Iterable[str]) -> None:
        """Forget jobs no longer in flight by any other route (moved by someone else)."""
        wanted = set(remote_ids)
        self._jobs = {k: v for k, v in self._jobs.items() if k in wanted}

    def observe(self, seen: Mapping[str, RemoteJob], answered_s: float, newest_s: float) -> None:
        """Learn from one sweep: ``seen`` holds the tracked jobs it found.

        ``newest_s`` is the latest Krea timestamp on the sweep's first page, which our clock
        read ``answered_s`` once it arrived.
        """
        bound = answered_s - newest_s
        self.skew_s = bound if self.skew_s is None else min(self.skew_s, bound)
        krea_now = self.swept_s = answered_s - self.skew_s
        ends = sorted(
            end
            for job in seen.values()
            if job.status in REMOTE_TERMINAL
            and (end := epoch_s(job.completed_at or job.created_at)) is not None
        )
        self._match_starts(seen, ends)
        for remote_id, remote in seen.items():
            job = self._jobs.get(remote_id)
            if job is None:
                continue
            if remote.status in REMOTE_TERMINAL:
                self._finished(job, remote)
                del self._jobs[remote_id]
            else:
                job.alive_s = krea_now

    def ends(self) -> list[float]:
        """Predicted ends after the last sweep, on our API clock, earliest first.

        An end may already be past (the job was not finished when last seen, a moment before
        it): the next sweep is then due at once. A job the last sweep did not see (a straggler
        beyond its pages) and predicted before it is left to the by-id checks.
        """
        if self.skew_s is None:
            return []
        skew, swept = self.skew_s, self.swept_s
        predicted = (self._predict(job) for job in self._jobs.values())
        return sorted(end + skew for end in predicted if end is not None and end > swept)

    def unpredicted(self) -> int:
        """Started jobs without a predicted end: no duration of their model is known yet."""
        return sum(
            1
            for job in self._jobs.values()
            if job.start_s is not None and self._predict(job) is None
        )

    def _predict(self, job: _Job) -> float | None:
        """Krea time of the job's end: start + conditional ``quantile`` of its model's durations.

        A job that outlived them all is looked at again after as long as it has overrun
        (doubling), so a slow one costs a few sweeps, not one per interval.
        """
        durations = self._sorted.get(job.model)
        if job.start_s is None or not durations:
            return None
        ran = job.alive_s - job.start_s
        outlived = bisect.bisect_right(durations, ran)
        left = len(durations) - outlived
        if left <= 0:
            return job.alive_s + max(RECHECK_S, ran - durations[-1])
        return job.start_s + durations[outlived + int(self.quantile * (left - 1))]

    def _match_starts(self, seen: Mapping[str, RemoteJob], ends: list[float]) -> None:
        """Backlogged jobs seen started: the oldest took the slot the earliest ending freed."""
        started = sorted(
            (
                job
                for remote_id, job in self._jobs.items()
                if job.start_s is None
                and remote_id in seen
                and seen[remote_id].status != BACKLOGGED
            ),
            key=lambda job: job.created_s,
        )
        for index, job in enumerate(started):
            freed = ends[index] if index < len(ends) else job.alive_s
            job.start_s = max(job.alive_s, freed)

    def _finished(self, job: _Job, remote: RemoteJob) -> None:
        end = epoch_s(remote.completed_at)
        if remote.status != "completed" or job.start_s is None or end is None:
            return
        duration = end - job.start_s
        if duration <= 0:
            return
        durations = self._durations.setdefault(job.model, deque(maxlen=self.keep))
        durations.append(duration)
        self._sorted[job.model] = sorted(durations)


def plan_sweep(
    ends: Sequence[float], gap_s: float, *, not_before: float, horizon: float = 3.0
) -> float | None:
    """When to sweep to catch the predicted ``ends`` (sorted) with the least total wait.

    Sweeps are at least ``gap_s`` apart (and none before ``not_before``), so sweeping at the very
    first end of a cluster can leave the rest of it waiting a whole gap. Each end within a gap of
    the first possible sweep is a candidate, scored by the waits of the ends within ``horizon``
    gaps when the sweeps after it follow greedily (at the next uncaught end, a gap later at the
    earliest); the earliest best candidate wins.
    """
    if not ends:
        return None
    first = max(ends[0], not_before)
    window = list(ends[: bisect.bisect_right(ends, first + horizon * gap_s)])
    prefix = list(itertools.accumulate(window, initial=0.0))
    candidates = [max(end, not_before) for end in window if end <= first + gap_s]
    return min(candidates, key=lambda at: _total_wait(window, prefix, at, gap_s))


def _total_wait(ends: list[float], prefix: list[float], at: float, gap_s: float) -> float:
    """Summed waits of ``ends`` for sweeps from ``at`` on, each following greedily."""
    wait, index = 0.0, 0
    while index < len(ends):
        caught = bisect.bisect_right(ends, at, lo=index)
        wait += at * (caught - index) - (prefix[caught] - prefix[index])
        index = caught
        if index < len(ends):
            at = max(at + gap_s, ends[index])
    return wait


@dataclass
class Allowance:
    """Status requests the poller may still spend: ``per_job`` for each job it has followed."""

    per_job: float = 0.1
    initial: float = 3.0
    earned: float = 0.0
    spent: int = 0

    def earn(self, jobs: int = 1) -> None:
        self.earned += self.per_job * jobs

    def spend(self, requests: int = 1) -> None:
        self.spent += requests

    @property
    def left(self) -> float:
        return self.initial + self.earned - self.spent
