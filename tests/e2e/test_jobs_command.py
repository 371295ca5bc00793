"""`orchestrator jobs` and `status` as users read them: every job, why it failed, 100 columns.

A real run against a simulator that refuses about half the prompts (moderation), then the
listing in a subprocess, checked against the ledger it reads. Nothing waits on a timer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.jobs import JobRecord, JobState
from orchestrator.ledger import Ledger, Move
from tests.conftest import StartSimulator
from tests.e2e.cli_support import Workdir

pytestmark = pytest.mark.e2e
S = JobState
ENTRIES = 8
#: Ids longer than the table's id column: the number first, so a cut id still tells them apart.
LONG_ID = "{:02d}-spring-campaign-opening-sequence-wide-shot"


async def _failed_batch(simulator: StartSimulator, root: Path) -> tuple[Workdir, list[JobRecord]]:
    """A finished run where moderation failed some jobs and the rest are done; its rows."""
    sim = await simulator(moderation_rate=0.5, seed=7, time_scale=400)
    work = Workdir(root, sim, 400)
    jobs = "\n".join(f"  - id: {LONG_ID.format(i)}\n    prompt: scene {i}" for i in range(ENTRIES))
    (root / "jobs.yaml").write_text(
        f"batch: e2e\ndefaults:\n  model: kling/kling-2.5\n  duration: 5\njobs:\n{jobs}\n"
    )
    code, _, err = await work.run()
    assert code == 1, err  # some jobs failed
    async with Ledger.open(work.ledger, readonly=True) as ledger:
        rows = await ledger.jobs(batch="e2e", current_only=True)
    states = {r.state for r in rows}
    assert states == {S.DONE, S.FAILED}, states
    return work, rows


def _body(out: str) -> list[str]:
    """The table's job lines (after the header and its rule)."""
    header, rule, *lines = out.splitlines()
    assert header.split()[:4] == ["id", "model", "state", "price"], header
    assert set(rule) <= {"-", " "}
    return lines


def _assert_fits(out: str) -> None:
    too_wide = [line for line in out.splitlines() if len(line) > 100]
    assert not too_wide, too_wide


async def test_jobs_lists_every_job_in_manifest_order_with_its_state(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """One line per job, in manifest order: its id (cut to fit, with an ellipsis), model,
    state and price; a done job's file; nothing wider than 100 columns."""
    work, rows = await _failed_batch(simulator, tmp_path)
    code, out, err = await work.call("jobs")
    assert code == 0, err
    _assert_fits(out)
    lines = _body(out)
    assert len(lines) == ENTRIES
    for row, line in zip(rows, lines, strict=True):
        cells = line.split()
        assert row.entry_id.startswith(cells[0].rstrip("…")), (row.entry_id, line)
        assert "…" in cells[0]  # the id was longer than its column
        assert cells[1:4] == [row.model, row.state.value, "$0.37"], line
        if row.state is S.DONE:  # its file, cut at the start to keep the end of its name
            tail = line.split("$0.37", 1)[1].strip()
            assert tail.startswith("…"), line
            assert tail.endswith(".mp4"), line
            assert str(work.out / (row.output_path or "?")).endswith(tail[1:]), line


async def test_jobs_state_failed_lists_only_failed_jobs_with_kreas_reason(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """`--state failed` (and a list: `--state failed,rejected`) keeps the failed jobs only,
    each with the reason Krea gave."""
    work, rows = await _failed_batch(simulator, tmp_path)
    failed = [r for r in rows if r.state is S.FAILED]
    for states in ("failed", "failed,rejected", "FAILED, rejected"):
        code, out, err = await work.call("jobs", "--state", states, "--batch", "e2e")
        assert code == 0, err
        _assert_fits(out)
        lines = _body(out)
        assert len(lines) == len(failed), out
        for row, line in zip(failed, lines, strict=True):
            assert line.split()[2] == "failed"
            assert "moderation: The request was flagged" in line
            assert (row.last_error or "").startswith("moderation:")
    code, out, _ = await work.call("jobs", "--state", "rejected")
    assert (code, out.strip()) == (0, "no jobs match")


async def test_jobs_json_is_a_list_of_every_job_with_every_field_in_full(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """`--format json`: a JSON list in manifest order; ids and reasons whole, done jobs' files."""
    work, rows = await _failed_batch(simulator, tmp_path)
    code, out, err = await work.call("jobs", "--format", "json")
    assert code == 0, err
    listed = json.loads(out)
    assert [j["id"] for j in listed] == [r.entry_id for r in rows]
    for job, row in zip(listed, rows, strict=True):
        assert job["state"] == row.state.value
        assert job["reason"] == row.last_error
        assert job["price_micro"] == row.price_micro
        assert job["price_usd"] == row.price_micro / 1_000_000
        assert (job["key"], job["model"], job["batch"]) == (row.key, row.model, "e2e")
        if row.state is S.DONE:
            assert Path(job["file"]) == work.out / (row.output_path or "?")
            assert row.sha256  # verified on disk by the run
        else:
            assert job["file"] is None
            assert job["reason"].startswith("moderation:")
    code, out, _ = await work.call("jobs", "--format", "json", "--state", "cancelled")
    assert (code, json.loads(out)) == (0, [])


async def test_jobs_refuses_an_unknown_state_naming_the_valid_ones(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """A state that does not exist is a usage error (exit 2) listing every valid state; a
    missing ledger is bad input too."""
    work, _ = await _failed_batch(simulator, tmp_path)
    code, out, err = await work.call("jobs", "--state", "failed,faild")
    assert code == 2
    assert not out
    assert "'faild'" in err
    for state in JobState:
        if state is not S.ORPHAN:
            assert state.value in err, err
    work.ledger.unlink()
    code, _, err = await work.call("jobs")
    assert code == 2
    assert f"no ledger at {work.ledger}" in err


async def test_status_fits_100_columns_whatever_states_the_jobs_are_in(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Jobs in eight states, an orphan and a job in flight: `status` still fits 100 columns,
    and `jobs` lists each job in its state."""
    work, rows = await _failed_batch(simulator, tmp_path)
    done = [r.key for r in rows if r.state is S.DONE]
    failed = [r.key for r in rows if r.state is S.FAILED]
    assert len(done) >= 2
    assert len(failed) >= 2
    async with Ledger.open(work.ledger) as ledger:
        await ledger.apply([Move(done[0], S.DONE, S.COMPLETED, "test: file gone")])
        await ledger.apply([Move(done[0], S.COMPLETED, S.DOWNLOADING, "test: fetching")])
        await ledger.apply([Move(done[1], S.DONE, S.COMPLETED, "test: file gone")])
        for key, steps in ((failed[0], [S.PENDING, S.REJECTED]),
                           (failed[1], [S.PENDING, S.SUBMITTING, S.AMBIGUOUS])):  # fmt: skip
            state = S.FAILED
            for step in steps:
                await ledger.apply([Move(key, state, step, "test")])
                state = step
        await ledger.add_orphan(
            "e2e", "remote-x", remote_status="queued", created_at="2026-01-01T00:00:00.000Z",
            price_micro=1, model="kling/kling-2.5", cause="test",
        )  # fmt: skip
        expected = {r.entry_id: r.state for r in await ledger.jobs(batch="e2e", current_only=True)}
    assert len(set(expected.values())) == 6

    code, out, err = await work.call("status")
    assert code == 0, err
    _assert_fits(out)
    code, out, err = await work.call("jobs")
    assert code == 0, err
    _assert_fits(out)
    listed = [line.split()[2] for line in _body(out)]
    assert listed == list(expected.values())
