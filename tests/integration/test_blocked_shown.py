"""Where a user sees a blocked job and why: `status`, the run's summary and the review page.

Moderation fails every still of a storyboard against the simulator, so each shot taking one
stays ``waiting``, blocked (derived by ``Ledger.blocked``, never stored) with the still's reason.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from orchestrator import errors
from orchestrator.cli import commands, jobs_listing, run_command
from orchestrator.ledger import Ledger
from orchestrator.view.app import make_app
from orchestrator.view.summary import summary
from tests.e2e.cli_support import orchestrator
from tests.integration.pipeline_support import Outcome, run_manifest, settings_for

#: Three stills, two shots from each: six shots, one more than `status` itemises.
STORYBOARD = """\
batch: b
jobs:
  - id: keeper-frame
    model: image/google/nano-banana-pro
    prompt: an old lighthouse keeper on a spiral staircase
    takes: 3
  - id: keeper-shot
    model: kling/kling-2.5
    prompt: the keeper climbs slowly
    duration: 5
    start_image: {from: keeper-frame}
    takes: 2
"""
FLAGGED = "moderation: The request was flagged by content moderation."
#: In manifest order: a shot's own takes vary slowest.
SHOTS = [f"keeper-shot_t{frame}_t{take}" for take in (1, 2) for frame in (1, 2, 3)]


def _blocked_line(shot: str) -> str:
    """What `status` says of a shot: the still it takes (``keeper-frame_t2``) failed."""
    frame = shot.rsplit("_", 1)[0].replace("shot", "frame")
    return f"{shot}: blocked: input {frame} failed: {FLAGGED}"


@pytest.fixture
async def failed(simulator, tmp_path: Path) -> Outcome:
    """The storyboard run with every still flagged: 3 failed, 6 shots waiting, none sent."""
    sim = await simulator(time_scale=1000, moderation_rate=1.0)
    outcome = await run_manifest(sim, tmp_path, STORYBOARD)
    assert outcome.summary.exit_code == errors.EXIT_JOBS_FAILED
    assert sim.stats()["jobs_created"] == 3
    return outcome


async def test_status_counts_the_blocked_and_says_why_for_the_first_five(failed: Outcome) -> None:
    """The table has waiting and blocked columns; below it, one line per blocked job (five,
    then how many more) naming the input that failed and Krea's reason; exit code 0."""
    text = await commands.status(failed.ledger_path, None, "table")
    header, _, row, *rest = (re.split(r"\s{2,}", line) for line in text.splitlines())
    cells = dict(zip(header, row, strict=True))
    assert (cells["waiting"], cells["failed"], cells["blocked"]) == ("6", "3", "6")
    assert [line for (line,) in rest] == [
        "",
        *(_blocked_line(shot) for shot in SHOTS[:5]),
        "and 1 more blocked (`status --format json` lists each)",
        "`orchestrator retry MANIFEST` sends a failed or cancelled input again, then the jobs "
        "waiting for it",
    ]
    proc = await asyncio.create_subprocess_exec(
        *orchestrator("status", "--ledger", str(failed.ledger_path)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == errors.EXIT_OK, err.decode()
    assert out.decode().rstrip("\n") == text


async def test_status_json_lists_every_blocked_job_with_its_reason(failed: Outcome) -> None:
    [batch] = json.loads(await commands.status(failed.ledger_path, "b", "json"))
    assert batch["states"] == {"waiting": 6, "failed": 3}
    assert [(b["id"], f"{b['id']}: blocked: {b['reason']}") for b in batch["blocked"]] == [
        (shot, _blocked_line(shot)) for shot in SHOTS
    ]


async def test_a_batch_with_nothing_blocked_has_no_blocked_column_or_lines(
    simulator, tmp_path: Path
) -> None:
    sim = await simulator(time_scale=1000)
    outcome = await run_manifest(sim, tmp_path, STORYBOARD)
    assert outcome.summary.exit_code == errors.EXIT_OK
    text = await commands.status(outcome.ledger_path, None, "table")
    assert "blocked" not in text
    assert len(text.splitlines()) == 3
    [batch] = json.loads(await commands.status(outcome.ledger_path, None, "json"))
    assert batch["blocked"] == []


async def test_the_run_summary_says_how_many_are_blocked(
    failed: Outcome, simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second run sends nothing (the stills are not retried) and its summary explains the
    waiting jobs it leaves; the quiet line counts them as waiting."""
    sim = await simulator(time_scale=1000)
    settings = settings_for(sim, tmp_path)
    path = str(tmp_path / "jobs.yaml")  # run_manifest wrote it there
    for progress in ("plain", "quiet"):
        code = await run_command.run(
            [path], settings, simulate=False, dry_run=False, progress=progress
        )
        assert code == errors.EXIT_JOBS_FAILED
    out = capsys.readouterr().out.splitlines()
    assert "not done: 3 failed, 6 waiting" in out
    assert (
        "blocked: 6 waiting jobs, as an input failed, was cancelled or rejected "
        "(see `orchestrator status`)"
    ) in out
    assert out[-1] == "batch b: 0 of 9 done (3 failed, 6 waiting), $0.00 billed, exit 1"
    assert sim.stats()["jobs_created"] == 0


async def test_the_review_page_shows_why_a_shot_is_blocked(failed: Outcome) -> None:
    """A blocked shot's card and page give the reason; its page links the still it takes."""
    async with TestClient(TestServer(make_app(failed.ledger_path))) as client:
        answer = await client.get("/api/batches/b/jobs")
        cards = {c["id"]: c for c in (await answer.json())["cards"]}
        shot = cards["keeper-shot_t2_t1"]
        assert (shot["state"], shot["reason"]) == (
            "waiting",
            f"blocked: input keeper-frame_t2 failed: {FLAGGED}",
        )
        assert cards["keeper-frame_t2"]["reason"] == FLAGGED
        page = await (await client.get(f"/jobs/{shot['key']}")).text()
        assert "<dd>blocked: input keeper-frame_t2 failed: moderation: " in page
        frame = cards["keeper-frame_t2"]["key"]
        assert f'href="/jobs/{frame}">keeper-frame_t2 · failed</a>' in page
        assert "waiting (blocked)</div>" in page


async def test_the_jobs_listing_gives_a_blocked_job_its_reason(failed: Outcome) -> None:
    """`orchestrator jobs`: a blocked shot is `waiting`, and its reason names the input."""
    lines: list[str] = []
    await jobs_listing.jobs(failed.ledger_path, None, None, "json", lines.append)
    listed = {job["id"]: job for job in json.loads("".join(lines))}
    shot = listed["keeper-shot_t2_t1"]
    assert shot["state"] == "waiting"
    assert shot["reason"] == f"blocked: input keeper-frame_t2 failed: {FLAGGED}"
    assert listed["keeper-frame_t2"]["reason"] == FLAGGED


async def test_the_batches_page_counts_no_blocked_job_as_work_left(failed: Outcome) -> None:
    """Three stills failed, six shots blocked: nothing is left for a run to do, so no ETA."""
    async with Ledger.open(failed.ledger_path, readonly=True) as ledger:
        (batch,) = await ledger.view_batches()
        line = await summary(ledger, batch, datetime.now(UTC))
    assert line["states"] == {"failed": 3, "waiting": 6}
    assert (line["blocked"], line["left"], line["eta_s"]) == (6, 0, None)
