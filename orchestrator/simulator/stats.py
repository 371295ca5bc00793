"""What the simulator counts, and the ``GET /_sim/stats`` snapshot built from it.

These counters are the ground truth the client's tests and benchmarks check against: how many
requests each route got, which statuses were served, how many jobs were created from each
exact body (``bodies``: sha256 of model + canonical JSON, so a duplicated submission shows up as
a count of 2), and what every account was billed. Accounts appear by id only, never by token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.simulator.clock import iso_ms, to_ms

if TYPE_CHECKING:
    from orchestrator.simulator.accounts import Account
    from orchestrator.simulator.service import Service


@dataclass
class Counters:
    """Request-level counters (``/_sim/`` requests are never counted)."""

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    jobs_created: int = 0
    billed_micro: int = 0
    bodies: Counter[str] = field(default_factory=Counter)
    #: Called after every counted request (``RunningSimulator.wait_until`` waits on them).
    listeners: list[Callable[[], None]] = field(default_factory=list)

    def served(self, route: str, status: int | None) -> None:
        """Count one API request; ``status`` None means the connection was dropped."""
        self.requests[route] += 1
        if status is not None:
            self.statuses[str(status)] += 1
            if status == 429:
                self.rate_limited += 1
        for listener in self.listeners:
            listener()


def snapshot(service: Service) -> dict[str, Any]:
    """The ``/_sim/stats`` document."""
    now = service.clock.now()
    counters = service.counters
    return {
        "now": iso_ms(to_ms(now)),
        "now_s": now,
        "requests": dict(counters.requests),
        "statuses": dict(counters.statuses),
        "rate_limited": counters.rate_limited,
        "faults": dict(service.faults.served),
        "jobs_created": counters.jobs_created,
        "job_statuses": dict(Counter(job.status for job in service.lifecycle.jobs.values())),
        "billed_micro": counters.billed_micro,
        "webhooks": {"delivered": service.webhooks.delivered, "failed": service.webhooks.failed},
        "accounts": {
            ident: _account(account, service.options.balance_micro, now)
            for ident, account in service.accounts.by_id.items()
        },
        "bodies": dict(counters.bodies),
    }


def _account(account: Account, balance_micro: int, now_s: float) -> dict[str, Any]:
    running_s, span_s = account.usage(now_s)
    return {
        "balance_micro": balance_micro - account.billed_micro,
        "billed_micro": account.billed_micro,
        "jobs": len(account.jobs),
        "unfinished": account.unfinished,
        "running": account.running,
        "backlogged": account.backlogged,
        "max_unfinished_seen": account.max_unfinished_seen,
        "max_running_seen": account.max_running_seen,
        "running_seconds": running_s,
        "span_seconds": span_s,
    }
