"""The ``GET /_sim/stats`` snapshot: the service's counters, faults, jobs and accounts as JSON.

The counters themselves live in ``counters`` (the service owns them); this module only reads a
running service, so it imports the service and the service never imports it. Accounts appear by id
only, never by token.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from orchestrator.simulator.accounts import Account
from orchestrator.simulator.clock import iso_ms, to_ms
from orchestrator.simulator.service import Service


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
        "foreign_jobs": counters.foreign_jobs,
        "foreign_refused": counters.foreign_refused,
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
