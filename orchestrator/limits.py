"""Client-side limits: the request rate (asyncio-throttle) and the jobs Krea is running for us.

Krea has two limits and documents no numbers for either (krea-api.md §5):

* **Requests per second.** :class:`Pacer` wraps asyncio-throttle's sliding-window log. The throttle
  wakes every waiter every 10 ms and serves them in no particular order, so only a small fixed set
  of tasks (the submit workers, the sweeper) ever waits on it, never one task per job. Its window is
  stretched by a small margin so network jitter cannot push two windows' worth of requests into one
  second on Krea's side. Without a configured rate it learns one from 429s that name a rate limit.
* **Concurrency + backlog.** :class:`InFlightWindow` caps the remote jobs we hold unfinished. Krea
  answers 429 when both are full, so the cap adapts like TCP's congestion window (AIMD,
  RELIABILITY P3.6): each 429 sets it to what Krea had just accepted times ``beta``; each accepted
  job raises it by ``1/limit`` while the cap is what holds us back. Configured exactly to the
  account's concurrency + backlog, it never triggers a 429 at all.
"""

from __future__ import annotations

import asyncio
import math
import time

from asyncio_throttle.throttler import Throttler

#: Extra length of the throttle's window, so jitter never crowds Krea's window.
WINDOW_MARGIN = 1.02
WINDOW_SLACK_S = 0.01


class Pacer:
    """At most ``rate`` requests per second (real time); ``None``: unlimited until a 429 says."""

    def __init__(self, rate: float | None = None) -> None:
        self.configured = rate is not None
        self.rate: float | None = None
        self._throttler: Throttler | None = None
        self._recent: list[float] = []
        self.set_rate(rate)

    def set_rate(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("requests per second must be positive")
        self.rate = rate
        if rate is None:
            self._throttler = None
            return
        burst = max(1, math.floor(rate)) if rate >= 1 else 1
        period = burst / rate * WINDOW_MARGIN + WINDOW_SLACK_S
        self._throttler = Throttler(rate_limit=burst, period=period)

    async def __call__(self) -> None:
        """Wait for a slot; every API request goes through here."""
        if self._throttler is not None:
            await self._throttler.acquire()
        now = time.monotonic()
        self._recent.append(now)
        if len(self._recent) > 256:
            del self._recent[:128]

    def on_rate_limited(self) -> None:
        """Krea said we are too fast: settle just under the rate we were achieving."""
        now = time.monotonic()
        achieved = sum(1 for t in self._recent if now - t <= 1.0)
        ceiling = self.rate if self.rate is not None else float(achieved or 1)
        self.set_rate(max(0.5, min(ceiling, float(achieved or 1)) * 0.8))


class InFlightWindow:
    """How many unfinished remote jobs we may hold: FIFO waiters, AIMD on 429s."""

    def __init__(self, ceiling: int, *, beta: float = 0.9, floor: int = 1) -> None:
        if ceiling < 1:
            raise ValueError("the in-flight ceiling must be at least 1")
        self.ceiling = ceiling
        self.floor = floor
        self.beta = beta
        self.limit = float(ceiling)
        self.in_flight = 0
        self.rate_limited = 0  #: 429s seen
        self._changed = asyncio.Condition()

    @property
    def open_slots(self) -> int:
        return max(0, math.floor(self.limit) - self.in_flight)

    async def acquire(self) -> None:
        """Take a slot before a POST; waits while the window is full."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < math.floor(self.limit))
            self.in_flight += 1

    def hold(self, count: int = 1) -> None:
        """Count jobs already in flight (found in the ledger at start-up) without waiting."""
        self.in_flight += count

    async def release(self, count: int = 1) -> None:
        """A slot's job finished remotely, or its POST created nothing."""
        async with self._changed:
            self.in_flight = max(0, self.in_flight - count)
            self._changed.notify_all()

    def on_accepted(self) -> None:
        """Krea accepted a job: grow, but only while the window is what limits us."""
        if self.in_flight >= math.floor(self.limit):
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)

    def on_rate_limited(self) -> None:
        """Krea's concurrency + backlog is full at what it holds (our in-flight minus this POST)."""
        self.rate_limited += 1
        accepted = max(self.floor, self.in_flight - 1)
        self.limit = max(float(self.floor), min(self.limit, float(accepted)) * self.beta)
