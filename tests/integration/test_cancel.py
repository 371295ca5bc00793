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
from orchestrator.cli import cancel_command
from orchestrator.config import Settings
from orchestrator.jobs import JobRecord, JobState
from orchestrator.manifest.manifest import load_manifest
from orchestrator.runner import run
from orchestrator.simulator import RunningSimulator
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import ledger_rows, manifest_text, settings_for

S = JobState
DELETE = "DELETE /jobs/{id}"
POST = "POST /generate/video/{provider}/{model}"
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


async def _in_flight(
    sim: RunningSimulator,
    tmp_path: Path,
    count: int,
    planned: int | None = None,
    text: str | None = None,
) -> Settings:
    """``count`` jobs (of ``planned``, the rest pending; or of the manifest ``text``) submitted
    to the frozen simulator and recorded, then the run stopped."""
    settings = settings_for(sim, tmp_path, max_in_flight=count)
    path = tmp_path / "jobs.yaml"
    path.write_text(text or manifest_text(planned or count))
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

    said = await cancel_command.cancel(settings, "b")

    assert said.splitlines() == [
        f"cancelled {JOBS} of {JOBS} jobs in flight",
        cancel_command.CANCELLED_NOTE.format(batch="b"),
    ]
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
        await cancel_command.cancel(settings, "b")
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


STORYBOARD = """\
batch: b
jobs:
  - {id: frame, model: image/google/nano-banana-pro, prompt: a lighthouse keeper, takes: 2}
  - {id: shot, model: kling/kling-2.5, prompt: he climbs, duration: 5, start_image: {from: frame}}
  - {id: sea, model: image/google/nano-banana-pro, prompt: the sea at dawn}
  - {id: sea-shot, model: kling/kling-2.5, prompt: waves, duration: 5, start_image: {from: sea}}
"""


async def test_cancel_counts_the_waiting_jobs_a_resume_would_send_and_the_blocked_apart(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Two stills in flight are cancelled: their shots are blocked (a resume cannot send them),
    the third still stays pending and its shot waiting, and cancel's last lines say so."""
    sim = await simulator(time_scale=0, concurrency=2, backlog=8)
    settings = await _in_flight(sim, tmp_path, 2, text=STORYBOARD)

    said = await cancel_command.cancel(settings, "b")

    assert said.splitlines() == [
        "cancelled 2 of 2 jobs in flight",
        cancel_command.CANCELLED_NOTE.format(batch="b")
        + " to send its 1 pending and 1 waiting jobs",
        "2 waiting jobs are blocked by an input that failed, was cancelled or rejected "
        "(see `orchestrator status`)",
    ]
    states = {r.entry_id: r.state for r in await ledger_rows(settings.ledger_path)}
    assert states == {
        "frame_t1": S.CANCELLED, "frame_t2": S.CANCELLED, "shot_t1": S.WAITING,
        "shot_t2": S.WAITING, "sea": S.PENDING, "sea-shot": S.WAITING,
    }  # fmt: skip


async def test_cancel_goes_where_the_run_went_and_the_next_run_asks_before_sending_more(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Without --api-base, cancel uses the API base the batch's run recorded. It marks the
    batch: a later run sends none of its pending jobs and says why, until --resume-cancelled."""
    sim = await simulator(time_scale=0, concurrency=2, backlog=8)
    settings = await _in_flight(sim, tmp_path, 4, planned=JOBS)
    nowhere = settings.with_(api_base="http://127.0.0.1:9")  # the default, for this test

    said = await cancel_command.cancel(nowhere, "b", recorded_base=True)

    assert said.splitlines() == [
        "cancelled 4 of 4 jobs in flight",
        cancel_command.CANCELLED_NOTE.format(batch="b") + f" to send its {JOBS - 4} pending jobs",
    ]
    posts = sim.stats()["requests"][POST]

    summary = await run(tmp_path / "jobs.yaml", settings)

    assert sim.stats()["requests"][POST] == posts, "a cancelled batch's pending job was sent"
    assert summary.not_selected == JOBS - 4
    assert summary.cancelled_at is not None
    assert summary.counts == {S.CANCELLED: 4, S.PENDING: JOBS - 4}

    resumed = asyncio.create_task(
        run(tmp_path / "jobs.yaml", settings.with_(resume_cancelled=True))
    )
    try:
        await sim.wait_until(lambda stats: stats["requests"][POST] == posts + JOBS - 4)
    finally:
        resumed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await resumed
    rows = await ledger_rows(settings.ledger_path)
    # Stopped once Krea has every POST: the last job's id may not be written yet (its intent
    # stays, for the next run to reconcile), but no job is pending any more.
    sent = [S.SUBMITTED if r.state is S.SUBMITTING else r.state for r in rows]
    assert sorted(sent) == sorted([S.CANCELLED] * 4 + [S.SUBMITTED] * (JOBS - 4))
    assert sum(r.state is S.SUBMITTING for r in rows) <= 1, "only a POST ended as it stopped"
