"""What will happen to a job, decided once when it is created: its fate, its duration, its walk.

Deciding up front from seeded generators (one for fates, one for durations) keeps a run
reproducible: the same seed and the same submissions give the same outcomes whatever the
polling pattern. The walk is a list of ``(offset_s, status)`` steps measured from the moment the
job leaves the backlog; ``lifecycle`` schedules them on the virtual clock.

Durations (total, simulated seconds), from Krea's docs and spec:

* a price-table "Average Completion Time" cell when the request's row has one (Seedance,
  Wan 2.1 ~97 s, Wan 2.2 ~113 s), ±15 %;
* Veo 3 ~5 min and Wan 2.5 ~3 min (±15 %);
* everything else, Kling 2.5's documented "60–120 seconds", uniformly.

Stage split of a successful job: queued 5 %, scheduled 5 %, processing 65 %, sampling the rest
(with an intermediate-complete preview during the last 10 % when the job has one).
Failures: moderation fails at the end of ``scheduled`` (early, before any GPU work); a provider
error halfway through ``processing``; a system cancel at 30 %; a timeout stays ``processing``
until ``job_timeout_s`` after the job started.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.simulator.billing import cell_number, matching_row
from orchestrator.spec import Endpoint

COMPLETED = "completed"
MODERATION = "moderation"
PROVIDER_ERROR = "provider_error"
TIMEOUT = "timeout"
SYSTEM_CANCELLED = "system_cancelled"

#: Failure code -> the message shown in ``error.message``.
ERROR_MESSAGES = {
    MODERATION: "The request was flagged by content moderation.",
    PROVIDER_ERROR: "The model provider returned an error.",
    TIMEOUT: "The job did not finish within the provider time limit.",
    SYSTEM_CANCELLED: "The job was cancelled by the system.",
}

_TYPICAL_S = {"google/veo-3": 300.0, "alibaba/wan-2.5": 180.0}
_DEFAULT_RANGE_S = (60.0, 120.0)
_SPREAD = 0.15


@dataclass(frozen=True, slots=True)
class Plan:
    """A job's fate: how long it takes and how it ends."""

    total_s: float
    outcome: str  #: COMPLETED or one of the failure codes
    intermediate: bool  #: passes through intermediate-complete with a preview


class Planner:
    """Draws plans from two seeded generators (fates and durations are independent streams)."""

    def __init__(self, seed: int, stream: str = "") -> None:
        # ``stream`` names an independent pair (the foreign client's), so its draws never shift
        # the fates of the client under test.
        self._fates = random.Random(f"{seed}/{stream}fates")
        self._durations = random.Random(f"{seed}/{stream}durations")

    def plan(
        self,
        endpoint: Endpoint,
        body: Mapping[str, Any],
        rates: Mapping[str, float],
        fixed_s: float | None,
    ) -> Plan:
        """Decide a job's outcome from ``rates`` (code -> share) and its total duration."""
        draw, preview = self._fates.random(), self._fates.random()
        outcome = COMPLETED
        for code in (MODERATION, PROVIDER_ERROR, TIMEOUT, SYSTEM_CANCELLED):
            if draw < rates.get(code, 0.0):
                outcome = code
                break
            draw -= rates.get(code, 0.0)
        total = fixed_s if fixed_s is not None else self._duration(endpoint, body)
        intermediate = outcome == COMPLETED and preview < rates.get("intermediate", 0.0)
        return Plan(total_s=total, outcome=outcome, intermediate=intermediate)

    def _duration(self, endpoint: Endpoint, body: Mapping[str, Any]) -> float:
        typical = _table_seconds(endpoint, body) or _TYPICAL_S.get(endpoint.model)
        if typical is None:
            return self._durations.uniform(*_DEFAULT_RANGE_S)
        return self._durations.uniform(typical * (1 - _SPREAD), typical * (1 + _SPREAD))


def _table_seconds(endpoint: Endpoint, body: Mapping[str, Any]) -> float | None:
    row = matching_row(endpoint, body)
    cell = row.get("Average Completion Time") if row else None
    number = cell_number(cell) if cell else None
    return float(number) if number is not None else None


def steps(plan: Plan, timeout_s: float) -> tuple[tuple[float, str], ...]:
    """The walk from leaving the backlog: ``(offset_s, status)``; the last step is terminal."""
    t = plan.total_s
    head = ((0.0, "queued"), (0.05 * t, "scheduled"))
    if plan.outcome == MODERATION:
        return (*head, (0.10 * t, "failed"))
    running = (*head, (0.10 * t, "processing"))
    if plan.outcome == PROVIDER_ERROR:
        return (*running, (0.50 * t, "failed"))
    if plan.outcome == SYSTEM_CANCELLED:
        return (*running, (0.30 * t, "cancelled"))
    if plan.outcome == TIMEOUT:
        return (*running, (max(timeout_s, 0.10 * t), "failed"))
    tail = ((0.90 * t, "intermediate-complete"),) if plan.intermediate else ()
    return (*running, (0.75 * t, "sampling"), *tail, (t, "completed"))
