"""Client-side limits: the request rate (asyncio-throttle) and the jobs Krea is running for us.

Krea has two limits and documents no numbers for either (krea-api.md §5), and answers 429 for
both, with different messages (``retry.is_rate_not_capacity``). They are kept apart because they
mean different things and recover on different clocks:

* **Requests per second.** :class:`Pacer` wraps asyncio-throttle's sliding-window log. The throttle
  wakes every waiter every 10 ms and serves them in no particular order, so only a small fixed set
  of tasks (the submit workers, the sweeper) ever waits on it, never one task per job. Its window is
  stretched by a small margin so network jitter cannot push two windows' worth of requests into one
  second on Krea's side. Without a configured rate it learns one from 429s that name a rate limit:
  one decrease per *episode* (the 429s answered within a window of the first one are all caused by
  the same burst, which Krea's window still holds), to ``beta`` times the rate achieved; then, while
  requests wait on it, additive increase of one request/s per second back up (to the configured
  rate at most). Decreasing again on every 429 of one episode spiralled a learned 100/s down to 25/s
  for good, and refilling after each wave of completions then took tens of seconds.
* **Concurrency + backlog.** :class:`InFlightWindow` caps the remote jobs we hold unfinished. Krea
  answers 429 when both are full, so the cap adapts like TCP's congestion window (AIMD,
  RELIABILITY P3.6): each 429 notes what Krea had just accepted (its capacity, as far as we can
  tell) and sets the cap to that times ``beta``. Accepted jobs raise it again while the cap is what
  holds us back: by one per job up to the noted capacity (the 429 measured it; a backlog kept short
  of it lets slots idle at every wave of completions: 140 s below 90 % utilisation after the first
  429 when it crept back by ``1/limit``), beyond it by ``1/limit`` (probing, as TCP's congestion
  avoidance), or ``1/PROBE_EVERY`` on a small account. Configured exactly to the account's
  concurrency + backlog, it never triggers a 429 at all.

Both limits only decide *when* a request may go; the sleep after a 429 (Retry-After or jittered
backoff) is ``retry``'s decision.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asyncio_throttle.throttler import Throttler

#: Extra length of the throttle's window, so jitter never crowds Krea's window.
WINDOW_MARGIN = 1.02
WINDOW_SLACK_S = 0.01
#: Krea's rate window (real seconds): what "achieved" is counted over, and how long one 429
#: episode lasts after the decrease it caused.
RATE_WINDOW_S = 1.0
MIN_RATE = 0.5
#: Beyond the capacity a 429 measured, one more slot per this many accepted jobs at least (per
#: ``limit`` on a larger account): on a small account, +1/limit probed, and got a 429, every few
#: jobs (13 % of POSTs at a capacity of 3; RELIABILITY P3.6 asks for under 5 %).
PROBE_EVERY = 20.0
#: Times a waiter may be overtaken by higher-priority ones before it takes the next slot.
PATIENCE = 3


class Pacer:
    """At most ``rate`` requests per second (real time); ``None``: unlimited until a 429 says.

    ``clock`` is the real-time clock Krea's window runs on (tests drive it). asyncio-throttle
    reads ``time.monotonic`` itself and never leaves this module; a learned throttle starts from
    the requests timed by ``clock``, so anything but a test leaves it at ``time.monotonic``.
    """

    def __init__(
        self,
        rate: float | None = None,
        *,
        beta: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.configured = rate is not None
        self.ceiling = rate  #: additive increase stops here (None: no ceiling)
        self.beta = beta
        self.rate: float | None = None
        self.decreases = 0  #: rate 429 episodes seen
        self._clock = clock
        self._throttler: Throttler | None = None
        self._recent: deque[float] = deque()  #: our request times within the last window
        self._calm_until = -math.inf
        self.set_rate(rate)

    def set_rate(self, rate: float | None) -> None:
        """Change the rate in place: the throttle keeps its log, so a change never adds a burst."""
        if rate is not None and rate <= 0:
            raise ValueError("requests per second must be positive")
        self.rate = rate
        if rate is None:
            self._throttler = None
            return
        burst = max(1, math.floor(rate)) if rate >= 1 else 1
        period = burst / rate * WINDOW_MARGIN + WINDOW_SLACK_S
        if self._throttler is None:
            self._throttler = Throttler(rate_limit=burst, period=period)
            # Our requests of the last window still count in Krea's: a throttle that starts
            # empty would send a whole burst into a window that just answered 429. The log is
            # asyncio-throttle's private deque of start times; without it we only lose that.
            log: Any = getattr(self._throttler, "_task_logs", None)
            if log is not None:
                log.extend(self._recent)
        else:
            self._throttler.rate_limit, self._throttler.period = burst, period

    async def __call__(self) -> None:
        """Wait for a slot; every API request goes through here."""
        throttler = self._throttler
        if throttler is not None:
            before = self._clock()
            await throttler.acquire()  # returns without suspending when a slot is free
            if self._clock() - before >= throttler.retry_interval:
                self.on_waited()
        now = self._clock()
        self._recent.append(now)
        while self._recent[0] <= now - RATE_WINDOW_S:
            self._recent.popleft()

    def on_waited(self) -> None:
        """A request had to wait for the rate: it is what holds us back, so probe upward.

        ``1/rate`` per waiting request is one request/s more per second of saturation.
        """
        if self.rate is None or self._clock() < self._calm_until:
            return
        ceiling = self.ceiling if self.ceiling is not None else math.inf
        if self.rate < ceiling:
            self.set_rate(min(ceiling, self.rate + 1.0 / self.rate))

    def on_rate_limited(self) -> bool:
        """Krea said we are too fast: settle below the rate achieved, once per episode.

        Returns whether the rate was lowered (False: a later 429 of an episode already counted).
        """
        now = self._clock()
        if now < self._calm_until:
            return False
        achieved = float(sum(1 for t in self._recent if now - t <= RATE_WINDOW_S) or 1)
        current = self.rate if self.rate is not None else achieved
        self.set_rate(max(MIN_RATE, min(current, achieved) * self.beta))
        self._calm_until = now + RATE_WINDOW_S
        self.decreases += 1
        return True


@dataclass(eq=False)
class _Waiter:
    rank: tuple[int, ...]
    seq: int
    future: asyncio.Future[None]
    overtaken: int = 0


class InFlightWindow:
    """How many unfinished remote jobs we may hold: ranked waiters, AIMD on 429s.

    Waiters of one rank are served first come, first served; a lower rank goes before a higher
    one (the batches of one run, by priority), except that a waiter overtaken ``PATIENCE``
    times takes the next slot: no batch starves another of the window forever.
    """

    def __init__(self, ceiling: int, *, beta: float = 0.9, floor: int = 1) -> None:
        if ceiling < 1:
            raise ValueError("the in-flight ceiling must be at least 1")
        self.ceiling = ceiling
        self.floor = floor
        self.beta = beta
        self.limit = float(ceiling)
        self.in_flight = 0
        self.rate_limited = 0  #: 429s seen
        self.capacity: int | None = None  #: what Krea held at the last 429 (None: no 429 yet)
        self._waiters: list[_Waiter] = []
        self._arrivals = itertools.count()

    @property
    def open_slots(self) -> int:
        """Slots free under the current limit."""
        return max(0, math.floor(self.limit) - self.in_flight)

    async def acquire(self, rank: tuple[int, ...] = ()) -> None:
        """Take a slot before a POST; waits in ``rank`` order while the window is full."""
        if not self._waiters and self.open_slots:
            self.in_flight += 1
            return
        waiter = _Waiter(rank, next(self._arrivals), asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter.future  # the slot is counted for us when this is woken (see _hand_out)
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.in_flight -= 1  # handed a slot, then cancelled: give it back
                self._hand_out()
            else:
                self._waiters.remove(waiter)
            raise

    def hold(self, count: int = 1) -> None:
        """Count jobs already in flight (found in the ledger at start-up) without waiting."""
        self.in_flight += count

    async def release(self, count: int = 1) -> None:
        """A slot's job finished remotely, or its POST created nothing."""
        self.in_flight = max(0, self.in_flight - count)
        self._hand_out()

    def _hand_out(self) -> None:
        """Give free slots to waiters (see the class docstring); every change that may free one
        calls it."""
        while self._waiters and self.open_slots:
            starving = [w for w in self._waiters if w.overtaken >= PATIENCE]
            if starving:
                chosen = min(starving, key=lambda w: w.seq)
            else:
                chosen = min(self._waiters, key=lambda w: (w.rank, w.seq))
            self._waiters.remove(chosen)
            for waiter in self._waiters:
                waiter.overtaken += waiter.seq < chosen.seq
            if not chosen.future.done():
                self.in_flight += 1
                chosen.future.set_result(None)

    def on_accepted(self) -> None:
        """Krea accepted a job: grow, but only while the window is what limits us.

        Back to the capacity the last 429 measured by one per job, beyond it by ``1/limit``
        (``1/PROBE_EVERY`` on a small account). A slot that growing opens goes to its waiter
        now, not at the next release.
        """
        if self.in_flight < math.floor(self.limit):
            return
        if self.capacity is not None and self.limit < self.capacity:
            grown = min(float(self.capacity), self.limit + 1.0)
        else:
            grown = self.limit + 1.0 / max(self.limit, PROBE_EVERY)
        self.limit = min(float(self.ceiling), grown)
        self._hand_out()

    def on_rate_limited(self) -> None:
        """Krea's concurrency + backlog is full at what it holds (our in-flight minus this POST)."""
        self.rate_limited += 1
        held = max(self.floor, self.in_flight - 1)
        self.capacity = held
        self.limit = max(float(self.floor), min(self.limit, float(held)) * self.beta)
