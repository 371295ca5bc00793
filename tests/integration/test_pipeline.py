"""The pipeline end to end against the simulator: submit, poll, download, resume, pay once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from orchestrator.simulator import media_sha256_for
from tests.hostile.support import Recorder, run_recorded
from tests.integration.pipeline_support import (
    assert_exactly_once,
    charged,
    ledger_events,
    ledger_rows,
    manifest_text,
    run_manifest,
)
from tests.samples import MINIMAL

S = JobState
START_FRAME = Path(__file__).parent.parent.parent / "data" / "start-frame.png"


def copy_start_frame(target: Path) -> None:
    shutil.copyfile(START_FRAME, target)


async def test_the_minimal_manifest_ends_with_two_verified_files(simulator, tmp_path: Path) -> None:
    """The issue's manifest, as written: two MP4s, byte-identical to what Krea served, paid once."""
    sim = await simulator(time_scale=1000, concurrency=2)
    outcome = await run_manifest(sim, tmp_path, MINIMAL)
    assert outcome.summary.exit_code == 0
    rows = {r.entry_id: r for r in await ledger_rows(outcome.ledger_path, "demo")}
    assert set(rows) == {"eagle", "harbour"}
    for row in rows.values():
        assert (outcome.out_dir / "demo" / f"{row.entry_id}.mp4").exists()
        assert row.sha256 == media_sha256_for(row.remote_id or "")
    assert outcome.summary.billed_micro == 366_700 + 735_234 == sim.stats()["billed_micro"]


async def test_a_second_run_sends_nothing(simulator, tmp_path: Path) -> None:
    """Re-running a finished manifest makes no POST and leaves every file in place."""
    sim = await simulator(time_scale=1000)
    await run_manifest(sim, tmp_path, manifest_text(5))
    posts = sim.stats()["requests"].get("POST /generate/video/{provider}/{model}", 0)
    again = await run_manifest(sim, tmp_path, manifest_text(5))
    assert again.summary.exit_code == 0
    assert sim.stats()["requests"]["POST /generate/video/{provider}/{model}"] == posts == 5


async def test_editing_one_prompt_sends_exactly_one_post(simulator, tmp_path: Path) -> None:
    """P2.4: one edited prompt is one new job; the other entries are untouched."""
    sim = await simulator(time_scale=1000)
    await run_manifest(sim, tmp_path, manifest_text(4))
    edited = manifest_text(4).replace("shot number 2", "shot number two, now at dusk")
    await run_manifest(sim, tmp_path, edited)
    assert sim.stats()["jobs_created"] == 5


async def test_backlog_and_429_are_absorbed_without_duplicates(simulator, tmp_path: Path) -> None:
    """A small account (2 running, 2 backlog) says 429 to an unconfigured client; all end once."""
    sim = await simulator(time_scale=1000, concurrency=2, backlog=2, seed=3)
    outcome = await run_manifest(sim, tmp_path, manifest_text(20))
    assert outcome.summary.exit_code == 0
    await assert_exactly_once(sim, outcome, 20)
    assert sim.stats()["rate_limited"] >= 1  # the window discovered the limit


async def test_configured_limits_cause_no_429(simulator, tmp_path: Path) -> None:
    """With max_in_flight = concurrency + backlog and the rate configured, Krea never says 429."""
    sim = await simulator(time_scale=1000, concurrency=2, backlog=3, rate_limit_rps=50)
    outcome = await run_manifest(
        sim, tmp_path, manifest_text(15), max_in_flight=5, requests_per_second=50
    )
    await assert_exactly_once(sim, outcome, 15)
    assert sim.stats()["rate_limited"] == 0


async def test_ambiguous_posts_are_reconciled_not_resent(simulator, tmp_path: Path) -> None:
    """P2.2: POSTs that create a job and then lose the answer never lead to a second billed job."""
    sim = await simulator(
        time_scale=1000, concurrency=3, backlog=6, fault_ambiguous_rate=0.3, seed=11
    )
    outcome = await run_manifest(sim, tmp_path, manifest_text(25))
    assert sim.stats()["faults"].get("ambiguous", 0) >= 3
    await assert_exactly_once(sim, outcome, 25)
    assert all(count == 1 for count in sim.stats()["bodies"].values())


async def test_every_api_fault_at_once_still_pays_once(simulator, tmp_path: Path) -> None:
    """5xx, resets, malformed answers, ambiguous POSTs, cut downloads at once: each entry once."""
    sim = await simulator(
        time_scale=1000,
        concurrency=3,
        backlog=6,
        seed=5,
        fault_5xx_rate=0.1,
        fault_reset_rate=0.05,
        fault_malformed_rate=0.05,
        fault_ambiguous_rate=0.1,
        fault_truncate_rate=0.3,
    )
    outcome = await run_manifest(sim, tmp_path, manifest_text(30))
    await assert_exactly_once(sim, outcome, 30)


async def test_failures_are_free_and_final_unless_retried(simulator, tmp_path: Path) -> None:
    """Failed and cancelled jobs cost nothing and stay failed; --retry-failed gives new attempts."""
    sim = await simulator(time_scale=1000, moderation_rate=0.3, system_cancel_rate=0.1, seed=2)
    first = await run_manifest(sim, tmp_path, manifest_text(12))
    rows = await ledger_rows(first.ledger_path)
    lost = [r for r in rows if r.state in (S.FAILED, S.CANCELLED)]
    assert lost
    assert first.summary.exit_code == 1
    assert first.summary.billed_micro == sim.stats()["billed_micro"] == 366_700 * (12 - len(lost))
    sim.configure(moderation_rate=0.0, system_cancel_rate=0.0)
    second = await run_manifest(sim, tmp_path, manifest_text(12), retry_failed=1)
    assert second.summary.exit_code == 0
    assert len(charged(sim)) == 12


async def test_402_stops_new_jobs_and_lets_the_rest_finish(simulator, tmp_path: Path) -> None:
    """Krea's 402: nothing new is sent, jobs in flight still finish and download, exit code 3."""
    sim = await simulator(time_scale=1000, concurrency=2, backlog=2, balance_usd="1.50")
    outcome = await run_manifest(sim, tmp_path, manifest_text(8))
    assert outcome.summary.exit_code == 3
    assert outcome.summary.stopped == "funds"
    rows = await ledger_rows(outcome.ledger_path)
    done = [r for r in rows if r.state is S.DONE]
    assert len(done) == 4  # $1.50 covers four $0.3667 clips
    assert len(charged(sim)) == 4
    assert all(r.state in (S.DONE, S.PENDING) for r in rows)


async def test_the_budget_cap_holds_back_what_does_not_fit(simulator, tmp_path: Path) -> None:
    """A $1.00 cap: two clips are sent, the rest are held back and said once in all, exit 3."""
    sim = await simulator(time_scale=1000)
    recorder = Recorder()
    outcome = await run_recorded(sim, tmp_path, manifest_text(6), recorder, budget_micro=1_000_000)
    assert outcome.summary.stopped == "budget"
    assert outcome.summary.exit_code == 3
    assert outcome.summary.held_back == 4
    assert outcome.summary.billed_micro == sim.stats()["billed_micro"] == 2 * 366_700
    held = recorder.noted("the budget cap holds back")
    assert len(held) == 1, held  # one line for the run, not one per job or per pass


async def test_a_retired_model_is_rejected_and_never_retried(simulator, tmp_path: Path) -> None:
    """410: the job is rejected with Krea's reason and the replacement; one POST only."""
    sim = await simulator(time_scale=1000, retired_models="kling/kling-2.5=kling/kling-2.6")
    outcome = await run_manifest(sim, tmp_path, manifest_text(2))
    rows = await ledger_rows(outcome.ledger_path)
    assert all(r.state is S.REJECTED for r in rows)
    assert "kling-2.6" in (rows[0].last_error or "")
    assert sim.stats()["requests"]["POST /generate/video/{provider}/{model}"] == 2
    assert outcome.summary.exit_code == 1


async def test_expired_urls_are_refreshed(simulator, tmp_path: Path) -> None:
    """P4.5: a stored media URL that expired before its download gets a fresh one (GET /jobs/{id}).

    The first run's downloads are all cut short (range ignored, so they never add up) and parked
    with their URLs, valid for ten hours; twenty hours later every one has expired.
    """
    sim = await simulator(
        time_scale=1000, url_ttl_s=36_000, fault_truncate_rate=1.0, range_mode="ignore"
    )
    first = await run_manifest(sim, tmp_path, manifest_text(4))
    assert first.summary.counts == {JobState.COMPLETED: 4}
    sim.configure(fault_truncate_rate=0.0, range_mode="honour", time_scale=1.0)
    sim.advance(72_000)
    before = sim.stats()
    outcome = await run_manifest(sim, tmp_path, manifest_text(4))
    await assert_exactly_once(sim, outcome, 4)
    after = sim.stats()
    fresh = after["requests"]["GET /jobs/{id}"] - before["requests"].get("GET /jobs/{id}", 0)
    assert fresh == 4  # one fresh URL per job, no more
    assert after["statuses"]["403"] - before["statuses"].get("403", 0) == 4  # each stored URL


async def test_big_files_resume_after_truncation(simulator, tmp_path: Path) -> None:
    """P4.3: 3 MB files cut short half the time resume with Range and verify."""
    sim = await simulator(time_scale=1000, media_bytes=3_000_000, fault_truncate_rate=0.5, seed=9)
    outcome = await run_manifest(sim, tmp_path, manifest_text(4))
    await assert_exactly_once(sim, outcome, 4)
    rows = await ledger_rows(outcome.ledger_path)
    assert all(r.bytes == 3_000_000 for r in rows)
    assert not list(outcome.out_dir.rglob("*.part"))


async def test_a_server_that_ignores_ranges_still_yields_whole_files(
    simulator, tmp_path: Path
) -> None:
    """A 200 to a Range request restarts the file from zero instead of appending to it."""
    sim = await simulator(
        time_scale=1000, media_bytes=1_000_000, fault_truncate_rate=0.5, range_mode="ignore"
    )
    outcome = await run_manifest(sim, tmp_path, manifest_text(3))
    await assert_exactly_once(sim, outcome, 3)


async def test_list_sweeps_use_far_fewer_calls_than_per_job_polling(
    simulator, tmp_path: Path
) -> None:
    """The poller notices 40 completions with well under one status call per job."""
    sim = await simulator(time_scale=1000, concurrency=10, backlog=40)
    outcome = await run_manifest(sim, tmp_path, manifest_text(40), poll_min_s=2.0, poll_max_s=30.0)
    await assert_exactly_once(sim, outcome, 40)
    requests = sim.stats()["requests"]
    status_calls = requests.get("GET /jobs", 0) + requests.get("GET /jobs/{id}", 0)
    assert status_calls / 40 < 1.0


async def test_a_job_krea_no_longer_knows_fails_instead_of_hanging(
    simulator, tmp_path: Path
) -> None:
    """A submitted job answered 404 again and again ends as failed (free); the run still ends."""
    from orchestrator.ledger import Ledger
    from orchestrator.manifest.manifest import load_manifest
    from orchestrator.runner import sync_manifest
    from tests.integration.pipeline_support import settings_for

    sim = await simulator(time_scale=1000)
    (tmp_path / "jobs.yaml").write_text(manifest_text(2))
    settings = settings_for(sim, tmp_path)
    async with Ledger.open(settings.ledger_path) as ledger:
        await sync_manifest(ledger, load_manifest(tmp_path / "jobs.yaml"), settings)
        ghost = (await ledger.jobs(batch="b"))[0]
        await ledger.transition(ghost.key, S.SUBMITTING, expect=S.PENDING, cause="test")
        await ledger.transition(ghost.key, S.SUBMITTED, expect=S.SUBMITTING, cause="test",
                                remote_id="00000000-0000-4000-8000-000000000000",
                                remote_created_at="2020-01-01T00:00:00.000Z")  # fmt: skip
    outcome = await run_manifest(sim, tmp_path, manifest_text(2))
    rows = {r.entry_id: r for r in await ledger_rows(outcome.ledger_path)}
    assert rows[ghost.entry_id].state is S.FAILED
    assert "404" in (rows[ghost.entry_id].last_error or "")
    assert rows["j1"].state is S.DONE
    assert outcome.summary.exit_code == 1


async def test_local_start_images_are_uploaded_once_and_sent_as_asset_urls(
    simulator, tmp_path: Path
) -> None:
    """A local file is uploaded once per content hash; every job using it POSTs the asset URL."""
    copy_start_frame(tmp_path / "frame.png")
    extra = "  start_image: frame.png\n"
    sim = await simulator(time_scale=1000)
    outcome = await run_manifest(sim, tmp_path, manifest_text(3, extra=extra))
    await assert_exactly_once(sim, outcome, 3)
    assert sim.stats()["requests"]["POST /assets"] == 1
    urls = {job["request"]["start_image"] for job in sim.jobs()}
    assert len(urls) == 1
    assert urls.pop().startswith(sim.url)
    again = await run_manifest(sim, tmp_path, manifest_text(4, extra=extra))
    assert again.summary.exit_code == 0
    assert sim.stats()["requests"]["POST /assets"] == 1  # cached in the ledger by content hash


@pytest.mark.parametrize("workers", [2, 3])
async def test_several_submit_workers_never_take_the_same_job(
    simulator, tmp_path: Path, workers: int
) -> None:
    """With N workers and lost answers, no job is taken twice and every dollar is accounted for:
    a job billed beyond the entries' is an old-style orphan or a reported possible duplicate."""
    sim = await simulator(
        time_scale=1000, concurrency=3, backlog=3, fault_ambiguous_rate=0.5, seed=4
    )
    outcome = await run_manifest(sim, tmp_path, manifest_text(14), submit_workers=workers)
    rows = await ledger_rows(outcome.ledger_path)
    entries = [r for r in rows if r.state is not S.ORPHAN]
    assert all(r.state is S.DONE for r in entries), {r.entry_id: r.state for r in entries}
    async with Ledger.open(outcome.ledger_path, readonly=True) as ledger:
        doubts = {d.remote_id for d in await ledger.unattributed()}
    billed = {job["job_id"] for job in charged(sim)}
    assert {r.remote_id for r in entries} <= billed  # every entry billed once...
    assert billed - {r.remote_id for r in entries} <= doubts  # ...and any extra is reported
    assert "DELETE /jobs/{id}" not in sim.stats()["requests"]
    ours = sum(job["charged_micro"] for job in charged(sim) if job["job_id"] not in doubts)
    assert outcome.summary.billed_micro == ours  # a possible duplicate is not counted as billed


async def test_a_finished_file_changed_on_disk_is_fetched_again(simulator, tmp_path: Path) -> None:
    """Start-up's quick check: a file edited since it was verified (same size, new mtime, other
    bytes) goes back to completed and is downloaded again; one only touched is left as it is."""
    sim = await simulator(time_scale=1000)
    first = await run_manifest(sim, tmp_path, manifest_text(2))
    rows = {r.entry_id: r for r in await ledger_rows(first.ledger_path)}
    edited, touched = (first.out_dir / (rows[name].output_path or "") for name in ("j0", "j1"))
    body = bytearray(edited.read_bytes())
    body[-1] ^= 0xFF  # same size, different bytes
    edited.write_bytes(body)
    later_ns = edited.stat().st_mtime_ns + 10**9  # as if edited a second later
    os.utime(edited, ns=(later_ns, later_ns))
    os.utime(touched, ns=(later_ns, later_ns))
    media_gets = sim.stats()["statuses"].get("200", 0)
    again = await run_manifest(sim, tmp_path, manifest_text(2))
    await assert_exactly_once(sim, again, 2)
    assert sim.stats()["statuses"]["200"] - media_gets >= 1  # j0's file fetched once more
    history = await ledger_events(again.ledger_path, rows["j0"].key)
    assert ("done", "completed", "the file is missing or changed on disk") in history
    assert ("done", "completed", "the file is missing or changed on disk") not in (
        await ledger_events(again.ledger_path, rows["j1"].key)
    )
