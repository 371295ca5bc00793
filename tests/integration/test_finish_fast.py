"""Finishing fast at any batch size: a sweep every poll_min while an end is unknown, none after.

Figures (how late, in seconds) live in the bench's real-time scenario; these tests pin the
behaviour: the number of sweeps a run makes, and that a run never sleeps after its last job.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from orchestrator.jobs import JobState
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import ledger_rows, manifest_text, run_manifest

S = JobState
NEVER = 1e6  #: API seconds: a sweep interval no test may wait out (1,000 real seconds here)


async def test_the_run_ends_with_its_last_job_without_waiting_for_another_sweep(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Every sweep interval is 10^6 API seconds: the run still ends once its one job is done,
    because the sweep that found it finished is the last thing it waits for."""
    sim = await simulator(time_scale=1000, duration_s=0.001)
    running = run_manifest(sim, tmp_path, manifest_text(1), poll_min_s=NEVER, poll_max_s=NEVER)
    outcome = await asyncio.wait_for(running, timeout=60)
    assert outcome.summary.exit_code == 0
    assert [row.state for row in await ledger_rows(outcome.ledger_path)] == [S.DONE]
    assert sim.stats()["requests"]["GET /jobs"] == 2, "the start floor, then one sweep"


async def test_while_no_duration_is_known_a_sweep_comes_every_poll_min(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """One 40-second job of a model with no finished job yet: it may end at any moment for all
    the run knows, so it sweeps every 2 s (about 20 times), never less often (geometric growth
    up to poll_max would make 7 sweeps and notice the end up to 10 s late)."""
    sim = await simulator(time_scale=100, duration_s=40.0)
    outcome = await run_manifest(
        sim, tmp_path, manifest_text(1), time_scale=100.0, poll_min_s=2.0, poll_max_s=30.0
    )
    assert outcome.summary.exit_code == 0
    sweeps = sim.stats()["requests"]["GET /jobs"] - 1  # the first list is the start floor
    assert 15 <= sweeps <= 21, sweeps
