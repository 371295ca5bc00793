"""When the poller sweeps next: every poll_min while a running job's end is unknown, just after
a predicted end, else on its adaptive timer."""

from __future__ import annotations

import pytest

from orchestrator.pipeline import Tuning
from orchestrator.sweep_schedule import Pace, aimed_gap, next_delay

TUNING = Tuning(poll_min_s=2.0, poll_max_s=30.0, completions_per_sweep=8.0)


def test_a_predicted_end_brings_the_sweep_forward() -> None:
    """A predicted end sooner than the timer decides the next sweep."""
    pace = Pace(completion_rate=0.5, next_end_in_s=3.5)
    assert next_delay(pace, backlogged=0, tuning=TUNING) == pytest.approx(3.5)


def test_no_sweep_sooner_than_poll_min_even_for_a_prediction() -> None:
    """--poll-min stays the shortest interval whatever the forecast says."""
    pace = Pace(completion_rate=0.5, next_end_in_s=0.1)
    assert next_delay(pace, backlogged=0, tuning=TUNING) == pytest.approx(2.0)


def test_with_every_job_predicted_the_timer_is_only_a_safety_net() -> None:
    """All running jobs have predicted ends: nothing else can finish, the timer waits poll_max."""
    pace = Pace(completion_rate=0.5, next_end_in_s=50.0, all_predicted=True)
    assert next_delay(pace, backlogged=0, tuning=TUNING) == pytest.approx(30.0)


def test_without_predictions_the_rate_timer_decides() -> None:
    """No forecast: several completions per sweep at the observed completion rate."""
    pace = Pace(completion_rate=0.5)
    assert next_delay(pace, backlogged=0, tuning=TUNING) == pytest.approx(16.0)


@pytest.mark.parametrize("empty_sweeps", [0, 5, 40])
def test_while_a_running_job_may_end_any_moment_sweeps_come_every_poll_min(
    empty_sweeps: int,
) -> None:
    """No duration of its model known: however long the wait so far, and whatever else the
    pace says, the next sweep is poll_min after this one (noticed within poll_min + a sweep)."""
    paces = [
        Pace(unknown=True, empty_sweeps=empty_sweeps),
        Pace(unknown=True, completion_rate=0.01, next_end_in_s=25.0),
    ]
    for pace in paces:
        assert next_delay(pace, backlogged=0, tuning=TUNING) == pytest.approx(2.0)


def test_before_any_completion_the_interval_grows_geometrically() -> None:
    """Only backlogged jobs, nothing finished yet: poll_min, then 1.5 times longer after each
    empty sweep (a backlogged job cannot end before a running one frees its slot)."""
    assert next_delay(Pace(empty_sweeps=2), backlogged=0, tuning=TUNING) == pytest.approx(4.5)


def test_aimed_sweeps_come_every_poll_min_while_the_allowance_lasts() -> None:
    assert aimed_gap(1.0, Pace(completion_rate=0.1), TUNING) == pytest.approx(2.0)


def test_once_the_allowance_is_spent_aimed_sweeps_are_spaced_like_the_rate_timer() -> None:
    """Spent, sweeps still land where jobs should end (a timer drifts off a batch's waves and
    sleeps through the next one: issue 13's weak spot), but no closer together than the rate
    timer's interval: ends spread evenly (one every 2 s) are swept 8 at a time, as before."""
    assert aimed_gap(0.5, Pace(completion_rate=0.5), TUNING) == pytest.approx(16.0)
    assert aimed_gap(-4.0, Pace(completion_rate=10.0), TUNING) == pytest.approx(2.0), "a wave"
    assert aimed_gap(0.0, Pace(completion_rate=0.01), TUNING) == pytest.approx(30.0)
    assert aimed_gap(0.0, Pace(), TUNING) == pytest.approx(2.0), "no rate yet: poll_min"
