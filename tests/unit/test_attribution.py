"""Attribution of unclaimed remote jobs to doubtful POSTs: exact when possible, never a guess."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.attribution import (
    LOCAL_ERROR_S,
    MARGIN_S,
    Attempt,
    Candidate,
    ClockBounds,
    Window,
    attribute,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def job(remote_id: str, seconds: float) -> Candidate:
    return Candidate(remote_id, at(seconds), "queued", at(seconds).isoformat())


def post(owner: str, low: float | None, tight: float | None = None, late: float | None = None,
         *, ours: bool = True) -> Attempt:  # fmt: skip
    """A POST whose job falls in [low, tight], or [low, late] if Krea was slow to create it."""
    high = None if tight is None else at(tight)
    window = Window(None if low is None else at(low), high, at(late) if late is not None else high)
    return Attempt(owner, window, ours=ours)


def test_one_doubtful_post_and_one_job_in_its_window_match() -> None:
    verdict = attribute([post("a", 0, 1)], [job("r1", 0.5)])
    assert verdict.matched == {"a": job("r1", 0.5)}
    assert not (verdict.not_created)
    assert not (verdict.unattributable)
    assert not (verdict.foreign)


def test_no_job_in_the_window_means_not_created_and_jobs_outside_are_foreign() -> None:
    """Another client's jobs just before and after the window are not ours, and not doubts."""
    verdict = attribute([post("a", 10, 11)], [job("before", 9.9), job("after", 11.2)])
    assert verdict.not_created == ["a"]
    assert verdict.unattributable == []
    assert [c.remote_id for c in verdict.foreign] == ["before", "after"]


def test_windows_separate_two_posts() -> None:
    verdict = attribute([post("a", 0, 1), post("b", 5, 6)], [job("r1", 0.5), job("r2", 5.5)])
    assert verdict.matched == {"a": job("r1", 0.5), "b": job("r2", 5.5)}


def test_two_posts_in_one_window_are_not_guessed() -> None:
    """Two doubtful POSTs, two jobs either could have made: both resent, both jobs reported."""
    verdict = attribute([post("a", 0, 2), post("b", 0, 2)], [job("r1", 1), job("r2", 1.5)])
    assert verdict.matched == {}
    assert sorted(c.remote_id for c in verdict.unattributable) == ["r1", "r2"]
    assert sorted(verdict.contested) == ["a", "b"]


def test_a_foreign_job_inside_the_window_makes_the_post_contested() -> None:
    """One POST cannot create two jobs: one is another client's, and which is unknowable."""
    verdict = attribute([post("a", 0, 2)], [job("r1", 1), job("r2", 1.5)])
    assert verdict.matched == {}
    assert verdict.contested == ["a"]
    assert len(verdict.unattributable) == 2


def test_no_bounds_accept_any_job() -> None:
    """A POST with no floor and no clock offset can own any unclaimed job."""
    verdict = attribute([post("a", None)], [job("r1", -1000)])
    assert verdict.matched == {"a": job("r1", -1000)}


def test_the_tight_window_is_read_before_the_late_one() -> None:
    """A job inside the answer's bounds wins; one in the grace after it is another client's."""
    verdict = attribute([post("a", 0, 1, late=6)], [job("mine", 0.5), job("theirs", 3)])
    assert verdict.matched == {"a": job("mine", 0.5)}
    assert [c.remote_id for c in verdict.foreign] == ["theirs"]


def test_a_job_created_in_the_grace_is_found_when_the_tight_window_is_empty() -> None:
    """No answer came: Krea may have created the job a little after the connection dropped."""
    verdict = attribute([post("a", 0, 1, late=6)], [job("late", 3)])
    assert verdict.matched == {"a": job("late", 3)}


def test_a_job_only_another_runs_post_could_own_is_left_to_that_run() -> None:
    verdict = attribute([post("a", 0, 1), post("other#k", 5, 6, ours=False)], [job("theirs", 5.5)])
    assert verdict.matched == {}
    assert verdict.not_created == ["a"]
    assert not (verdict.unattributable)
    assert not (verdict.foreign)


def test_a_job_ours_or_another_runs_is_neither_taken_nor_cancelled() -> None:
    verdict = attribute([post("a", 0, 2), post("other#k", 0, 2, ours=False)], [job("r", 1)])
    assert verdict.matched == {}
    assert verdict.contested == ["a"]
    assert [c.remote_id for c in verdict.unattributable] == ["r"]


def test_clock_bounds_learn_the_offset_from_acknowledged_posts() -> None:
    """Krea's clock runs 100 s ahead: a POST sent at 10 and answered at 10.2 lies at 110..110.2."""
    bounds = ClockBounds()
    base = T0.timestamp()
    bounds.learn(base, base + 0.2, at(100.1))  # offset in [99.9, 100.1]
    bounds.learn(base + 1, base + 1.1, at(101.05))  # offset in [99.95, 100.05]
    assert bounds.low == pytest.approx(99.95)
    assert bounds.high == pytest.approx(100.05)
    window = bounds.window(
        floor=None, sent=base + 10, answered=base + 10.2, no_answer=False, grace_s=5
    )
    margin = MARGIN_S + LOCAL_ERROR_S
    assert window.low == pytest.approx(at(109.95 - margin), abs=timedelta(milliseconds=1))
    assert window.tight == pytest.approx(at(110.25 + margin), abs=timedelta(milliseconds=1))
    assert window.late == window.tight, "an HTTP answer came: no job is created after it"
    dropped = bounds.window(
        floor=at(109.99), sent=base + 10, answered=base + 10.2, no_answer=True, grace_s=5
    )
    assert dropped.low == at(109.99), "the floor is the tighter lower bound here"
    assert dropped.late == dropped.tight + timedelta(seconds=5)


def test_clock_bounds_scale_with_a_faster_api_clock() -> None:
    """At time scale 60 one real second is 60 API seconds, and so is local timing error."""
    bounds = ClockBounds(scale=60.0)
    base = 1000.0
    bounds.learn(base, base + 0.01, datetime.fromtimestamp(60 * base + 0.3, UTC))
    window = bounds.window(
        floor=None, sent=base + 1, answered=base + 1.01, no_answer=False, grace_s=5
    )
    assert window.low is not None
    assert window.tight is not None
    margin = MARGIN_S + 60 * LOCAL_ERROR_S
    assert window.low.timestamp() == pytest.approx(60 * (base + 1) + 0.3 - 0.6 - margin)
    assert window.tight.timestamp() == pytest.approx(60 * (base + 1.01) + 0.3 + margin)


def test_a_clock_step_keeps_only_the_newest_sample() -> None:
    """Contradicting samples (the local clock stepped) never make an empty window."""
    bounds = ClockBounds()
    bounds.learn(0.0, 0.1, datetime.fromtimestamp(100.05, UTC))
    bounds.learn(50.0, 50.1, datetime.fromtimestamp(250.05, UTC))  # offset jumped to 200
    assert bounds.low == pytest.approx(199.95)
    assert bounds.high == pytest.approx(200.05)


def test_without_any_acknowledged_post_only_the_floor_bounds() -> None:
    window = ClockBounds().window(floor=at(1), sent=5.0, answered=6.0, no_answer=True, grace_s=5)
    assert window == Window(at(1), None, None)


def test_a_post_that_may_never_have_been_sent_takes_no_job_while_another_client_is_active() -> None:
    """Its run died with it on the wire: a lone job in its window is its own only when the list
    shows no other client's job; else it is a doubt and the entry is sent again."""
    unsure = Attempt("a", Window(at(10), at(11), at(12)), unsure_sent=True)
    alone = attribute([unsure], [job("r1", 10.5)])
    assert alone.matched == {"a": job("r1", 10.5)}
    crowded = attribute([unsure], [job("r1", 10.5), job("theirs", 300)])
    assert crowded.matched == {}
    assert crowded.contested == ["a"]
    assert [c.remote_id for c in crowded.unattributable] == ["r1"]
    sure = attribute([post("a", 10, 11, late=12)], [job("r1", 10.5), job("theirs", 300)])
    assert sure.matched == {"a": job("r1", 10.5)}, "an answered POST was sent: its job is its own"
    late = attribute([unsure], [job("r1", 10.5), job("in-its-late-window", 11.5)])
    assert late.matched == {}, "a POST makes one job: the other in its window is a client's"
    other_run = Attempt("other#k", Window(at(9), at(9.8), at(9.8)), ours=False)
    explained = attribute([unsure, other_run], [job("r1", 10.5), job("theirs", 9.5)])
    assert explained.matched == {"a": job("r1", 10.5)}, "a job another run's POST explains"


def test_a_lost_post_that_left_late_keeps_its_own_job_in_its_tight_window() -> None:
    """Registered at 10.0 (its ``sent``) but written to the socket only at 10.12 (fsyncs and a
    busy machine in between); its job is made at 10.125 and the dropped connection is seen at
    10.144. Another client's job at 10.005 must not be taken for it: a tight bound counted
    from the registration (10.0 + 2 x rtt) would end before the POST's own job, leaving the
    other client's alone in the tight window (adopted) and ours in the late one (foreign).
    Without a written mark (a killed run's, lost with it) the bound still counts from ``sent``:
    counting to the answer instead made the other run's jobs doubts in the two-batch test."""
    bounds = ClockBounds()
    base = T0.timestamp()
    bounds.learn(base, base + 0.017, at(100.01))  # offset 100 (+-0.01), rtt 0.017
    theirs, ours = job("theirs", 110.005), job("ours", 110.125)
    lost = {"floor": None, "sent": base + 10, "answered": base + 10.144, "no_answer": True}
    window = bounds.window(**lost, grace_s=5, written=base + 10.12)
    assert window.tight is not None
    assert window.holds(ours.created_at, late=False), "its own job is in its tight window"
    verdict = attribute([Attempt("a", window)], [theirs, ours])
    assert verdict.matched == {}, "never adopted: either job may be the other client's"
    assert verdict.contested == ["a"]
    assert sorted(c.remote_id for c in verdict.unattributable) == ["ours", "theirs"]
    unmarked = bounds.window(**lost, grace_s=5)
    assert not unmarked.holds(ours.created_at, late=False), "no mark: counted from sent"


def test_a_timed_out_post_is_still_matched_in_its_tight_window() -> None:
    """The tight bound still counts from the write: a POST written at 10.001 whose answer never
    came (given up on at 40) owns the job made at 10.01; a job of the grace is another's."""
    bounds = ClockBounds()
    base = T0.timestamp()
    bounds.learn(base, base + 0.017, at(100.01))
    window = bounds.window(
        floor=None, sent=base + 10, answered=base + 40, no_answer=True, grace_s=5,
        written=base + 10.001,
    )  # fmt: skip
    assert window.tight == pytest.approx(
        at(110.01 + 10.001 - 10 + 2 * 0.017 + LOCAL_ERROR_S + MARGIN_S + LOCAL_ERROR_S),
        abs=timedelta(milliseconds=1),
    )
    verdict = attribute([Attempt("a", window)], [job("ours", 110.01), job("theirs", 125)])
    assert verdict.matched == {"a": job("ours", 110.01)}
    assert [c.remote_id for c in verdict.foreign] == ["theirs"]
