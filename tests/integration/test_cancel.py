"""`orchestrator cancel` against a faulty simulator: paced, retried, and stopped only by the key.

A run sends the batch to a simulator whose clock is frozen (so every job stays in flight) and is
stopped as Ctrl-C would; then faults are switched on and the batch is cancelled. Waits follow
the simulator's answers (``wait_until``); cancel's backoff runs on the same scaled clock as a run.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from orchestrator import errors
from orchestrator.cli import commands
from orchestrator.config import Settings
from orchestrator.jobs import JobRecord, JobState
from orchestrator.manifest.manifest import load_manifest
from orchestrator.runner import run
from orchestrator.simulator import RunningSimulator
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import ledger_rows, manifest_text, settings_for

S = JobState
DELETE = "DELETE /jobs/{id}"
JOBS = 6
#: Switched on for the cancel alone. The new seed restarts the fault draws, so whatever the run
#: sent before, the cancel's first requests meet 5xx at once and a reset by the 8th, never more
#: than 3 faults in a row (far from giving up); the rate limit adds 429s with Retry-After.
FAULTS = {
    "seed": 2,
    "fault_5xx_rate": 0.2,
    "fault_reset_rate": 0.2,
    "rate_limit_rps": 3,
    "retry_after_s": 1,
}


async def _in_flight(sim: RunningSimulator, tmp_path: Path, count: int) -> Settings:
    """``count`` jobs submitted to the frozen simulator and recorded, then the run stopped."""
    settings = settings_for(sim, tmp_path, max_in_flight=count)
    path = tmp_path / "jobs.yaml"
    path.write_text(manifest_text(count))
    task = asyncio.create_task(run(load_manifest(path), settings))
    try:
        submitted, seen = 0, 0  # the run writes its ledger before its first request
        while submitted < count:  # the run keeps sweeping: each answer is a moment to look again
            await sim.wait_until(lambda stats, seen=seen: _answered(stats) > seen)
            seen = _answered(sim.stats())
            rows = await ledger_rows(settings.ledger_path)
            submitted = sum(r.state is S.SUBMITTED for r in rows)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return settings


def _answered(stats: dict[str, Any]) -> int:
    return sum(stats["requests"].values())


def _states(rows: list[JobRecord]) -> list[JobState]:
    return sorted(r.state for r in rows)


async def test_cancel_waits_out_resets_5xx_and_429s_and_cancels_every_job(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Dropped connections, 5xx and a request-rate limit only delay `cancel`: every job ends
    cancelled at Krea and in the ledger, and the summary counts them all."""
    sim = await simulator(time_scale=0, concurrency=2, backlog=8)
    settings = await _in_flight(sim, tmp_path, JOBS)
    sim.configure(**FAULTS)

    said = await commands.cancel(settings, "b")

    assert said == f"cancelled {JOBS} of {JOBS} jobs in flight"
    stats = sim.stats()
    assert stats["faults"]["reset"] >= 1
    assert stats["faults"]["5xx"] >= 1
    assert stats["rate_limited"] >= 1
    rows = await ledger_rows(settings.ledger_path)
    assert _states(rows) == [S.CANCELLED] * JOBS
    at_krea = {job["job_id"]: job for job in sim.jobs()}
    for row in rows:
        assert row.remote_status == "cancelled"
        assert at_krea[row.remote_id or ""]["status"] == "cancelled"
        assert at_krea[row.remote_id or ""]["charged_micro"] == 0


async def test_cancel_stops_at_a_refused_key_and_says_what_it_left_in_flight(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """A 401 is not retried: cancel stops at once, keeps what it cancelled, and its error says
    how many jobs are still in flight; nothing more is sent."""
    sim = await simulator(time_scale=0, concurrency=2, backlog=8)
    settings = await _in_flight(sim, tmp_path, JOBS)
    deletes = sim.stats()["requests"].get(DELETE, 0)

    async def revoke_the_key_after_two_deletes() -> None:
        await sim.wait_until(lambda stats: stats["requests"].get(DELETE, 0) >= deletes + 2)
        sim.configure(tokens="another-account")

    revoking = asyncio.create_task(revoke_the_key_after_two_deletes())
    with pytest.raises(errors.Unauthorized) as stopped:
        await commands.cancel(settings, "b")
    await revoking

    message = stopped.value.message
    assert "HTTP 401" in message
    assert f"cancelled 2 of {JOBS} jobs in flight" in message
    assert f"{JOBS - 2} not cancelled (still in flight)" in message
    assert sim.stats()["requests"][DELETE] == deletes + 3  # the refused one, then nothing
    rows = await ledger_rows(settings.ledger_path)
    assert _states(rows) == sorted([S.CANCELLED] * 2 + [S.SUBMITTED] * (JOBS - 2))
    at_krea = {job["job_id"]: job["status"] for job in sim.jobs()}
    assert sorted(at_krea[r.remote_id or ""] == "cancelled" for r in rows) == sorted(
        r.state is S.CANCELLED for r in rows
    )
