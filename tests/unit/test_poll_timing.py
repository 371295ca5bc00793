"""When the poller sweeps next: every poll_min while a running job's end is unknown, just after
a predicted end, else on its adaptive timer."""

from __future__ import annotations

import pytest

from orchestrator.pipeline import Tuning
from orchestrator.sweep_schedule import Pace, next_delay

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
