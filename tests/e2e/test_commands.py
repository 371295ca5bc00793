"""`status`, `cancel`, `retry` and `export` as users type them, against a real simulator.

The simulator's clock is frozen (``time_scale=0``) where jobs must stay in flight, so a test
never races a job's completion; nothing waits on a timer.
"""

from __future__ import annotations

import csv
import io
import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest

from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger, Move
from tests.conftest import StartSimulator
from tests.e2e.cli_support import Workdir, wait_for_lines, write_manifest

pytestmark = pytest.mark.e2e
S = JobState
README = (Path(__file__).parents[2] / "README.md").read_text()


async def _interrupted_batch(work: Workdir, submitted: int) -> None:
    """A run that sent ``submitted`` jobs to a frozen simulator, then was stopped with Ctrl-C."""
    proc = await work.start("--max-in-flight", str(submitted))
    await wait_for_lines(proc, "-> submitted", submitted)
    proc.send_signal(signal.SIGINT)
    await proc.communicate()
    assert proc.returncode == 130


async def _rows(work: Workdir) -> list[Any]:
    async with Ledger.open(work.ledger, readonly=True) as ledger:
        return await ledger.jobs(batch="e2e")


def _readme_json(after: str) -> Any:
    """The first ```json block of the README after the text ``after``."""
    block = README.split(after, 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    return json.loads(block.replace('"...",', '"",'))


async def test_status_shows_states_orphans_and_the_age_of_the_oldest_job_in_flight(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Per batch and state, orphans, the oldest in-flight job's age; JSON shaped as the README."""
    sim = await simulator(time_scale=0, concurrency=2, backlog=8)
    work = Workdir(tmp_path, sim, 50)
    write_manifest(tmp_path, 6)
    await _interrupted_batch(work, 4)
    async with Ledger.open(work.ledger) as ledger:
        await ledger.add_orphan(
            "e2e", "remote-x", remote_status="queued", created_at="2026-01-01T00:00:00.000Z",
            price_micro=1, model="kling/kling-2.5", cause="test",
        )  # fmt: skip

    code, out, err = await work.call("status")
    assert code == 0, err
    header, _, row = out.splitlines()
    cells = dict(zip(header.split(), row.split(), strict=False))
    assert (cells["pending"], cells["submitted"], cells["orphans"]) == ("2", "4", "1")
    assert re.fullmatch(r"\d+m\d\ds", row.split()[-1]), row

    code, out, err = await work.call("status", "--format", "json", "--batch", "e2e")
    assert code == 0, err
    [batch] = json.loads(out)
    assert batch["states"] == {"pending": 2, "submitted": 4}
    assert batch["orphans"] == 1
    assert batch["oldest_in_flight_s"] >= 0
    assert re.fullmatch(r"\d+m\d\ds", batch["oldest_in_flight"])
    assert set(batch) == set(_readme_json("**`orchestrator status`**")[0])


async def test_cancel_deletes_every_job_in_flight_and_skips_ambiguous_ones(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """DELETE each submitted job: cancelled ones free, ones Krea finished first (409) completed;
    jobs without a Krea id are skipped and counted."""
    sim = await simulator(time_scale=0, concurrency=2, backlog=8, duration_s=100)
    work = Workdir(tmp_path, sim, 50)
    write_manifest(tmp_path, 6)
    await _interrupted_batch(work, 4)
    sim.advance(150)  # the two running jobs complete at Krea; the ledger still says submitted
    pending = [r.key for r in await _rows(work) if r.state is S.PENDING]
    async with Ledger.open(work.ledger) as ledger:  # as a crash between intent and answer leaves it
        await ledger.apply([Move(pending[0], S.PENDING, S.SUBMITTING, "test: intent")])
        await ledger.apply([Move(pending[0], S.SUBMITTING, S.AMBIGUOUS, "test: answer lost")])

    code, out, err = await work.call("cancel", "--batch", "e2e", "--api-base", sim.url)
    assert code == 0, err
    assert "cancelled 2 of 4 jobs in flight; 2 could no longer be cancelled (2 completed)" in out
    assert "skipped 1 ambiguous jobs" in out
    rows = await _rows(work)
    expected = [S.CANCELLED] * 2 + [S.COMPLETED] * 2 + [S.AMBIGUOUS, S.PENDING]
    assert sorted(r.state for r in rows) == sorted(expected)
    by_remote = {j["job_id"]: j for j in sim.jobs()}
    assert len(by_remote) == 4
    for row in rows:
        if row.state in (S.CANCELLED, S.COMPLETED):
            assert by_remote[row.remote_id or ""]["status"] == row.remote_status == str(row.state)


async def test_cancel_is_refused_while_a_run_holds_the_ledger(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Exit 4 naming the run's pid; nothing is cancelled behind the run's back."""
    sim = await simulator(time_scale=0, concurrency=2, backlog=8)
    work = Workdir(tmp_path, sim, 50)
    write_manifest(tmp_path, 2)
    proc = await work.start()
    try:
        await wait_for_lines(proc, "-> submitted", 2)
        code, _, err = await work.call("cancel", "--batch", "e2e", "--api-base", sim.url)
    finally:
        proc.send_signal(signal.SIGINT)
        await proc.communicate()
    assert code == 4
    assert f"in use by pid {proc.pid}" in err
    assert {j["status"] for j in sim.jobs()} <= {"queued", "backlogged", "scheduled", "processing"}


async def test_cancel_status_and_export_say_bad_input_for_a_missing_ledger_or_batch(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """No ledger file, or a batch it lacks: exit 2 with the path or batch named; nothing created."""
    sim = await simulator(time_scale=200)
    work = Workdir(tmp_path, sim, 200)
    for args in (["status"], ["report"], ["export"], ["cancel", "--batch", "e2e"]):
        code, _, err = await work.call(*args)
        assert code == 2, (args, err)
        assert f"no ledger at {work.ledger}" in err
    assert not work.ledger.exists()
    write_manifest(tmp_path, 1)
    assert (await work.run())[0] == 0
    for args in (["status"], ["report"], ["export"], ["export", "--events"], ["cancel"]):
        code, out, err = await work.call(*args, "--batch", "nope")
        assert (code, out) == (2, ""), (args, err)
        assert "no batch 'nope'" in err


async def test_retry_resends_failed_jobs_as_new_attempts(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Every job fails (exit 1); `retry` gives each one new attempt; each clip is billed once."""
    sim = await simulator(time_scale=200, moderation_rate=1.0)
    work = Workdir(tmp_path, sim, 200)
    write_manifest(tmp_path, 3)
    code, out, _ = await work.run()
    assert code == 1
    assert "not done: 3 failed" in out
    sim.configure(moderation_rate=0.0)
    code, _, err = await work.run(command="retry")
    assert code == 0, err[-2000:]
    rows = await _rows(work)
    assert {r.state for r in rows} == {S.DONE}
    assert {r.attempts for r in rows} == {2}
    charged = [j for j in sim.jobs() if j["charged_micro"]]
    assert {j["job_id"] for j in charged} == {r.remote_id for r in rows}


async def test_export_gives_every_job_and_event_as_csv_and_json(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Jobs and --events, CSV and JSON: one row per job or transition, the same in both forms."""
    sim = await simulator(time_scale=200)
    work = Workdir(tmp_path, sim, 200)
    write_manifest(tmp_path, 3)
    assert (await work.run())[0] == 0
    code, out, err = await work.call("export", "--format", "json", "--batch", "e2e")
    assert code == 0, err
    jobs = json.loads(out)
    assert sorted(j["entry_id"] for j in jobs) == ["clip0000", "clip0001", "clip0002"]
    assert {j["state"] for j in jobs} == {"done"}
    assert all(isinstance(j["request"], dict) for j in jobs)
    code, out, _ = await work.call("export")
    table = list(csv.DictReader(io.StringIO(out)))
    assert code == 0
    assert len(table) == 3
    assert {r["key"] for r in table} == {j["key"] for j in jobs}

    code, out, _ = await work.call("export", "--events", "--format", "json")
    events = json.loads(out)
    assert code == 0
    moves = {(e["from_state"], e["to_state"]) for e in events}
    assert {("pending", "submitting"), ("downloading", "done")} <= moves
    code, out, _ = await work.call("export", "--events", "-o", str(tmp_path / "events.csv"))
    assert code == 0
    written = (tmp_path / "events.csv").read_text()
    assert len(list(csv.DictReader(io.StringIO(written)))) == len(events)
