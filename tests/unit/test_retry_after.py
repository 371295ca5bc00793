"""Retry-After in every form a server may send: a number, or an HTTP-date in any zone or none.

RFC 9110 dates are GMT, but servers send ``-0000``, ``+0200`` or no zone at all. A date without a
zone is taken as UTC; anything unusable falls back to the backoff (None), never an exception in
the middle of a POST.
"""

from __future__ import annotations

import pytest

from orchestrator.answers import parse_retry_after

DATE = "Wed, 21 Oct 2026 07:28:00 GMT"


@pytest.mark.parametrize(
    ("value", "date", "expected"),
    [
        ("Wed, 21 Oct 2026 07:28:05 -0000", DATE, 5.0),  # "unknown zone": UTC
        ("Wed, 21 Oct 2026 07:28:05", DATE, 5.0),  # no zone at all: UTC
        ("Wed, 21 Oct 2026 09:28:05 +0200", DATE, 5.0),
        ("Wed, 21 Oct 2026 07:28:05 GMT", "Wed, 21 Oct 2026 07:28:00 -0000", 5.0),
        ("Wed, 21 Oct 2026 07:28:05 GMT", "Wed, 21 Oct 2026 07:28:00", 5.0),
        ("Wed, 21 Oct 2026 07:27:00 GMT", DATE, 0.0),  # in the past: go now
        ("Wed, 32 Oct 2026 07:28:05 GMT", DATE, None),  # not a date
        ("Wed, 21 Oct 99999 07:28:05 GMT", DATE, None),
        ("nan", None, None),
        ("inf", None, None),
        ("1e400", None, None),
    ],
)
def test_every_http_date_zone_parses_and_nonsense_falls_back(
    value: str, date: str | None, expected: float | None
) -> None:
    """Zoned, unzoned and ``-0000`` dates give seconds; unusable values give None, never raise."""
    assert parse_retry_after(value, date) == expected


def test_a_date_without_its_own_reference_is_measured_against_now() -> None:
    """No Date header: the wait is from now (a date long past means no wait)."""
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:05 -0000") == 0.0
