"""The one seam through which the orchestrator reads time.

Two kinds of time:

* **Wall-clock timestamps** for the ledger (`now_utc`): ISO-8601 UTC with milliseconds, the format
  Krea uses for ``created_at``, so our rows and Krea's sort the same way.
* **API time** for waiting (poll intervals, backoff, Retry-After, grace periods): every policy is
  written in seconds of the API's clock. Against the real API that is real time; against the
  simulator running ``time_scale`` times faster, :class:`Clock` divides every wait by the same
  factor, so a 5-second poll interval stays "5 seconds" to both sides and tests run in
  milliseconds without sleeping for real.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime


def now_utc() -> str:
    """The current UTC time as ``2026-02-13T02:20:58.265Z``."""
    return format_utc(datetime.now(UTC))


def format_utc(moment: datetime) -> str:
    """Krea's timestamp format: ISO-8601, UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_utc(text: str) -> datetime:
    """Parse an ISO-8601 timestamp (``Z`` or an offset); naive times are taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def seconds_between(earlier: str, later: str) -> float:
    """``later - earlier`` in seconds, for two ISO timestamps."""
    return (parse_utc(later) - parse_utc(earlier)).total_seconds()


class Clock:
    """Monotonic API time and sleeping in API seconds, ``scale`` times faster than real time."""

    def __init__(self, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = scale
        self._origin = time.monotonic()

    def now(self) -> float:
        """API seconds since this clock was made."""
        return (time.monotonic() - self._origin) * self.scale

    async def sleep(self, api_seconds: float) -> None:
        """Wait ``api_seconds`` of API time."""
        await asyncio.sleep(max(0.0, api_seconds) / self.scale)

    def real_seconds(self, api_seconds: float) -> float:
        """How long ``api_seconds`` of API time lasts in real seconds."""
        return api_seconds / self.scale
