"""`orchestrator reroll` as users type it: a new take of each rejected clip, the old file kept.

Real `orchestrator run` and `reroll` subprocesses against a simulator; marks are written the way
`orchestrator view` writes them (``Ledger.set_mark``); what was sent is read from the simulator's
own job list, what landed from the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
from asyncio.subprocess import DEVNULL
from pathlib import Path

import pytest

from orchestrator.jobs import JobRecord, JobState
from orchestrator.ledger import Ledger
from orchestrator.money.report_sections import dollars
from orchestrator.mp4 import check_mp4
from tests.conftest import StartSimulator
from tests.e2e.cli_support import Workdir, orchestrator

pytestmark = pytest.mark.e2e
S = JobState
POST = "POST /generate/video/{provider}/{model}"
MANIFEST = """batch: shots
defaults: {model: kling/kling-2.5, duration: 5}
jobs:
  - id: a
    prompt: a lighthouse at dawn
  - id: hero
    prompt: the keeper climbs the stairs
    takes: 2
  - id: b
    prompt: waves on the rocks
"""


async def _ran(simulator: StartSimulator, root: Path, scale: float = 400) -> Workdir:
    sim = await simulator(time_scale=scale)
    (root / "jobs.yaml").write_text(MANIFEST)
    work = Workdir(root, sim, scale, progress=("--json",))
    code, _, err = await work.run()
    assert code == 0, err
    return work


async def _rows(work: Workdir) -> dict[str, JobRecord]:
    async with Ledger.open(work.ledger, readonly=True) as ledger:
        return {r.entry_id: r for r in await ledger.jobs(batch="shots")}


async def _mark(work: Workdir, **marks: str | None) -> None:
    rows = await _rows(work)
    async with Ledger.open(work.ledger) as ledger:
        for entry_id, mark in marks.items():
            assert await ledger.set_mark(rows[entry_id].key, mark)  # type: ignore[arg-type]


def _reroll_args(work: Workdir, *extra: str) -> list[str]:
    return [
        "reroll", "--batch", "shots", "--api-base", work.sim.url, "--time-scale", str(work.scale),
        "--poll-min", "2", "--json", *extra,
    ]  # fmt: skip


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_reroll_takes_each_rejected_clip_again_once_and_keeps_the_first(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Rejecting a and hero_t2 (and picking b) makes exactly two new jobs on Krea, whose files
    land beside the first ones, which stay as they were; reroll again sends nothing; rejecting
    a take makes the entry's third take."""
    work = await _ran(simulator, tmp_path)
    first = await _rows(work)
    before = {e: _sha(work.out / (r.output_path or "")) for e, r in first.items()}
    await _mark(work, a="reject", hero_t2="reject", b="pick")

    code, _, err = await work.call(*_reroll_args(work))

    assert code == 0, err
    assert "a new take of 2 rejected clips" in err
    assert len(work.sim.jobs()) == 4 + 2
    rows = await _rows(work)
    assert {e: r.state for e, r in rows.items() if "~" in e} == {
        "a~r2": S.DONE,
        "hero_t2~r2": S.DONE,
    }
    for entry_id, sha in before.items():
        assert _sha(work.out / (first[entry_id].output_path or "")) == sha, f"{entry_id} changed"
    take = rows["a~r2"]
    assert take.output_path == (first["a"].output_path or "").replace(".mp4", "~r2.mp4")
    check_mp4(work.out / take.output_path)
    assert take.remote_id not in {r.remote_id for r in first.values()}
    async with Ledger.open(work.ledger, readonly=True) as ledger:
        history = await ledger.events(key=take.key)
    assert history[0].cause.startswith("reroll:")
    assert history[-1].to_state == "done"

    code, _, err = await work.call(*_reroll_args(work))

    assert code == 0, err
    assert "no rejected clip without a new take" in err
    assert len(work.sim.jobs()) == 6, "a clip already taken again is not taken again"

    await _mark(work, **{"a~r2": "reject"})
    code, _, err = await work.call(*_reroll_args(work))

    assert code == 0, err
    rows = await _rows(work)
    assert rows["a~r3"].state is S.DONE
    assert len(work.sim.jobs()) == 7
    assert (work.out / (rows["a~r2"].output_path or "")).exists()


async def test_reroll_dry_run_prices_the_takes_and_changes_nothing(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    work = await _ran(simulator, tmp_path)
    await _mark(work, a="reject", b="reject")
    ledger_bytes = work.ledger.read_bytes()

    code, _, err = await work.call(*_reroll_args(work, "--dry-run"))

    assert code == 0, err
    rows = await _rows(work)
    cost = dollars(rows["a"].price_micro + rows["b"].price_micro)
    assert f"2 rejected clips would be taken again (about {cost})" in err
    assert len(work.sim.jobs()) == 4
    assert "~" not in "".join(await _rows(work))
    assert work.ledger.read_bytes() == ledger_bytes


STORYBOARD = """batch: shots
defaults: {duration: 5}
jobs:
  - id: frame
    model: image/google/nano-banana-pro
    prompt: an old lighthouse keeper on a spiral staircase
  - id: shot
    model: kling/kling-2.5
    prompt: the keeper climbs slowly
    start_image: {from: frame}
"""


async def test_reroll_of_a_frame_makes_its_shot_again_from_the_new_frame(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """A storyboard's frame rejected: the dry run prices the new frame and the shot made from
    it; the reroll sends both, the new shot made from the new frame's result."""
    sim = await simulator(time_scale=400)
    (tmp_path / "jobs.yaml").write_text(STORYBOARD)
    work = Workdir(tmp_path, sim, 400, progress=("--json",))
    code, _, err = await work.run()
    assert code == 0, err
    await _mark(work, frame="reject")
    rows = await _rows(work)

    code, _, err = await work.call(*_reroll_args(work, "--dry-run"))

    assert code == 0, err
    cost = dollars(rows["frame"].price_micro + rows["shot"].price_micro)
    assert f"1 rejected clip and 1 job made from it would be taken again (about {cost})" in err
    assert (
        f"  shot: a new take from the new take of frame, about {dollars(rows['shot'].price_micro)}"
        in err
    )

    code, _, err = await work.call(*_reroll_args(work))

    assert code == 0, err
    assert "  frame: new take frame~r2\n" in err
    assert "  shot: new take shot~r2, from frame~r2" in err
    rows = await _rows(work)
    assert (rows["frame~r2"].state, rows["shot~r2"].state) == (S.DONE, S.DONE)
    remote = {job["job_id"]: job for job in sim.jobs()}
    assert len(remote) == 4
    made_from = remote[rows["shot~r2"].remote_id or ""]["inputs_from"]
    assert made_from == {"start_image": rows["frame~r2"].remote_id}


async def test_reroll_of_a_frame_whose_shot_is_not_sent_yet_says_run_makes_it_from_the_new_one(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Frames first (`--only frame`), the frame rejected: reroll makes the new frame only and
    says the shot, not sent yet, will be made from it; `run` then does so."""
    sim = await simulator(time_scale=400)
    (tmp_path / "jobs.yaml").write_text(STORYBOARD)
    work = Workdir(tmp_path, sim, 400, progress=("--json",))
    code, _, err = await work.run("--only", "frame")
    assert code == 0, err
    await _mark(work, frame="reject")

    code, _, err = await work.call(*_reroll_args(work))

    assert code == 0, err
    assert "a new take of 1 rejected clip (about" in err
    assert "  shot: not sent yet, `run` makes it from frame~r2" in err
    assert len(sim.jobs()) == 2
    code, _, err = await work.run()
    assert code == 0, err
    rows = await _rows(work)
    made_from = {job["job_id"]: job for job in sim.jobs()}[rows["shot"].remote_id or ""]
    assert made_from["inputs_from"] == {"start_image": rows["frame~r2"].remote_id}


async def test_unknown_batch_is_one_error_with_a_suggestion(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    work = await _ran(simulator, tmp_path)

    code, _, err = await work.call("reroll", "--batch", "shot", "--api-base", work.sim.url)

    assert code == 2
    assert "no batch 'shot'" in err
    assert "did you mean 'shots'" in err


async def test_a_killed_reroll_is_resumed_by_the_next_and_each_take_is_billed_once(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """kill -9 while the new take is on Krea; `reroll` again finds it in flight, makes no
    second take, and finishes it: one job billed for the take."""
    work = await _ran(simulator, tmp_path, scale=20)
    await _mark(work, hero_t1="reject")
    posts = work.sim.stats()["requests"].get(POST, 0)
    argv = orchestrator(*_reroll_args(work), "--ledger", str(work.ledger))
    proc = await asyncio.create_subprocess_exec(*argv, env=work.env(), stderr=DEVNULL)
    await work.sim.wait_until(lambda stats: stats["requests"].get(POST, 0) > posts)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()

    code, _, err = await work.call(*_reroll_args(work))

    assert code == 0, err
    rows = await _rows(work)
    assert [e for e in rows if "~" in e] == ["hero_t1~r2"]
    assert rows["hero_t1~r2"].state is S.DONE
    billed = [job for job in work.sim.jobs() if job["charged_micro"]]
    assert len(billed) == 5, json.dumps(billed, indent=1)


async def test_a_killed_reroll_whose_post_made_nothing_is_sent_by_the_next(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """kill -9 once the new take's POST got no answer and made no job: the take is left
    ambiguous, and the next `reroll` finds out it was never made and sends it (the takes it
    sends were once chosen before that was known, and it ended with exit 0, the take unsent)."""
    work = await _ran(simulator, tmp_path, scale=20)
    await _mark(work, hero_t1="reject")
    work.sim.configure(fault_reset_rate=1.0)  # every request dropped unanswered, nothing made
    argv = orchestrator(*_reroll_args(work), "--ledger", str(work.ledger))
    proc = await asyncio.create_subprocess_exec(*argv, env=work.env(), stderr=DEVNULL)
    await work.sim.wait_until(lambda stats: stats["faults"].get("reset", 0) >= 2)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert (await _rows(work))["hero_t1~r2"].state in (S.SUBMITTING, S.AMBIGUOUS)
    work.sim.configure(fault_reset_rate=0.0)

    code, _, err = await work.call(*_reroll_args(work))

    assert code == 0, err
    assert (await _rows(work))["hero_t1~r2"].state is S.DONE
    assert len([job for job in work.sim.jobs() if job["charged_micro"]]) == 5


async def test_a_manifest_edit_drops_the_takes_of_the_entry_it_changed(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """The takes belong to the job they re-take: editing a's prompt makes a new `a` and drops
    a~r2 from the batch (kept as history); hero's take stays."""
    work = await _ran(simulator, tmp_path)
    await _mark(work, a="reject", hero_t1="reject")
    code, _, err = await work.call(*_reroll_args(work))
    assert code == 0, err
    (work.root / "jobs.yaml").write_text(MANIFEST.replace("a lighthouse at dawn", "a lighthouse"))

    code, _, err = await work.run()

    assert code == 0, err
    async with Ledger.open(work.ledger, readonly=True) as ledger:
        current = {r.entry_id for r in await ledger.jobs(batch="shots") if r.planned}
    assert current == {"a", "hero_t1", "hero_t2", "b", "hero_t1~r2"}


async def test_a_take_never_lands_on_a_path_the_manifest_gives_another_job(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """b's file is shots/a~r2.mp4 by the manifest's own choice: a's new take skips to ~r3."""
    sim = await simulator(time_scale=400)
    (tmp_path / "jobs.yaml").write_text(MANIFEST + '    output: "shots/a~r2"\n')
    work = Workdir(tmp_path, sim, 400, progress=("--json",))
    code, _, err = await work.run()
    assert code == 0, err
    b_file = work.out / "shots" / "a~r2.mp4"
    b_sha = _sha(b_file)
    await _mark(work, a="reject")

    code, _, err = await work.call(*_reroll_args(work))

    assert code == 0, err
    rows = await _rows(work)
    assert rows["a~r3"].output_path == "shots/a~r3.mp4"
    assert rows["a~r3"].state is S.DONE
    assert "a~r2" not in rows
    assert _sha(b_file) == b_sha
