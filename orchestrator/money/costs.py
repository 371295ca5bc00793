"""Costs: what a batch will cost before it runs (the estimate); pure, integer micro-USD throughout.

Pricing one request lives in prices.py (Krea's tables, schema defaults, manifest overrides);
this module adds the prices of a batch's jobs up and shapes them for people and programs.

``estimate_json`` has a stable shape (the README copies it; add keys, never rename)::

    {
      "batch": "demo",
      "total_usd": 1.101934,            # JSON number = total_micro / 1e6, exact to 6 places
      "total_micro": 1101934,           # integer micro-USD: the number to compute with
      "jobs_count": 2,
      "by_model": {"kling/kling-2.5": {"jobs": 2, "usd": 1.101934, "micro": 1101934}},
      "jobs": [{"id": "eagle", "model": "kling/kling-2.5", "usd": 0.3667, "micro": 366700}, ...],
      "budget_usd": 5.0,                # or null when no budget is set
      "fits_budget": true,              # or null when no budget is set
      "spec_date": "2026-05",           # the Krea spec snapshot the prices come from
      "usd_per_cu": "0.0018335"         # USD per compute unit used to derive them
    }

``by_model`` keys are sorted; ``jobs`` are in manifest order. Sums are integers, so the total
is exactly the sum of the jobs; ``usd`` values are derived from ``micro`` only for display.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.jobs import JobSpec
from orchestrator.money.prices import (
    NO_OVERRIDES,
    PriceOverrides,
    micro_from_usd,
    price_micro,
    seconds_for,
    tables,
    usd,
)

__all__ = [
    "NO_OVERRIDES",
    "Estimate",
    "JobCost",
    "ModelCost",
    "PriceOverrides",
    "estimate",
    "estimate_json",
    "micro_from_usd",
    "price_micro",
    "seconds_for",
    "usd",
]


class _Planned(Protocol):
    """What :func:`estimate` needs of a manifest (so costs does not import manifest)."""

    @property
    def batch(self) -> str: ...
    @property
    def budget_micro(self) -> int | None: ...
    @property
    def specs(self) -> list[JobSpec]: ...


@dataclass(frozen=True)
class JobCost:
    """One job's estimated price."""

    id: str
    model: str
    micro: int


@dataclass
class ModelCost:
    """The jobs of one model, added up."""

    jobs: int = 0
    micro: int = 0


@dataclass(frozen=True)
class Estimate:
    """A batch's estimated cost, before anything is sent."""

    batch: str
    total_micro: int
    jobs_count: int
    by_model: dict[str, ModelCost]
    jobs: list[JobCost]
    budget_micro: int | None = None
    spec_date: str = field(default_factory=lambda: tables().spec_date)
    usd_per_cu: str = field(default_factory=lambda: tables().usd_per_cu)

    @property
    def fits_budget(self) -> bool | None:
        """True when the total is within the budget; None without a budget."""
        return None if self.budget_micro is None else self.total_micro <= self.budget_micro


def estimate(
    planned: _Planned | Sequence[JobSpec],
    budget_micro: int | None = None,
    *,
    itemized: bool = True,
) -> Estimate:
    """Add up the jobs' prices; ``budget_micro`` defaults to the manifest's own budget.

    Without ``itemized``, ``jobs`` is left empty: the totals of 100,000 jobs need no list of them.
    """
    if isinstance(planned, Sequence):
        specs, batch = list(planned), (planned[0].batch if planned else "")
    else:
        specs, batch = planned.specs, planned.batch
        budget_micro = planned.budget_micro if budget_micro is None else budget_micro
    by_model: dict[str, ModelCost] = {}
    for spec in specs:
        total = by_model.get(spec.model)
        if total is None:
            total = by_model[spec.model] = ModelCost()
        total.jobs += 1
        total.micro += spec.price_micro
    jobs = [JobCost(spec.entry_id, spec.model, spec.price_micro) for spec in specs if itemized]
    return Estimate(
        batch=batch,
        total_micro=sum(cost.micro for cost in by_model.values()),
        jobs_count=len(specs),
        by_model=dict(sorted(by_model.items())),
        jobs=jobs,
        budget_micro=budget_micro,
    )


def estimate_json(result: Estimate) -> dict[str, Any]:
    """The estimate in the stable JSON shape documented above."""
    budget = result.budget_micro
    return {
        "batch": result.batch,
        "total_usd": usd(result.total_micro),
        "total_micro": result.total_micro,
        "jobs_count": result.jobs_count,
        "by_model": {
            model: {"jobs": cost.jobs, "usd": usd(cost.micro), "micro": cost.micro}
            for model, cost in result.by_model.items()
        },
        "jobs": [
            {"id": job.id, "model": job.model, "usd": usd(job.micro), "micro": job.micro}
            for job in result.jobs
        ],
        "budget_usd": None if budget is None else usd(budget),
        "fits_budget": result.fits_budget,
        "spec_date": result.spec_date,
        "usd_per_cu": result.usd_per_cu,
    }
