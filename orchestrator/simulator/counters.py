"""What the simulator counts: requests per route, statuses served, jobs created, money billed.

These counters are the ground truth the client's tests and benchmarks check against: how many
requests each route got, which statuses were served, how many jobs were created from each
exact body (``bodies``: sha256 of model + canonical JSON, so a duplicated submission shows up as
a count of 2), and what every account was billed. ``stats`` turns them into ``/_sim/stats``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Counters:
    """Request-level counters (``/_sim/`` requests are never counted)."""

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    jobs_created: int = 0  #: through the API (the foreign client's are counted apart)
    foreign_jobs: int = 0  #: created by the simulated other client
    foreign_refused: int = 0  #: the other client's jobs refused: slots and backlog full, or 402
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
