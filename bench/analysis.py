"""Pure arithmetic on what was recorded: utilisation, recovery, latencies, rates, percentiles.

Nothing here does I/O, so every figure in the table can be traced to one small function and
the numbers it was given. Times are epoch seconds on the simulator's (API) clock unless a name
says ``real``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.simdata import ClockMap, epoch_s


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def utilisation(account: dict[str, Any], concurrency: int) -> float | None:
    """Average running jobs / concurrency, from the simulator's own integral of running jobs.

    ``span_seconds`` runs from the account's first job to its last idle moment, so the ramp up
    and the drain at the end both count, as a user waiting for the batch would count them.
    """
    span = float(account.get("span_seconds") or 0.0)
    if span <= 0:
        return None
    return float(account["running_seconds"]) / (concurrency * span)


@dataclass(frozen=True)
class Interval:
    """One job's stay in a concurrency slot."""

    start_s: float
    end_s: float


def running_intervals(jobs: Iterable[dict[str, Any]], now_s: float) -> list[Interval]:
    """Every job that started, from start to completion (or ``now_s`` if still running)."""
    out = []
    for job in jobs:
        if job.get("started_at"):
            end = epoch_s(job["completed_at"]) if job.get("completed_at") else now_s
            out.append(Interval(epoch_s(job["started_at"]), end))
    return out


def timeline(
    intervals: Sequence[Interval], start_s: float, end_s: float, bucket_s: float
) -> list[float]:
    """Average running jobs in each ``bucket_s`` bucket of [start_s, end_s)."""
    count = max(1, math.ceil((end_s - start_s) / bucket_s))
    busy = [0.0] * count
    for iv in intervals:
        first = max(0, int((iv.start_s - start_s) // bucket_s))
        last = min(count - 1, int((iv.end_s - start_s) // bucket_s))
        for index in range(first, last + 1):
            lo = max(iv.start_s, start_s + index * bucket_s)
            hi = min(iv.end_s, start_s + (index + 1) * bucket_s)
            busy[index] += max(0.0, hi - lo)
    return [b / bucket_s for b in busy]


def sustained_from(levels: Sequence[float], threshold: float) -> int | None:
    """Index of the first bucket after which every bucket is at or above ``threshold``."""
    for index in range(len(levels)):
        if all(level >= threshold for level in levels[index:]):
            return index
    return None


def recovery_s(
    jobs: Sequence[dict[str, Any]],
    concurrency: int,
    since_s: float,
    bucket_s: float,
    threshold: float = 0.9,
) -> float | None:
    """API seconds from ``since_s`` until utilisation stays >= ``threshold`` for good.

    The window ends when the last job starts: after that Krea's backlog is empty and running
    jobs can only drain, which no client can prevent. None when utilisation never recovers.
    """
    starts = [epoch_s(j["started_at"]) for j in jobs if j.get("started_at")]
    if not starts:
        return None
    end = max(starts)
    intervals = running_intervals(jobs, end)
    levels = [lvl / concurrency for lvl in timeline(intervals, since_s, end, bucket_s)]
    index = sustained_from(levels[:-1] or levels, threshold)  # the last bucket is partial
    return None if index is None else index * bucket_s


def latencies(
    sim_jobs: Sequence[dict[str, Any]], done: Iterable[tuple[str, float]], clock: ClockMap
) -> list[float]:
    """Completion → verified file, in API seconds, for each (remote_id, wall epoch s) pair.

    ``completed_at`` is on the simulator's clock; the moment the file was done (the ledger's
    wall-clock ``done_at``, or the naive client's) is mapped onto it with ``clock``.
    """
    completed = {
        j["job_id"]: epoch_s(j["completed_at"])
        for j in sim_jobs
        if j["status"] == "completed" and j.get("completed_at")
    }
    return [
        clock.to_sim(done_wall_s) - completed[remote_id]
        for remote_id, done_wall_s in done
        if remote_id in completed
    ]


def whole_window_rate(times_real_s: Sequence[float]) -> float | None:
    """Events per second over the longest whole number of seconds from the first event.

    A limiter that releases a burst each window would look faster than its limit measured as
    (n - 1) / (last - first); counting in whole seconds from the first event does not.
    """
    if len(times_real_s) < 2:
        return None
    ordered = sorted(times_real_s)
    window = math.floor(ordered[-1] - ordered[0])
    if window < 1:
        return None
    return sum(1 for t in ordered if t < ordered[0] + window) / window


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b
