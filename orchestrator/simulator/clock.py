"""The virtual clock: simulated epoch time that runs at ``time_scale`` and jumps on ``advance``.

Everything Krea would stamp (``created_at``, stage changes, URL expiry, Retry-After) reads this
clock, so tests can cover a two-hour job timeout in milliseconds of real time. Only the per-account
request-rate window and deliberate network delays (slow answers, latency, slow media) use real
time, because they model the wire rather than Krea's back end.

Also here: the one timestamp format Krea uses (ISO-8601 UTC, milliseconds, ``Z``) and its parser.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache


class VirtualClock:
    """Simulated seconds since the epoch: ``base + real_elapsed * scale + advanced``."""

    def __init__(
        self, start_s: float, scale: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._monotonic = monotonic
        self._base_s = start_s
        self._base_real = monotonic()
        self._scale = scale

    @property
    def scale(self) -> float:
        return self._scale

    def now(self) -> float:
        """The simulated time, epoch seconds."""
        return self._base_s + (self._monotonic() - self._base_real) * self._scale

    def set_scale(self, scale: float) -> None:
        """Change speed without a jump: the simulated time stays continuous."""
        self._base_s = self.now()
        self._base_real = self._monotonic()
        self._scale = scale

    def advance(self, seconds: float) -> None:
        """Jump forward ``seconds`` of simulated time (never backwards)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._base_s += seconds

    def real_delay(self, at_s: float) -> float | None:
        """Real seconds until simulated time ``at_s``; None when the clock is manual."""
        if self._scale == 0:
            return None
        return max(0.0, (at_s - self.now()) / self._scale)


@lru_cache(maxsize=1 << 17)  # job timestamps are rendered again on every poll and list page
def iso_ms(epoch_ms: int) -> str:
    """``2026-02-13T02:20:58.265Z`` for integer epoch milliseconds."""
    seconds, millis = divmod(epoch_ms, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


def to_ms(epoch_s: float) -> int:
    """Epoch seconds to whole milliseconds (floor)."""
    return int(epoch_s * 1000 // 1)


def parse_iso_us(text: str) -> int:
    """An ISO-8601 timestamp (``Z`` or offset required) as integer epoch microseconds."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("timestamp needs a timezone")
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def date_of(epoch_s: float) -> str:
    """The UTC calendar date ``YYYY-MM-DD`` of an epoch time."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%d")
