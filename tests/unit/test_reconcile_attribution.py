"""Attribution of unclaimed remote jobs to ambiguous POSTs: exact when possible, never a guess."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.reconcile import Attempt, Candidate, attribute

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(remote_id: str, seconds: float) -> Candidate:
    return Candidate(remote_id, at(seconds), "queued", at(seconds).isoformat())


def test_one_ambiguous_post_and_one_new_job_match() -> None:
    """The common case: one unanswered POST, one unclaimed job after its floor."""
    verdict = attribute([Attempt("a", at(0))], [job("r1", 1)])
    assert verdict.matched == {"a": job("r1", 1)}
    assert not verdict.not_created
    assert not verdict.unattributable


def test_no_candidate_means_not_created() -> None:
    """Nothing newer than the floor: the POST created nothing and may be sent again."""
    verdict = attribute([Attempt("a", at(10))], [job("old", 5)])
    assert verdict.not_created == ["a"]
    assert verdict.unattributable == []  # older than every floor: not ours, left alone


def test_floors_separate_two_attempts() -> None:
    """A job older than the second floor can only be the first attempt's."""
    verdict = attribute([Attempt("a", at(0)), Attempt("b", at(5))], [job("r1", 2), job("r2", 6)])
    assert verdict.matched == {"a": job("r1", 2), "b": job("r2", 6)}


def test_two_attempts_one_window_are_not_guessed() -> None:
    """Two unanswered POSTs with the same floor and two jobs: cancel both, resend both."""
    verdict = attribute([Attempt("a", at(0)), Attempt("b", at(0))], [job("r1", 1), job("r2", 2)])
    assert verdict.matched == {}
    assert sorted(c.remote_id for c in verdict.unattributable) == ["r1", "r2"]
    assert sorted(verdict.contested) == ["a", "b"]


def test_two_attempts_one_job_is_contested() -> None:
    """One job either POST could have made: neither may claim it."""
    verdict = attribute([Attempt("a", at(0)), Attempt("b", at(0))], [job("r1", 1)])
    assert verdict.matched == {}
    assert sorted(verdict.contested) == ["a", "b"]


def test_two_jobs_for_one_attempt_are_both_refused() -> None:
    """One POST cannot create two jobs: one is foreign, and we cannot tell which."""
    verdict = attribute([Attempt("a", at(0))], [job("r1", 1), job("r2", 2)])
    assert verdict.matched == {}
    assert verdict.contested == ["a"]
    assert len(verdict.unattributable) == 2


def test_no_floor_accepts_any_job() -> None:
    """An attempt made before any job was known can own any unclaimed job."""
    verdict = attribute([Attempt("a", None)], [job("r1", -1000)])
    assert verdict.matched == {"a": job("r1", -1000)}
