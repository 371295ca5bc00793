"""Retry policy: what each failure means for a POST and for a read, and how long to wait."""

from __future__ import annotations

import random
import statistics

import pytest

from orchestrator import errors
from orchestrator.answers import parse_retry_after
from orchestrator.retry import Action, Backoff, backoff_s, classify_post, classify_read, delay_s

POST_TABLE = [
    (errors.NotSent("refused"), Action.RETRY),
    (errors.ConnectionLost("reset"), Action.RECONCILE),
    (errors.ServerError(503, "down"), Action.RECONCILE),
    (errors.BadResponse(200, "not JSON"), Action.RECONCILE),
    (errors.RateLimited(429, "full"), Action.RETRY),
    (errors.Rejected(400, "bad"), Action.REJECT),
    (errors.Rejected(422, "bad"), Action.REJECT),
    (errors.ModelRetired(410, "gone"), Action.REJECT),
    (errors.NotFound(404, "no model"), Action.REJECT),
    (errors.Unauthorized(401, "who"), Action.STOP),
    (errors.InsufficientFunds(402, "broke"), Action.STOP),
]


@pytest.mark.parametrize(("error", "action"), POST_TABLE)
def test_post_failures_never_resend_a_possibly_created_job(
    error: errors.OrchestratorError, action: Action
) -> None:
    """Only failures that prove no job was created are retried; lost answers are reconciled."""
    assert classify_post(error).action is action


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (errors.ConnectionLost("reset"), Action.RETRY),
        (errors.ServerError(500, "x"), Action.RETRY),
        (errors.RateLimited(429, "x"), Action.RETRY),
        (errors.ApiError(408, "slow"), Action.RETRY),
        (errors.BadResponse(200, "x"), Action.RETRY),
        (errors.NotFound(404, "x"), Action.REJECT),
        (errors.Unauthorized(403, "x"), Action.STOP),
    ],
)
def test_reads_retry_transient_failures(error: errors.OrchestratorError, action: Action) -> None:
    """GET/DELETE are idempotent: transient failures retry, a missing job does not."""
    assert classify_read(error).action is action


@pytest.mark.parametrize("attempt", [0, 1, 3, 6, 10])
def test_full_jitter_backoff_stays_in_range_with_the_right_mean(attempt: int) -> None:
    """Delays lie in [0, min(cap, base*2^n)] with a mean near half of it (10k draws)."""
    rng = random.Random(attempt)
    ceiling = min(60.0, 1.0 * 2**attempt)
    draws = [backoff_s(attempt, rng, base_s=1.0, cap_s=60.0) for _ in range(10_000)]
    assert all(0 <= d <= ceiling for d in draws)
    assert statistics.mean(draws) == pytest.approx(ceiling / 2, rel=0.05)


def test_retry_after_is_a_floor_and_is_clamped() -> None:
    """Retry-After 2 waits at least 2 s; an absurd value is clamped to the maximum."""
    rng = random.Random(1)
    assert delay_s(errors.RateLimited(429, "x", retry_after_s=2.0), 0, rng) >= 2.0
    assert (
        delay_s(errors.RateLimited(429, "x", retry_after_s=999_999.0), 0, rng, max_wait_s=300)
        <= 301
    )


@pytest.mark.parametrize(
    ("value", "date", "expected"),
    [
        ("2", None, 2.0),
        ("0.5", None, 0.5),
        ("abc", None, None),
        ("", None, None),
        ("Wed, 21 Oct 2026 07:28:05 GMT", "Wed, 21 Oct 2026 07:28:00 GMT", 5.0),
        ("-3", None, 0.0),
    ],
)
def test_retry_after_forms(value: str, date: str | None, expected: float | None) -> None:
    """Both Retry-After forms parse; an HTTP-date is measured against the answer's Date."""
    assert parse_retry_after(value, date) == expected


class _Ceiling(random.Random):
    """An RNG whose every uniform draw is its upper bound: delays show their ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_grows_and_resets() -> None:
    """Each consecutive failure doubles the ceiling of the delay up to the cap; a success resets."""
    backoff = Backoff(_Ceiling(), base_s=1.0, cap_s=60.0)
    error = errors.ServerError(503, "x")
    assert [backoff.next_delay(error) for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    backoff.succeeded()
    assert [backoff.next_delay(error) for _ in range(3)] == [1, 2, 4]


def test_backoff_delays_grow_on_average() -> None:
    """With real jitter, the mean delay of the n-th consecutive failure doubles until the cap."""
    error = errors.ServerError(503, "x")
    delays = []
    for seed in range(2_000):
        backoff = Backoff(random.Random(seed), base_s=1.0, cap_s=60.0)
        delays.append([backoff.next_delay(error) for _ in range(8)])
    means = [statistics.mean(column) for column in zip(*delays, strict=True)]
    expected = [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert means == pytest.approx(expected, rel=0.1), means
