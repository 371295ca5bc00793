"""The job walk on the virtual clock: backlog, slots, stage changes, endings and charges.

Every running job has exactly one pending event (its next step) in a heap ordered by simulated
time. ``run_until(now)`` pops due events in time order, so state changes happen at the moment
they were scheduled for, however late the simulator notices them: a job finishing at ``t`` frees
its slot at ``t``, and the next backlogged job starts at ``t`` too. Events are processed lazily
at the start of every request and by a background waker (see ``runner``), and each costs
O(log n), so tens of thousands of jobs stay cheap.

Cancelling a job bumps its ``version``; heap entries carrying an older version are skipped when
popped instead of being searched for and removed.

Rules: a job starts when its account has a free slot and nobody is ahead of it in the backlog
(submission order); only ``completed`` is charged; a cancelled or failed job costs nothing;
jobs already in flight finish even when the balance has run out meanwhile.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from orchestrator.simulator.accounts import Account, Accounts
from orchestrator.simulator.job import CANCELLABLE, TERMINAL, SimJob
from orchestrator.simulator.options import SimulatorOptions
from orchestrator.simulator.outcomes import COMPLETED, steps

_Event = tuple[float, int, int, SimJob]


class Lifecycle:
    """Owns the event heap and every status change of every job."""

    def __init__(
        self,
        accounts: Accounts,
        options: Callable[[], SimulatorOptions],
        on_terminal: Callable[[SimJob], None],
        on_schedule: Callable[[], None],
    ) -> None:
        self._accounts = accounts
        self._options = options
        self._on_terminal = on_terminal
        self._on_schedule = on_schedule
        self._heap: list[_Event] = []
        self._seq = itertools.count()
        self.jobs: dict[str, SimJob] = {}

    # -- entry points ---------------------------------------------------------------------------
    def submit(self, job: SimJob, at_s: float) -> None:
        """Register a new job: it starts now if a slot is free, else waits in the backlog."""
        account = self._accounts.get(job.account)
        account.add(job)
        self.jobs[job.job_id] = job
        if account.backlogged == 0 and account.running < self._options().concurrency:
            self._start(job, account, at_s)
        else:
            account.push_backlog(job)

    def cancel(self, job: SimJob, at_s: float) -> bool:
        """Cancel at the user's request; False (and no change) when the status forbids it."""
        if job.status not in CANCELLABLE:
            return False
        if job.status == "backlogged":
            self._accounts.get(job.account).forget_backlogged(at_s)
        self._finish(job, "cancelled", at_s, error_code=None)
        return True

    def run_until(self, now_s: float) -> None:
        """Apply every step due at or before ``now_s``, in time order."""
        heap = self._heap
        while heap and heap[0][0] <= now_s:
            at_s, _, version, job = heapq.heappop(heap)
            if version == job.version:
                self._step(job, at_s)

    def fill_all(self, at_s: float) -> None:
        """Start backlogged jobs wherever slots are free (after ``concurrency`` grows)."""
        for account in self._accounts.by_id.values():
            self._fill(account, at_s)

    def next_event_s(self) -> float | None:
        """Simulated time of the earliest live event, or None."""
        heap = self._heap
        while heap and heap[0][2] != heap[0][3].version:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    # -- the walk -------------------------------------------------------------------------------
    def _start(self, job: SimJob, account: Account, at_s: float) -> None:
        options = self._options()
        job.started_s = max(at_s, job.created_ms / 1000)
        job.walk = steps(job.plan, options.job_timeout_s)
        job.step = 0
        job.status = job.walk[0][1]
        job.version += 1
        account.change_running(+1, job.started_s)
        self._schedule_next(job)

    def _schedule_next(self, job: SimJob) -> None:
        if job.step + 1 >= len(job.walk) or job.started_s is None:
            return
        at_s = job.started_s + job.walk[job.step + 1][0]
        heapq.heappush(self._heap, (at_s, next(self._seq), job.version, job))
        self._on_schedule()

    def _step(self, job: SimJob, at_s: float) -> None:
        job.step += 1
        status = job.walk[job.step][1]
        if status in TERMINAL:
            code = None if job.plan.outcome == COMPLETED else job.plan.outcome
            self._finish(job, status, at_s, error_code=code)
            return
        job.status = status
        job.version += 1
        self._schedule_next(job)

    def _finish(self, job: SimJob, status: str, at_s: float, error_code: str | None) -> None:
        account = self._accounts.get(job.account)
        was_running = job.running
        job.status = status
        job.finished_s = at_s
        job.error_code = error_code
        job.version += 1
        if status == "completed":
            job.charged_micro = job.price_micro
        account.finished(job)
        if was_running:
            account.change_running(-1, at_s)
            self._fill(account, at_s)
        self._on_terminal(job)

    def _fill(self, account: Account, at_s: float) -> None:
        concurrency = self._options().concurrency
        while account.running < concurrency:
            job = account.pop_backlog()
            if job is None:
                return
            self._start(job, account, at_s)
