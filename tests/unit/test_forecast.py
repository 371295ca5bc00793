"""Predicting job ends from observed durations, and placing sweeps just after them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.answers import RemoteJob
from orchestrator.clock import format_utc
from orchestrator.forecast import Allowance, Forecast, plan_sweep

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
MODEL = "kling/kling-2.5"
SKEW = 1000.0  # our API clock reads Krea's epoch seconds minus the epoch, plus this


def stamp(krea_s: float) -> str:
    """Krea's timestamp ``krea_s`` seconds after EPOCH."""
    return format_utc(EPOCH + timedelta(seconds=krea_s))


def ours(krea_s: float) -> float:
    """Our API clock at Krea time ``krea_s``."""
    return (EPOCH + timedelta(seconds=krea_s)).timestamp() + SKEW


def job(job_id: str, status: str, created: float, ended: float | None = None) -> RemoteJob:
    return RemoteJob(job_id, status, stamp(created), None if ended is None else stamp(ended))


def sweep(forecast: Forecast, at: float, *jobs: RemoteJob) -> None:
    """A sweep answered at Krea time ``at`` (no delay) that found ``jobs``."""
    newest = max(j.completed_at or j.created_at for j in jobs)
    newest_s = datetime.fromisoformat(newest.replace("Z", "+00:00")).timestamp()
    forecast.observe({j.job_id: j for j in jobs}, ours(at), newest_s)


def learned(duration: float = 60.0) -> Forecast:
    """A forecast that has seen one job of MODEL run ``duration`` seconds from its POST."""
    forecast = Forecast()
    forecast.track("a", MODEL, "queued", stamp(0))
    sweep(forecast, duration, job("a", "completed", 0, duration))
    return forecast


def test_a_job_that_started_at_once_is_predicted_to_take_what_its_model_took() -> None:
    """Not backlogged at its POST: predicted end = created_at + observed duration, on our clock."""
    forecast = learned(60.0)
    forecast.track("b", MODEL, "queued", stamp(100))
    assert forecast.ends() == [pytest.approx(ours(160))]
    assert forecast.skew_s == pytest.approx(ours(0) - EPOCH.timestamp())


def test_backlogged_jobs_start_when_the_oldest_running_jobs_end() -> None:
    """Backlogged jobs seen started are matched, oldest first, with the ends seen in order."""
    forecast = learned(60.0)
    forecast.track("r1", MODEL, "queued", stamp(100))
    forecast.track("r2", MODEL, "queued", stamp(105))
    forecast.track("w1", MODEL, "backlogged", stamp(101))
    forecast.track("w2", MODEL, "backlogged", stamp(102))
    sweep(
        forecast,
        166,
        job("r1", "completed", 100, 160),
        job("r2", "completed", 105, 165),
        job("w2", "processing", 102),
        job("w1", "processing", 101),
    )
    assert forecast.ends() == [
        pytest.approx(ours(220)),  # w1 took r1's slot at 160
        pytest.approx(ours(225)),  # w2 took r2's slot at 165
    ]


def test_a_job_still_backlogged_has_no_prediction() -> None:
    """A job waiting in Krea's backlog cannot end before it starts: no prediction yet."""
    forecast = learned()
    forecast.track("w", MODEL, "backlogged", stamp(100))
    sweep(forecast, 130, job("w", "backlogged", 100))
    assert forecast.ends() == []
    assert forecast.unpredicted() == 0


def test_a_job_that_outlived_some_durations_is_predicted_later() -> None:
    """The median of the durations not yet outlived: a bisection of what is left."""
    forecast = Forecast()
    for i, duration in enumerate([60.0, 70.0, 80.0, 90.0, 100.0]):
        forecast.track(f"d{i}", MODEL, "queued", stamp(0))
        sweep(forecast, duration, job(f"d{i}", "completed", 0, duration))
    forecast.track("x", MODEL, "queued", stamp(1000))
    assert forecast.ends() == [pytest.approx(ours(1080))]
    sweep(forecast, 1081, job("x", "processing", 1000))
    assert forecast.ends() == [pytest.approx(ours(1090))]


def test_a_job_that_outlived_every_duration_is_rechecked_after_its_overrun() -> None:
    """Past the longest known duration, the next look waits as long as the job has overrun."""
    forecast = learned(60.0)
    forecast.track("x", MODEL, "queued", stamp(100))
    sweep(forecast, 180, job("x", "processing", 100))  # 20 s past the 60 s seen
    assert forecast.ends() == [pytest.approx(ours(200))]
    assert forecast.unpredicted() == 0


def test_an_end_due_just_after_a_sweep_stays_due() -> None:
    """Seen unfinished a moment before its predicted end, a job is still swept for at once."""
    forecast = learned(60.0)
    forecast.track("x", MODEL, "queued", stamp(100))
    sweep(forecast, 159.9, job("x", "processing", 100))
    assert forecast.ends() == [pytest.approx(ours(160))]


def test_a_straggler_the_last_sweep_missed_is_left_to_by_id_checks() -> None:
    """A job not on the last sweep's pages, predicted before it, does not keep sweeps coming."""
    forecast = learned(60.0)
    forecast.track("x", MODEL, "queued", stamp(100))
    forecast.track("y", MODEL, "queued", stamp(150))
    sweep(forecast, 170, job("y", "processing", 150))
    assert forecast.ends() == [pytest.approx(ours(210))]


def test_a_model_with_no_finished_job_yet_has_no_prediction() -> None:
    """Durations are per model: another model's jobs say nothing about this one."""
    forecast = learned()
    forecast.track("v", "google/veo-3", "queued", stamp(100))
    assert forecast.ends() == []
    assert forecast.unpredicted() == 1


def test_skew_keeps_the_tightest_bound() -> None:
    """A sweep answered long after its newest timestamp does not loosen the skew."""
    forecast = learned(60.0)
    skew = forecast.skew_s
    forecast.track("b", MODEL, "queued", stamp(100))
    forecast.observe({"b": job("b", "processing", 100)}, ours(130), ours(100) - SKEW)
    assert forecast.skew_s == skew


def test_failed_jobs_teach_no_duration() -> None:
    """A job failed early says nothing about how long a good one takes."""
    forecast = Forecast()
    forecast.track("f", MODEL, "queued", stamp(0))
    sweep(forecast, 5, job("f", "failed", 0, 5))
    forecast.track("b", MODEL, "queued", stamp(10))
    assert forecast.ends() == []


def test_a_lone_end_is_swept_at_once() -> None:
    """One predicted end: sweep right at it."""
    assert plan_sweep([100.0], 2.0, not_before=0.0) == 100.0


def test_a_cluster_wider_than_the_gap_is_caught_in_two_sweeps() -> None:
    """Ends over 2.5 s, sweeps 2 s apart: the first sweep waits so that the second gets the rest."""
    ends = [100.0 + 0.1 * i for i in range(26)]
    first = plan_sweep(ends, 2.0, not_before=0.0)
    assert first is not None
    assert 100.0 < first <= 100.5 + 1e-9
    assert first + 2.0 >= ends[-1]


def test_no_sweep_before_the_gap_allows() -> None:
    """Ends already due are caught by the first sweep the minimum interval allows."""
    assert plan_sweep([100.0, 100.5], 2.0, not_before=101.0) == 101.0
    assert plan_sweep([], 2.0, not_before=0.0) is None


def test_the_allowance_is_a_share_per_job_minus_what_was_spent() -> None:
    """Each followed job earns per_job requests; each request spends one."""
    allowance = Allowance(per_job=0.2, initial=1.0)
    allowance.earn(10)
    allowance.spend(2)
    assert allowance.left == pytest.approx(1.0)
