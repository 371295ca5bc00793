"""When the poller sweeps the job list again: a pure decision (:func:`next_delay`), never more
often than ``poll_min_s`` nor less often than ``poll_max_s``. What it saves is the account's
requests per second, and one list page covers up to 1,000 jobs: a sweep every ``poll_min_s``
costs the account almost nothing whether the batch has 5 jobs or 50,000. So:

* while a running job may end at any moment for all we know (no duration of its model is known
  yet), every ``poll_min_s``: a completion is noticed within that plus one sweep's duration,
  at any batch size;
* otherwise just after the next end :mod:`forecast` predicts from the durations of the same
  model's jobs. Finished jobs are then noticed within about ``poller.SWEEP_LAG_S``. These
  sweeps are paid from the :class:`~orchestrator.forecast.Allowance` of status requests per
  job (a large batch's ends are dense: that keeps its sweeps to a few per hundred jobs): while
  it lasts they may come every ``poll_min_s``; once it is spent they still come at predicted
  ends, but no closer together than the rate timer's interval (:func:`aimed_gap`), so ends
  spread evenly are swept several at a time while a batch's waves are swept as they end (the
  timer alone would drift off the waves and sleep through the next one);
* otherwise on a timer: several completions per sweep at the completion rate observed so far,
  sooner while Krea's backlog for us could run dry; with only backlogged jobs and no completion
  yet, the interval grows geometrically. When every running job has a predicted end, the timer
  is only a safety net (``poll_max_s``).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.pipeline import Tuning


@dataclass
class Pace:
    """What the next sweep's timing is decided from."""

    completion_rate: float = 0.0  #: jobs finished per API second (moving average)
    empty_sweeps: int = 0
    #: a running job may end at any moment for all we know: no duration of its model is known
    unknown: bool = False
    next_end_in_s: float | None = None  #: until just after the next predicted end (if affordable)
    all_predicted: bool = False  #: every running job has a predicted end: the timer is a safety net

    def learn(self, finished: int, interval: float) -> None:
        """A sweep found ``finished`` jobs, ``interval`` API seconds after the one before:
        update the completion rate (jobs per API second, a moving average)."""
        self.empty_sweeps = 0 if finished else self.empty_sweeps + 1
        if interval <= 0 or not (finished or self.completion_rate):
            return
        sample = finished / interval
        rate = self.completion_rate
        self.completion_rate = sample if rate == 0 else 0.7 * rate + 0.3 * sample


def next_delay(pace: Pace, *, backlogged: int, tuning: Tuning) -> float:
    """Seconds until the next sweep (pure; see the module docstring)."""
    if pace.unknown:
        delay = tuning.poll_min_s
    elif pace.all_predicted:
        delay = tuning.poll_max_s
    elif pace.completion_rate <= 0:
        delay = tuning.poll_min_s * 1.5**pace.empty_sweeps
    else:
        delay = tuning.completions_per_sweep / pace.completion_rate
        if backlogged:
            delay = min(delay, 0.5 * backlogged / pace.completion_rate)
    if pace.next_end_in_s is not None:
        delay = min(delay, pace.next_end_in_s)
    return min(tuning.poll_max_s, max(tuning.poll_min_s, delay))


def aimed_gap(left: float, pace: Pace, tuning: Tuning) -> float:
    """The shortest time between sweeps aimed at predicted ends: ``poll_min_s`` while the
    allowance has a request ``left``; once it is spent, the rate timer's interval (several
    completions per sweep at the observed rate), at most ``poll_max_s``."""
    if left >= 1 or pace.completion_rate <= 0:
        return tuning.poll_min_s
    economy = tuning.completions_per_sweep / pace.completion_rate
    return min(tuning.poll_max_s, max(tuning.poll_min_s, economy))
