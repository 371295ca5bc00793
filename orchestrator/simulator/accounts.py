"""Per-token accounts: their jobs in creation order, slots, backlog, money and request rate.

Each bearer token is its own account, identified by ``sha256(token)[:16]`` so that no token is
ever stored in introspection or logs; tokens of one ``shared_tokens`` group act on the account of
the group's first token (workspace tokens that see the same jobs, slots and money). An account
holds:

* its jobs in creation order, with ``created_ms`` kept *strictly* increasing (1 ms is added when
  two jobs would share a timestamp) so a list cursor "created before T" never skips or repeats
  a job; listing bisects on it and so stays cheap with tens of thousands of jobs;
* the FIFO backlog (cancelled entries are skipped lazily rather than removed from the middle);
* the money: ``billed_micro`` (charged on completion) and the prices of unfinished jobs, which
  the reserving 402 rule subtracts; the balance itself is the configured one minus the bill, so
  changing ``balance_usd`` live acts like a top-up;
* usage statistics: high-water marks and the integral of running jobs over simulated time.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections import deque
from collections.abc import Iterator, Mapping
from functools import lru_cache

from orchestrator.simulator.job import SimJob


@lru_cache(maxsize=1024)
def account_id(token: str) -> str:
    """The public identity of a token: the first 16 hex digits of its sha256."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def account_of(token: str, groups: Mapping[str, str]) -> str:
    """The account a token acts on: its own, or its group's (``SimulatorOptions.token_groups``)."""
    return account_id(groups.get(token, token))


class Account:
    """One token's jobs, limits and money."""

    def __init__(self, ident: str) -> None:
        self.ident = ident
        self.jobs: list[SimJob] = []
        self._created_ms: list[int] = []
        self._backlog: deque[SimJob] = deque()
        self.backlogged = 0
        self.running = 0
        self.unfinished_price_micro = 0
        self.billed_micro = 0
        self.max_unfinished_seen = 0
        self.max_running_seen = 0
        self.running_seconds = 0.0
        self._since_s: float | None = None  #: last change of ``running``
        self._first_s: float | None = None
        self._last_idle_s: float | None = None
        self.requests: deque[float] = deque()  #: real times of recent requests (rate limit)

    @property
    def unfinished(self) -> int:
        return self.running + self.backlogged

    def next_created_ms(self, now_ms: int) -> int:
        """``now_ms``, or 1 ms after the previous job when that is later (strictly increasing)."""
        return max(now_ms, self._created_ms[-1] + 1) if self._created_ms else now_ms

    def add(self, job: SimJob) -> None:
        """Record a new job (its ``created_ms`` must come from ``next_created_ms``)."""
        self.jobs.append(job)
        self._created_ms.append(job.created_ms)
        self.unfinished_price_micro += job.price_micro
        if self._first_s is None:
            self._first_s = job.created_ms / 1000

    # -- backlog and slots ----------------------------------------------------------------------
    def push_backlog(self, job: SimJob) -> None:
        self._backlog.append(job)
        self.backlogged += 1
        self._note_high_water()

    def pop_backlog(self) -> SimJob | None:
        """The oldest job still backlogged, or None."""
        while self._backlog:
            job = self._backlog.popleft()
            if job.status == "backlogged":
                self.backlogged -= 1
                return job
        return None

    def forget_backlogged(self, at_s: float) -> None:
        """A backlogged job was cancelled at ``at_s``; its deque entry is skipped later."""
        self.backlogged -= 1
        if self.unfinished == 0:
            self._last_idle_s = at_s

    def change_running(self, delta: int, at_s: float) -> None:
        """Move ``running`` by ``delta`` at simulated time ``at_s``, integrating usage."""
        self._integrate(at_s)
        self.running += delta
        self._note_high_water()
        if self.unfinished == 0:
            self._last_idle_s = at_s

    def available_micro(self, balance_micro: int, reserving: bool) -> int:
        """Money a new job may use: the balance after the bill, less unfinished prices if
        ``reserving`` (the 402 rule, shared by the API's POSTs and the foreign client's)."""
        balance = balance_micro - self.billed_micro
        return balance - self.unfinished_price_micro if reserving else balance

    def finished(self, job: SimJob) -> None:
        """A job reached a terminal status: it no longer reserves money."""
        self.unfinished_price_micro -= job.price_micro
        if job.charged_micro:
            self.billed_micro += job.charged_micro

    def _note_high_water(self) -> None:
        self.max_running_seen = max(self.max_running_seen, self.running)
        self.max_unfinished_seen = max(self.max_unfinished_seen, self.unfinished)

    def _integrate(self, at_s: float) -> None:
        if self._since_s is not None:
            self.running_seconds += self.running * max(0.0, at_s - self._since_s)
        self._since_s = at_s

    def usage(self, now_s: float) -> tuple[float, float]:
        """(running job-seconds, seconds from the first job to now or to the last idle moment)."""
        running_s = self.running_seconds
        if self._since_s is not None:
            running_s += self.running * max(0.0, now_s - self._since_s)
        if self._first_s is None:
            return running_s, 0.0
        end = now_s if self.unfinished or self._last_idle_s is None else self._last_idle_s
        return running_s, max(0.0, end - self._first_s)

    # -- listing --------------------------------------------------------------------------------
    def page(
        self,
        before_ms: int | None,
        limit: int,
        status: str | None,
        kinds: frozenset[str] | None = None,
    ) -> tuple[list[SimJob], SimJob | None]:
        """Up to ``limit`` jobs created before ``before_ms``, newest first, of ``status`` and of
        one of ``kinds`` (``video``, ``image``) when given, and the last item when more matching
        jobs exist (its ``created_at`` is the next cursor)."""
        end = len(self.jobs) if before_ms is None else bisect_left(self._created_ms, before_ms)
        if status is None and kinds is None:
            start = max(0, end - limit)
            items = self.jobs[start:end][::-1]
            return items, (items[-1] if start > 0 and items else None)
        matches = self._matching(end, status, kinds)
        items = [job for _, job in zip(range(limit), matches, strict=False)]
        more = len(items) == limit and next(matches, None) is not None
        return items, (items[-1] if more else None)

    def _matching(
        self, end: int, status: str | None, kinds: frozenset[str] | None
    ) -> Iterator[SimJob]:
        jobs = self.jobs
        for index in range(end - 1, -1, -1):
            job = jobs[index]
            if (status is None or job.status == status) and (kinds is None or job.kind in kinds):
                yield job


class Accounts:
    """All accounts, created on first use."""

    def __init__(self) -> None:
        self.by_id: dict[str, Account] = {}

    def get(self, ident: str) -> Account:
        account = self.by_id.get(ident)
        if account is None:
            account = self.by_id[ident] = Account(ident)
        return account
