"""accounting on hand-built rows: billed, in flight, not sent, free; orphans, retries, days."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.jobs import UNSENT, JobState
from orchestrator.money.accounting import Bucket, account, bucket, ratio_micro
from orchestrator.money.rows import JobRow
from orchestrator.money.spend_history import (
    UNKNOWN_DAY,
    EventRow,
    billed_from_events,
    free_attempts,
    utc_day,
)

S = JobState
NOON = "2026-03-01T12:00:00.000Z"


def job(
    key: str,
    state: JobState,
    price: int = 100_000,
    *,
    model: str = "kling/kling-2.5",
    batch: str = "b",
    seconds: float | None = 5.0,
    remote_status: str | None = None,
    remote_id: str | None = None,
    completed_at: str | None = None,
    updated_at: str | None = NOON,
    planned: bool = True,
) -> JobRow:
    if remote_status is None and state in (S.COMPLETED, S.DOWNLOADING, S.DONE):
        remote_status = "completed"
    return JobRow(
        key=key,
        batch=batch,
        entry_id=key,
        model=model,
        state=state,
        price_micro=price,
        seconds=None if state is S.ORPHAN else seconds,
        remote_id=remote_id or (f"r-{key}" if remote_status else None),
        remote_status=remote_status,
        completed_at=completed_at,
        updated_at=updated_at,
        planned=planned,
    )


def event(
    seq: int,
    key: str,
    to: JobState,
    *,
    at: str = NOON,
    remote_id: str | None = None,
    remote_status: str | None = None,
    price: int = 100_000,
) -> EventRow:
    return EventRow(seq, key, at, to.value, remote_id, remote_status, price)


@pytest.mark.parametrize(
    ("state", "remote_status", "expected"),
    [
        (S.DONE, "completed", Bucket.BILLED),
        (S.COMPLETED, "completed", Bucket.BILLED),
        (S.DOWNLOADING, "completed", Bucket.BILLED),
        (S.SUBMITTED, "completed", Bucket.BILLED),  # reconciled onto a job Krea already finished
        (S.SUBMITTED, "processing", Bucket.IN_FLIGHT),
        (S.SUBMITTED, "failed", Bucket.FREE),  # reconciled onto a failed job; not yet moved
        (S.SUBMITTING, None, Bucket.IN_FLIGHT),
        (S.SUBMITTING, "failed", Bucket.IN_FLIGHT),  # left over from the attempt before a retry
        (S.AMBIGUOUS, "cancelled", Bucket.IN_FLIGHT),
        (S.PENDING, "failed", Bucket.NOT_SENT),  # a retry not sent yet: it will cost then
        (S.PENDING, None, Bucket.NOT_SENT),  # not sent yet, or held back by the budget
        (S.WAITING, None, Bucket.NOT_SENT),  # sent once its inputs have results: it will cost
        (S.FAILED, "failed", Bucket.FREE),
        (S.CANCELLED, "cancelled", Bucket.FREE),
        (S.REJECTED, None, Bucket.FREE),
        (S.ORPHAN, "completed", Bucket.BILLED),
        (S.ORPHAN, "backlogged", Bucket.IN_FLIGHT),
        (S.ORPHAN, None, Bucket.IN_FLIGHT),
        (S.ORPHAN, "cancelled", Bucket.FREE),
    ],
)
def test_each_job_lands_in_exactly_one_bucket(
    state: JobState, remote_status: str | None, expected: Bucket
) -> None:
    """Billed means Krea completed the current remote job; remote_status of a resend is stale."""
    assert bucket(job("k", state, remote_status=remote_status)) is expected


def test_a_pending_job_the_manifest_dropped_is_free_not_unsent() -> None:
    """No run sends a pending job the manifest no longer has: it will never cost anything."""
    assert bucket(job("k", S.PENDING, planned=False)) is Bucket.FREE
    assert bucket(job("k", S.PENDING, remote_status="failed", planned=False)) is Bucket.FREE
    assert bucket(job("k", S.WAITING, planned=False)) is Bucket.FREE  # nor a waiting one
    assert bucket(job("k", S.FAILED, remote_status="failed", planned=False)) is Bucket.FREE
    assert bucket(job("k", S.DONE, planned=False)) is Bucket.BILLED  # money spent stays spent
    columns = {"key": "k", "batch": "b", "entry_id": "e", "model": "m", "state": "pending"}
    assert JobRow.of({**columns, "price_micro": 5, "planned": 0}).planned is False  # SQLite's 0


def test_totals_split_billed_in_flight_not_sent_and_free() -> None:
    """Billed, in-flight and not-sent sums are integer sums of prices; free jobs cost nothing."""
    rows = [
        job("done", S.DONE, 300_000),
        job("completed", S.COMPLETED, 200_000, model="xai/grok-video"),
        job("queued", S.SUBMITTED, 100_000, remote_status="queued"),
        job("ambiguous", S.AMBIGUOUS, 50_000),
        job("failed", S.FAILED, 70_000, remote_status="failed"),
        job("cancelled", S.CANCELLED, 70_000, remote_status="cancelled"),
        job("rejected", S.REJECTED, 70_000),
        job("held", S.PENDING, 70_000),
        job("retry", S.PENDING, 30_000, remote_status="failed"),
        job("dropped", S.PENDING, 900_000, planned=False),
    ]
    totals = account(rows, []).totals
    assert (totals.jobs, totals.billed_jobs, totals.billed_micro) == (10, 2, 500_000)
    assert (totals.in_flight_jobs, totals.in_flight_micro) == (2, 150_000)
    assert (totals.not_sent_jobs, totals.not_sent_micro) == (2, 100_000)
    assert totals.free_jobs == 4  # failed, cancelled, rejected, dropped
    figures = totals.as_dict()
    assert (figures["not_sent_jobs"], figures["not_sent_micro"]) == (2, 100_000)
    assert figures["not_sent_usd"] == 0.1
    assert (totals.clips, totals.seconds) == (2, Decimal(10))


def test_groups_add_up_to_the_totals() -> None:
    """by_batch, by_model and by_status each partition the jobs."""
    rows = [
        job("a", S.DONE, 300_000, batch="x"),
        job("b", S.DONE, 200_000, batch="y", model="xai/grok-video"),
        job("c", S.SUBMITTED, 100_000, batch="y", remote_status="queued"),
        job("d", S.FAILED, 100_000, remote_status="failed"),
        job("e", S.PENDING, 40_000, batch="x", model="xai/grok-video"),
    ]
    result = account(rows, [])
    assert list(result.by_batch) == ["b", "x", "y"]
    assert list(result.by_model) == ["kling/kling-2.5", "xai/grok-video"]
    assert list(result.by_status) == [S.PENDING, S.SUBMITTED, S.DONE, S.FAILED]  # JobState order
    for groups in (result.by_batch, result.by_model, result.by_status):
        assert sum(t.billed_micro for t in groups.values()) == result.totals.billed_micro
        assert sum(t.in_flight_micro for t in groups.values()) == 100_000
        assert sum(t.not_sent_micro for t in groups.values()) == 40_000
        assert sum(t.jobs for t in groups.values()) == 5
    assert result.by_batch["x"].not_sent_jobs == 1
    assert result.by_model["xai/grok-video"].not_sent_micro == 40_000


def test_orphans_are_itemised_and_billed_only_when_krea_completed_them() -> None:
    """Orphan spend counts in billed (not as a clip); unfinished orphans are exposure."""
    rows = [
        job("clip", S.DONE, 100_000),
        job("orphan:r1", S.ORPHAN, 400_000, remote_status="completed", remote_id="r1"),
        job("orphan:r2", S.ORPHAN, 400_000, remote_status="processing", remote_id="r2"),
        job("orphan:r3", S.ORPHAN, 400_000, remote_status="cancelled", remote_id="r3"),
    ]
    result = account(rows, [])
    assert [(o.remote_id, o.bucket) for o in result.orphans] == [
        ("r1", Bucket.BILLED),
        ("r2", Bucket.IN_FLIGHT),
        ("r3", Bucket.FREE),
    ]
    assert result.orphan_billed_micro == 400_000
    totals = result.totals
    assert (totals.billed_micro, totals.billed_jobs, totals.clips) == (500_000, 2, 1)
    assert (totals.in_flight_micro, totals.free_jobs) == (400_000, 1)
    assert totals.cost_per_clip_micro == 500_000  # the orphan is part of what the clip cost
    assert totals.cost_per_second_micro == 100_000


def test_a_retried_job_is_billed_once_and_its_failed_attempt_is_free() -> None:
    """Failed -> pending -> resent -> done: one free attempt, one charge, history agrees."""
    k, price = "retried", 366_700
    history = [
        event(1, k, S.PENDING, price=price),
        event(2, k, S.SUBMITTING, price=price),
        event(3, k, S.SUBMITTED, remote_id="r1", remote_status="queued", price=price),
        event(4, k, S.FAILED, remote_id="r1", remote_status="failed", price=price),
        event(5, k, S.PENDING, remote_id="r1", remote_status="failed", price=price),
        event(6, k, S.SUBMITTING, remote_id="r1", remote_status="failed", price=price),
        event(7, k, S.SUBMITTED, remote_id="r2", remote_status="processing", price=price),
        event(8, k, S.COMPLETED, remote_id="r2", remote_status="completed", price=price),
        event(9, k, S.DOWNLOADING, remote_id="r2", remote_status="completed", price=price),
        event(10, k, S.DONE, remote_id="r2", remote_status="completed", price=price),
    ]
    row = job(k, S.DONE, price, remote_id="r2")
    result = account([row], history)
    assert free_attempts(history) == {k: 1}
    assert (result.totals.free_attempts, result.totals.billed_micro) == (1, price)
    assert billed_from_events(history) == price == result.totals.billed_micro
    assert result.by_status[S.DONE].free_attempts == 1


def test_the_bill_rebuilt_from_history_matches_the_rows() -> None:
    """Each remote job seen completed counts once, orphans included, at its price then."""
    rows = [
        job("a", S.DONE, 300_000, remote_id="ra"),
        job("orphan:ro", S.ORPHAN, 200_000, remote_status="completed", remote_id="ro"),
        job("f", S.FAILED, 50_000, remote_status="failed", remote_id="rf"),
    ]
    history = [
        event(1, "a", S.SUBMITTED, remote_id="ra", remote_status="queued", price=300_000),
        event(2, "a", S.COMPLETED, remote_id="ra", remote_status="completed", price=300_000),
        event(3, "a", S.DONE, remote_id="ra", remote_status="completed", price=300_000),
        event(4, "orphan:ro", S.ORPHAN, remote_id="ro", remote_status="sampling", price=200_000),
        event(5, "orphan:ro", S.ORPHAN, remote_id="ro", remote_status="completed", price=200_000),
        event(6, "f", S.FAILED, remote_id="rf", remote_status="failed", price=50_000),
    ]
    assert billed_from_events(history) == account(rows, history).totals.billed_micro == 500_000


def test_cost_per_second_leaves_out_clips_of_unknown_length() -> None:
    """Clips with no seconds drop out of the per-second rate (both sides), not the per-clip one."""
    rows = [
        job("a", S.DONE, 500_000, seconds=5.0),
        job("b", S.DONE, 500_000, seconds=5.0),
        job("c", S.DONE, 300_000, seconds=None),
    ]
    totals = account(rows, []).totals
    assert totals.seconds == Decimal(10)
    assert totals.cost_per_second_micro == 100_000
    assert totals.cost_per_clip_micro == 433_333
    unknown = account([job("c", S.DONE, 300_000, seconds=None)], []).totals
    assert unknown.cost_per_second_micro is None
    assert unknown.cost_per_clip_micro == 300_000
    assert account([], []).totals.cost_per_clip_micro is None


def test_ratios_round_half_up_to_whole_micro_usd() -> None:
    assert ratio_micro(1_000_001, 2) == 500_001
    assert ratio_micro(1_000_000, 3) == 333_333
    assert ratio_micro(733_400, Decimal("9.5")) == 77_200
    assert ratio_micro(5, 0) is None


def test_days_are_utc_calendar_days_of_the_billing_time() -> None:
    """Billing time comes from the first completed event, else completed_at, else updated_at."""
    rows = [
        job("late", S.DONE, 100_000, remote_id="r1"),
        job("edge", S.DONE, 200_000, remote_id="r2"),
        job("krea", S.DONE, 400_000, remote_id="r3", completed_at="2026-03-03T01:00:00+01:00"),
        job("none", S.DONE, 800_000, remote_id="r4", updated_at=None),
    ]
    done = {"remote_status": "completed"}
    history = [
        event(1, "late", S.COMPLETED, at="2026-03-01T23:30:00-02:00", remote_id="r1", **done),
        event(2, "late", S.DONE, at="2026-03-05T00:00:00Z", remote_id="r1", **done),
        event(3, "edge", S.COMPLETED, at="2026-03-01T23:59:59.999Z", remote_id="r2", **done),
        event(4, "gone", S.FAILED, at="2026-03-01T10:00:00Z", remote_status="failed"),
        event(5, "edge", S.FAILED, at="2026-03-01T10:00:00Z", remote_status="failed"),
    ]
    days = account(rows, history).by_day
    assert [(d.day, d.billed_jobs, d.billed_micro, d.free_attempts) for d in days] == [
        ("2026-03-01", 1, 200_000, 1),  # the event of a job outside the report is not counted
        ("2026-03-02", 1, 100_000, 0),  # 23:30 at -02:00 is the next day in UTC
        ("2026-03-03", 1, 400_000, 0),  # no event: Krea's completed_at, moved to UTC (00:00)
        (UNKNOWN_DAY, 1, 800_000, 0),
    ]
    assert sum(d.billed_micro for d in days) == account(rows, history).totals.billed_micro
    assert utc_day("2026-03-03T00:30:00+01:00") == "2026-03-02"


def test_charges_accumulate_in_billing_order() -> None:
    """The spend-over-time series: each billed job once, running total, oldest first."""
    rows = [job("b", S.DONE, 200_000, updated_at="2026-03-02T00:00:00Z"),
            job("a", S.DONE, 100_000, updated_at="2026-03-01T00:00:00Z"),
            job("q", S.SUBMITTED, 900_000, remote_status="queued")]  # fmt: skip
    charges = account(rows, []).charges
    assert [(c.key, c.cumulative_micro) for c in charges] == [("a", 100_000), ("b", 300_000)]


def test_rows_are_read_from_column_mappings() -> None:
    """Extra columns (request, sha256, ...) are ignored; the state becomes a JobState."""
    row = JobRow.of({"key": "k", "batch": "b", "entry_id": "e", "model": "m", "state": "done",
                     "price_micro": 5, "request": "{}", "sha256": "ab"})  # fmt: skip
    assert row.state is S.DONE
    assert row.seconds is None
    assert EventRow.of({"seq": 1, "job_key": "k", "at": NOON, "to_state": "failed", "cause": "x"})


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(JobState)),
            st.sampled_from([None, "queued", "completed", "failed", "cancelled"]),
            st.integers(0, 10**7),
            st.sampled_from(["m1", "m2"]),
            st.one_of(st.none(), st.floats(0.5, 20)),
            st.booleans(),
        ),
        max_size=30,
    )
)
def test_every_job_is_counted_once_and_groups_sum_to_totals(rows: list[tuple]) -> None:  # type: ignore[type-arg]
    """Whatever the mix: billed + in flight + not sent + free = jobs; every grouping adds up."""
    jobs = [
        job(f"k{i}", state, price, remote_status=status, model=model, seconds=seconds,
            planned=planned)
        for i, (state, status, price, model, seconds, planned) in enumerate(rows)
    ]  # fmt: skip
    result = account(jobs, [])
    totals = result.totals
    split = totals.billed_jobs + totals.in_flight_jobs + totals.not_sent_jobs + totals.free_jobs
    assert split == totals.jobs == len(jobs)
    for kind, micro in ((Bucket.BILLED, totals.billed_micro),
                        (Bucket.IN_FLIGHT, totals.in_flight_micro),
                        (Bucket.NOT_SENT, totals.not_sent_micro)):  # fmt: skip
        assert micro == sum(j.price_micro for j in jobs if bucket(j) is kind)
    assert totals.not_sent_jobs == sum(j.state in UNSENT and j.planned for j in jobs)
    for groups in (result.by_batch, result.by_model, result.by_status):
        assert sum(t.billed_micro for t in groups.values()) == totals.billed_micro
        assert sum(t.in_flight_micro for t in groups.values()) == totals.in_flight_micro
        assert sum(t.not_sent_micro for t in groups.values()) == totals.not_sent_micro
    assert sum(d.billed_micro for d in result.by_day) == totals.billed_micro
