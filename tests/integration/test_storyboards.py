"""Storyboards end to end: stills chained into clips through ``{from: ID}``, against the simulator.

The simulator records, for each job, which of its own jobs each input field came from
(``inputs_from``), so "each shot's request carried its own frame's result URL" is asserted on
what Krea received, not on what we meant to send.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

from orchestrator.image_file import check_image
from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from orchestrator.manifest.manifest import load_manifest
from orchestrator.money.export import export
from orchestrator.money.report_sections import dollars
from orchestrator.money.reports import batch_summary
from orchestrator.mp4 import check_mp4
from orchestrator.runner import run
from tests.integration.pipeline_support import (
    assert_exactly_once,
    ledger_rows,
    run_manifest,
    settings_for,
)

STORYBOARD = """\
batch: b
defaults: {duration: 5, aspect_ratio: "16:9"}
jobs:
  - id: keeper-frame
    model: image/google/nano-banana-pro
    prompt: an old lighthouse keeper on a spiral staircase, lantern light, 35mm film
    takes: 3
  - id: keeper-shot
    model: kling/kling-2.5
    prompt: the keeper climbs slowly, the camera follows, dust in the light
    start_image: {from: keeper-frame}
  - id: sea-frame
    model: image/google/nano-banana-pro
    prompt: the sea at dawn below the lighthouse, long lens
  - id: sea-shot
    model: kling/kling-2.5
    prompt: waves roll in, the light turns
    start_image: {from: sea-frame}
    end_image: {from: keeper-frame_t1}
"""


async def test_a_storyboard_sends_each_shot_with_its_own_frames_result(
    simulator, tmp_path: Path
) -> None:
    sim = await simulator(time_scale=1000)
    outcome = await run_manifest(sim, tmp_path, STORYBOARD)
    assert outcome.summary.exit_code == 0
    await assert_exactly_once(sim, outcome, 8)
    rows = {row.entry_id: row for row in await ledger_rows(outcome.ledger_path)}
    remote = {job["job_id"]: job for job in sim.jobs()}
    for take in (1, 2, 3):
        frame, shot = rows[f"keeper-frame_t{take}"], rows[f"keeper-shot_t{take}"]
        assert check_image(outcome.out_dir / (frame.output_path or "")) == "png"
        check_mp4(outcome.out_dir / (shot.output_path or ""))
        sent = remote[shot.remote_id or ""]
        assert sent["inputs_from"] == {"start_image": frame.remote_id}
        assert sent["request"]["start_image"] == frame.result_url
        # sent once its frame had a result: Krea made it after the frame completed
        assert sent["created_at"] >= remote[frame.remote_id or ""]["completed_at"]
    sea = remote[rows["sea-shot"].remote_id or ""]
    assert sea["inputs_from"] == {
        "start_image": rows["sea-frame"].remote_id,
        "end_image": rows["keeper-frame_t1"].remote_id,
    }
    assert {row.state for row in rows.values()} == {JobState.DONE}
    async with Ledger.open(outcome.ledger_path, readonly=True) as ledger:
        summary = (await batch_summary(ledger, "b")).splitlines()
    assert summary[0].startswith(
        f"spend: {dollars(outcome.summary.billed_micro)} billed for 4 clips and 4 stills"
    )
    assert [line.split()[:3] for line in summary[1:3]] == [
        ["image/google/nano-banana-pro", "4", "stills"],
        ["kling/kling-2.5", "4", "clips"],
    ]


async def test_a_rerun_of_a_finished_storyboard_sends_nothing(simulator, tmp_path: Path) -> None:
    sim = await simulator(time_scale=1000)
    await run_manifest(sim, tmp_path, STORYBOARD)
    again = await run_manifest(sim, tmp_path, STORYBOARD)
    assert again.summary.exit_code == 0
    assert sim.stats()["jobs_created"] == 8


async def test_editing_one_frame_remakes_that_frame_and_its_shots_only(
    simulator, tmp_path: Path
) -> None:
    sim = await simulator(time_scale=1000)
    first = await run_manifest(sim, tmp_path, STORYBOARD)
    before = {row.entry_id: row.remote_id for row in await ledger_rows(first.ledger_path)}
    edited = STORYBOARD.replace("the sea at dawn", "the sea at dusk")
    second = await run_manifest(sim, tmp_path, edited)
    assert second.summary.exit_code == 0
    after = {
        row.entry_id: row.remote_id for row in await ledger_rows(second.ledger_path) if row.planned
    }
    remade = {entry for entry in after if after[entry] != before[entry]}
    assert remade == {"sea-frame", "sea-shot"}
    assert sim.stats()["jobs_created"] == 10
    sea = {job["job_id"]: job for job in sim.jobs()}[after["sea-shot"] or ""]
    assert sea["inputs_from"]["start_image"] == after["sea-frame"]


FRAME_ONLY = STORYBOARD.split("  - id: keeper-shot")[0].replace("takes: 3", "takes: 1")
ONE_SHOT = (
    FRAME_ONLY
    + """\
  - id: keeper-shot
    model: kling/kling-2.5
    prompt: the keeper climbs slowly, the camera follows, dust in the light
    start_image: {from: keeper-frame}
    takes: 2
"""
)


def uploads_and_refusals(sim) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(POST /assets, answers of 400) the simulator has seen."""
    stats = sim.stats()
    return stats["requests"].get("POST /assets", 0), stats["statuses"].get("400", 0)


async def test_an_expired_result_url_is_replaced_by_a_fresh_one(simulator, tmp_path: Path) -> None:
    """The frame was made in an earlier run; its recorded URL has expired since. Each shot's
    POST is refused once (free), then sent with a fresh URL from GET /jobs/{id}."""
    sim = await simulator(time_scale=1000, url_ttl_s=10_000)
    await run_manifest(sim, tmp_path, FRAME_ONLY)
    sim.advance(20_000)
    outcome = await run_manifest(sim, tmp_path, ONE_SHOT)
    assert outcome.summary.exit_code == 0
    rows = {row.entry_id: row for row in await ledger_rows(outcome.ledger_path)}
    remote = {job["job_id"]: job for job in sim.jobs()}
    for take in (1, 2):
        shot = rows[f"keeper-shot_t{take}"]
        assert shot.state is JobState.DONE
        assert remote[shot.remote_id or ""]["inputs_from"] == {
            "start_image": rows["keeper-frame"].remote_id
        }
    assert sim.stats()["jobs_created"] == 3
    assert uploads_and_refusals(sim) == (0, 2)  # one refused POST per shot, then a fresh URL


async def test_a_result_krea_no_longer_has_is_sent_as_the_uploaded_file_once(
    simulator, tmp_path: Path
) -> None:
    """The recorded URL is refused and Krea has no such job (GET /jobs/{id} answers 404): the
    frame's verified file is uploaded through /assets, once for both shots."""
    sim = await simulator(time_scale=1000)
    await run_manifest(sim, tmp_path, FRAME_ONLY)
    sim.configure(url_ttl_s=10_000)  # the recorded, unsigned URL is refused from now on
    outcome = await run_manifest(sim, tmp_path, ONE_SHOT, api_key="sk-another-account")
    assert outcome.summary.exit_code == 0
    rows = {row.entry_id: row for row in await ledger_rows(outcome.ledger_path)}
    remote = {job["job_id"]: job for job in sim.jobs()}
    frame_file = outcome.out_dir / (rows["keeper-frame"].output_path or "")
    async with Ledger.open(outcome.ledger_path, readonly=True) as ledger:
        uploaded = await ledger.asset_url(rows["keeper-frame"].sha256 or "")
    assert uploaded is not None
    for take in (1, 2):
        sent = remote[rows[f"keeper-shot_t{take}"].remote_id or ""]
        assert sent["inputs_from"] == {}  # not a result URL: the uploaded file
        assert sent["request"]["start_image"] == uploaded
    assert uploads_and_refusals(sim) == (1, 2)  # each shot refused once; one upload for both
    assert frame_file.exists()


async def test_a_failed_frame_blocks_its_shot_until_a_retry_sends_both(
    simulator, tmp_path: Path
) -> None:
    """Moderation fails every frame: the shots wait, blocked with the reason, and are never
    sent (exit 1). The retry sends the frames again, then the shots."""
    sim = await simulator(time_scale=1000, moderation_rate=1.0)
    first = await run_manifest(sim, tmp_path, ONE_SHOT)
    assert first.summary.exit_code == 1
    rows = {row.entry_id: row for row in await ledger_rows(first.ledger_path)}
    assert rows["keeper-frame"].state is JobState.FAILED
    assert {rows[f"keeper-shot_t{n}"].state for n in (1, 2)} == {JobState.WAITING}
    async with Ledger.open(first.ledger_path, readonly=True) as ledger:
        blocked = await ledger.blocked("b")
    assert [b.entry_id for b in blocked] == ["keeper-shot_t1", "keeper-shot_t2"]
    assert blocked[0].reason.startswith("input keeper-frame failed: ")
    assert "moderation" in blocked[0].reason
    assert sim.stats()["jobs_created"] == 1  # no shot was sent

    sim.configure(moderation_rate=0.0)
    again = await run_manifest(sim, tmp_path, ONE_SHOT, retry_failed=1)
    assert again.summary.exit_code == 0
    rows = {row.entry_id: row for row in await ledger_rows(again.ledger_path)}
    assert {row.state for row in rows.values()} == {JobState.DONE}
    remote = {job["job_id"]: job for job in sim.jobs()}
    for n in (1, 2):
        sent = remote[rows[f"keeper-shot_t{n}"].remote_id or ""]
        assert sent["inputs_from"] == {"start_image": rows["keeper-frame"].remote_id}
    assert sim.stats()["jobs_created"] == 4


async def test_a_trial_of_one_shot_sends_its_frame_too(simulator, tmp_path: Path) -> None:
    """``--only keeper-shot_t2`` sends that shot and the frame it is made from, nothing else."""
    sim = await simulator(time_scale=1000)
    outcome = await run_manifest(sim, tmp_path, STORYBOARD, only=("keeper-shot_t2",))
    assert outcome.summary.exit_code == 0
    rows = {row.entry_id: row for row in await ledger_rows(outcome.ledger_path)}
    sent = {entry for entry, row in rows.items() if row.state is JobState.DONE}
    assert sent == {"keeper-frame_t2", "keeper-shot_t2"}
    assert outcome.summary.not_selected == 6


async def test_export_shows_each_request_as_sent_and_each_result_url(
    simulator, tmp_path: Path
) -> None:
    """The shot's exported request holds the URL its start_image went as (the frame's result),
    in JSON and CSV alike; every job carries its result URL."""
    sim = await simulator(time_scale=1000)
    outcome = await run_manifest(sim, tmp_path, STORYBOARD)
    async with Ledger.open(outcome.ledger_path, readonly=True) as ledger:
        as_json = json.loads(await export(ledger, "b", fmt="json"))
        as_csv = list(csv.DictReader(io.StringIO(await export(ledger, "b", fmt="csv"))))
    jobs = {row["entry_id"]: row for row in as_json}
    remote = {job["job_id"]: job for job in sim.jobs()}
    shot, frame = jobs["keeper-shot_t2"], jobs["keeper-frame_t2"]
    assert shot["request"] == remote[shot["remote_id"]]["request"]  # what Krea received
    assert shot["request"]["start_image"] == frame["result_url"]
    assert shot["inputs_sent"] == {"start_image": frame["result_url"]}
    assert frame["inputs_sent"] is None
    assert all(row["result_url"] for row in as_json)
    row = next(r for r in as_csv if r["entry_id"] == "keeper-shot_t2")
    assert json.loads(row["request"]) == shot["request"]


class Counts:
    """A reporter that keeps the progress's counts by state, as the panel does, and the
    lowest each count ever reached."""

    def __init__(self) -> None:
        self.counts: Counter[JobState] = Counter()
        self.lowest: Counter[JobState] = Counter()

    def start(self, batch: str, counts: dict[JobState, int]) -> None:
        self.counts.update(counts)

    def job_changed(
        self, entry_id: str, old: JobState | None, new: JobState, note: str = ""
    ) -> None:
        if old is not None and old is not new:
            self.counts[old] -= 1
            self.lowest[old] = min(self.lowest[old], self.counts[old])
        if old is not new:
            self.counts[new] += 1

    def spend_changed(self, billed_micro: int, exposure_micro: int) -> None:
        pass


async def test_the_progress_counts_each_waiting_job_once_whenever_it_was_made_pending(
    simulator, tmp_path: Path
) -> None:
    """A shot made pending during the run (by a trigger the progress never hears of) leaves
    the waiting count as it is sent; one already pending when the run began, the pending
    count. No count ever goes below zero, and at the end nothing is waiting or pending."""
    sim = await simulator(time_scale=1000)
    await run_manifest(sim, tmp_path, FRAME_ONLY)  # keeper-frame made: its shots start pending
    path = tmp_path / "jobs.yaml"
    path.write_text(ONE_SHOT + STORYBOARD.split("jobs:\n", 1)[1].replace("keeper", "tower"))
    reporter = Counts()
    summary = await run(load_manifest(path), settings_for(sim, tmp_path), reporter)
    assert summary.exit_code == 0
    assert summary.counts[JobState.DONE] == 3 + 8
    assert all(low >= 0 for low in reporter.lowest.values()), reporter.lowest
    assert reporter.counts[JobState.WAITING] == reporter.counts[JobState.PENDING] == 0
    assert reporter.counts[JobState.DONE] == 3 + 8
