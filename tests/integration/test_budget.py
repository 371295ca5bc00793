"""The budget cap holds with several submit workers: a price is reserved as it is checked.

Three workers used to pass the same "does it fit" check before any of them counted its price, and
a $1.00 cap billed $1.10. The tests here drive the real pipeline against the simulator, and the
:class:`~orchestrator.budget.Budget` itself, whose reservation is one step.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrator.budget import Budget
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import charged, manifest_text, run_manifest

CLIP = 366_700  # kling-2.5, 5 s


@pytest.mark.parametrize("workers", [1, 3, 6])
async def test_the_cap_holds_with_several_workers(
    simulator: StartSimulator, tmp_path: Path, workers: int
) -> None:
    """$1.00 cap, six $0.3667 clips: two are sent and billed, whatever the number of workers."""
    sim = await simulator(time_scale=1000.0, concurrency=8, backlog=8)
    outcome = await run_manifest(
        sim, tmp_path, manifest_text(6), budget_micro=1_000_000, submit_workers=workers
    )
    assert sim.stats()["jobs_created"] == 2
    assert sum(job["charged_micro"] for job in charged(sim)) == 2 * CLIP
    assert (outcome.summary.stopped, outcome.summary.held_back) == ("budget", 4)


def test_reserve_checks_and_counts_in_one_step() -> None:
    """A reservation counts at once, so the next check sees it; a refusal holds the job back."""
    budget = Budget(1_000_000)
    assert budget.reserve("a", CLIP)
    assert budget.reserve("b", CLIP)
    assert not budget.reserve("c", CLIP)
    assert (budget.exposure_micro, dict(budget.held_back)) == (2 * CLIP, {"c": CLIP})
    budget.release(CLIP)  # "b" was never sent
    assert budget.reserve("c", CLIP)
    assert dict(budget.held_back) == {}
    budget.settle(CLIP, billed=True)
    assert (budget.billed_micro, budget.exposure_micro) == (CLIP, CLIP)


def test_figures_are_read_only() -> None:
    """No stage can edit the figures: only the methods change them."""
    budget = Budget()
    with pytest.raises(AttributeError):
        budget.exposure_micro = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        budget.held_back["x"] = 1  # type: ignore[index]


async def test_a_change_before_the_wait_is_not_missed() -> None:
    """wait_for_change(seen) returns at once when money moved after `seen` was read."""
    budget = Budget(CLIP)
    seen = budget.version
    budget.release(0)  # freed while the caller was still checking
    await asyncio.wait_for(budget.wait_for_change(seen), timeout=1.0)
    seen = budget.version
    waiter = asyncio.ensure_future(budget.wait_for_change(seen))
    await asyncio.sleep(0)
    assert not waiter.done()
    budget.settle(0, billed=False)
    await asyncio.wait_for(waiter, timeout=1.0)
