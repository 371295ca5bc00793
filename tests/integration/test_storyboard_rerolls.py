"""Rerolls down a chain: a new take of a rejected frame brings a new take of each shot made from
it, made from the new frame (ledger/takes.py).

First on a real ledger walked by hand (what rows and edges a reroll writes, and what it leaves
alone), then end to end: a storyboard run against the simulator, a frame rejected, the reroll's
run, and what Krea received for the new shot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.chains import markers
from orchestrator.image_file import check_image
from orchestrator.jobs import JobSpec, JobState
from orchestrator.ledger import Batch, Ledger
from orchestrator.mp4 import check_mp4
from tests.integration.pipeline_support import ledger_rows, run_manifest
from tests.integration.test_ledger_chains import COMPLETED, DOWNLOADED, sent, spec, walk
from tests.integration.test_storyboards import STORYBOARD

S = JobState


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    """A ledger on ``tmp_path`` with batch ``b``."""
    async with Ledger.open(tmp_path / "l.db") as opened:
        await opened.save_batch(Batch("b", "/m.yaml", "sha", "/out"))
        yield opened


async def made(ledger: Ledger, *jobs: JobSpec) -> None:
    """Each job sent, completed and downloaded, in order."""
    for job in jobs:
        await walk(ledger, job.key, *sent(job.key), COMPLETED, *DOWNLOADED)


async def take_of(ledger: Ledger, entry_id: str) -> tuple[str, JobState, list[str], list[str]]:
    """A take's key, state, inputs, and the keys its request's markers name."""
    (row,) = [r for r in await ledger.jobs(batch="b") if r.entry_id == entry_id]
    named = [key for _, key in markers(row.request)]
    return row.key, row.state, await ledger.inputs_of(row.key), named


async def test_a_new_take_of_a_frame_brings_one_of_each_shot_made_from_it(ledger: Ledger) -> None:
    """The shot's new take names the frame's new take, in its edge and in its request, waits
    for it, and is sent once the new frame has a result. The frame's other taker, not sent yet,
    gets no take: it waits for the new frame too, its request as the manifest made it."""
    frame, other = spec("frame", 0), spec("other", 1)
    shot, later = spec("shot", 2, frame), spec("later", 3, frame, other)
    await ledger.sync_plan("b", [frame, other, shot, later], {})
    await made(ledger, frame, other, shot)  # `later` is pending: not sent yet
    await ledger.set_mark(frame.key, "reject")
    due = await ledger.rerolls_due("b")
    assert [(r.rejected, r.made_from, r.waits) for r in due] == [
        ("frame", (), False),
        ("shot", ("frame",), False),
        ("later", ("frame",), True),
    ]
    rerolls = await ledger.add_rerolls("b")
    assert [(r.rejected, r.take, r.made_from, r.waits) for r in rerolls] == [
        ("frame", "frame~r2", (), False),
        ("shot", "shot~r2", ("frame~r2",), False),
        ("later", None, ("frame~r2",), True),
    ]
    assert [r.price_micro for r in rerolls] == [r.price_micro for r in due]
    assert [r.price_micro for r in rerolls] == [366_700, 366_700, 0]  # `later` was paid for
    frame_take, frame_state, _, _ = await take_of(ledger, "frame~r2")
    shot_take, shot_state, inputs, named = await take_of(ledger, "shot~r2")
    assert (frame_state, shot_state) == (S.PENDING, S.WAITING)
    assert inputs == named == [frame_take]
    _, later_state, later_inputs, later_named = await take_of(ledger, "later")
    assert later_state is S.WAITING
    assert set(later_inputs) == {frame.key, other.key, frame_take}
    assert later_named == [frame.key, other.key], "its request is the manifest's"
    assert await ledger.newest_result(frame.key) == frame.key, "the new frame has no result yet"
    assert await ledger.reroll_keys("b") == {frame_take, shot_take}
    assert await ledger.add_rerolls("b") == [], "asked once: nothing is taken twice"
    await walk(ledger, frame_take, *sent(frame_take), COMPLETED)
    assert (await take_of(ledger, "shot~r2"))[1] is S.PENDING, "the new frame's result frees it"
    assert (await take_of(ledger, "later"))[1] is S.PENDING
    assert await ledger.newest_result(frame.key) == frame_take
    assert [r.entry_id for r in await ledger.jobs(batch="b") if "~r" in r.entry_id] == [
        "frame~r2",
        "shot~r2",
    ], "the unsent taker got no take"


async def test_a_rejected_shot_of_a_rejected_frame_gets_one_take_from_the_new_frame(
    ledger: Ledger,
) -> None:
    frame = spec("frame", 0)
    shot = spec("shot", 1, frame)
    await ledger.sync_plan("b", [frame, shot], {})
    await made(ledger, frame, shot)
    await ledger.set_mark(shot.key, "reject")
    await ledger.set_mark(frame.key, "reject")
    rerolls = await ledger.add_rerolls("b")
    assert [(r.rejected, r.take, r.made_from) for r in rerolls] == [
        ("frame", "frame~r2", ()),
        ("shot", "shot~r2", ("frame~r2",)),
    ]


async def test_a_chain_is_taken_again_to_its_end_and_other_inputs_are_kept(
    ledger: Ledger,
) -> None:
    """frame -> style -> shot: each new take is made from the one before; the shot's input that
    was not taken again (``sea``) stays the one it was."""
    frame, sea = spec("frame", 0), spec("sea", 1)
    style = spec("style", 2, frame)
    shot = spec("shot", 3, style, sea)
    await ledger.sync_plan("b", [frame, sea, style, shot], {})
    await made(ledger, frame, sea, style, shot)
    await ledger.set_mark(frame.key, "reject")
    rerolls = await ledger.add_rerolls("b")
    assert [(r.take, r.made_from) for r in rerolls] == [
        ("frame~r2", ()),
        ("style~r2", ("frame~r2",)),
        ("shot~r2", ("style~r2",)),
    ]
    style_take = (await take_of(ledger, "style~r2"))[0]
    _, state, inputs, named = await take_of(ledger, "shot~r2")
    assert state is S.WAITING
    assert inputs == [sea.key, style_take]  # in manifest order
    assert named == [style_take, sea.key]  # reference_images, as the entry lists them


async def test_only_the_newest_take_of_a_shot_is_taken_again(ledger: Ledger) -> None:
    """The shot was rejected once (shot~r2, from the same frame); the frame rejected now makes
    one new shot, a take of shot~r2, not one per take."""
    frame = spec("frame", 0)
    shot = spec("shot", 1, frame)
    await ledger.sync_plan("b", [frame, shot], {})
    await made(ledger, frame, shot)
    await ledger.set_mark(shot.key, "reject")
    (first,) = await ledger.add_rerolls("b")
    second_key = (await take_of(ledger, "shot~r2"))[0]
    await walk(ledger, second_key, *sent(second_key), COMPLETED, *DOWNLOADED)
    await ledger.set_mark(frame.key, "reject")
    rerolls = await ledger.add_rerolls("b")
    assert [(r.rejected, r.take) for r in rerolls] == [
        ("frame", "frame~r2"),
        ("shot~r2", "shot~r3"),
    ]
    assert first.take == "shot~r2"


async def test_a_reroll_down_a_storyboard_sends_the_new_shot_with_the_new_frames_result(
    simulator, tmp_path: Path
) -> None:
    """Reject one frame of a storyboard, reroll: Krea makes the new frame, then the new shot
    from that frame's result; every earlier file stays; nothing else is sent."""
    sim = await simulator(time_scale=1000)
    first = await run_manifest(sim, tmp_path, STORYBOARD)
    assert first.summary.exit_code == 0
    before = {r.entry_id: r for r in await ledger_rows(first.ledger_path)}
    files = {r.output_path: (first.out_dir / (r.output_path or "")).read_bytes()
             for r in before.values()}  # fmt: skip
    async with Ledger.open(first.ledger_path) as ledger:
        await ledger.set_mark(before["keeper-frame_t2"].key, "reject")
        rerolls = await ledger.add_rerolls("b")
    assert [(r.take, r.made_from) for r in rerolls] == [
        ("keeper-frame_t2~r2", ()),
        ("keeper-shot_t2~r2", ("keeper-frame_t2~r2",)),
    ]
    sent_before = len(sim.jobs())
    again = await run_manifest(sim, tmp_path, STORYBOARD, rerolls_only=True)
    assert again.summary.exit_code == 0
    assert len(sim.jobs()) == sent_before + 2
    rows = {r.entry_id: r for r in await ledger_rows(first.ledger_path)}
    frame, shot = rows["keeper-frame_t2~r2"], rows["keeper-shot_t2~r2"]
    assert (frame.state, shot.state) == (S.DONE, S.DONE)
    assert check_image(first.out_dir / (frame.output_path or "")) == "png"
    check_mp4(first.out_dir / (shot.output_path or ""))
    remote = {job["job_id"]: job for job in sim.jobs()}
    assert remote[shot.remote_id or ""]["inputs_from"] == {"start_image": frame.remote_id}
    for path, data in files.items():
        assert (first.out_dir / (path or "")).read_bytes() == data, f"{path} was kept as it was"


async def test_a_failed_new_frame_blocks_the_new_shot_until_a_retry_sends_both(
    simulator, tmp_path: Path
) -> None:
    """The reroll's new frame fails: its new shot waits, blocked with the reason, and is not
    sent; `retry` sends the new frame again, then the new shot from its result."""
    sim = await simulator(time_scale=1000)
    first = await run_manifest(sim, tmp_path, STORYBOARD)
    rows = {r.entry_id: r for r in await ledger_rows(first.ledger_path)}
    async with Ledger.open(first.ledger_path) as ledger:
        await ledger.set_mark(rows["sea-frame"].key, "reject")
        assert [r.take for r in await ledger.add_rerolls("b")] == ["sea-frame~r2", "sea-shot~r2"]
    sim.configure(moderation_rate=1.0)
    failed = await run_manifest(sim, tmp_path, STORYBOARD, rerolls_only=True)
    assert failed.summary.exit_code == 1
    async with Ledger.open(first.ledger_path, readonly=True) as ledger:
        (blocked,) = await ledger.blocked("b")
    assert blocked.entry_id == "sea-shot~r2"
    assert blocked.reason.startswith("input sea-frame~r2 failed: ")
    sent_before = len(sim.jobs())

    sim.configure(moderation_rate=0.0)
    again = await run_manifest(sim, tmp_path, STORYBOARD, retry_failed=1)
    assert again.summary.exit_code == 0
    rows = {r.entry_id: r for r in await ledger_rows(first.ledger_path)}
    frame, shot = rows["sea-frame~r2"], rows["sea-shot~r2"]
    assert (frame.state, shot.state) == (S.DONE, S.DONE)
    assert len(sim.jobs()) == sent_before + 2
    made_from = {job["job_id"]: job for job in sim.jobs()}[shot.remote_id or ""]["inputs_from"]
    assert made_from == {
        "start_image": frame.remote_id,
        "end_image": rows["keeper-frame_t1"].remote_id,  # the input not taken again
    }


async def test_frames_first_then_shots_a_shot_not_sent_yet_is_made_from_the_new_frame(
    simulator, tmp_path: Path
) -> None:
    """The frames-first workflow: a trial makes only the frames, one is rejected and made
    again, then `run` makes the shots: that frame's shot from the new frame's result, the
    others from their own frames; no shot is made twice."""
    sim = await simulator(time_scale=1000)
    frames = ("keeper-frame", "sea-frame")
    first = await run_manifest(sim, tmp_path, STORYBOARD, only=frames)
    assert sim.stats()["jobs_created"] == 4  # three keeper frames, one sea frame
    rows = {r.entry_id: r for r in await ledger_rows(first.ledger_path)}
    async with Ledger.open(first.ledger_path) as ledger:
        await ledger.set_mark(rows["keeper-frame_t2"].key, "reject")
        rerolls = await ledger.add_rerolls("b")
    assert [(r.rejected, r.take, r.waits) for r in rerolls] == [
        ("keeper-frame_t2", "keeper-frame_t2~r2", False),
        ("keeper-shot_t2", None, True),
    ]
    again = await run_manifest(sim, tmp_path, STORYBOARD, rerolls_only=True)
    assert again.summary.exit_code == 0
    assert sim.stats()["jobs_created"] == 5  # the new frame alone

    shots = await run_manifest(sim, tmp_path, STORYBOARD)
    assert shots.summary.exit_code == 0
    assert sim.stats()["jobs_created"] == 5 + 4  # each shot once
    rows = {r.entry_id: r for r in await ledger_rows(first.ledger_path)}
    remote = {job["job_id"]: job for job in sim.jobs()}

    def made_from(shot: str) -> dict[str, str]:
        return dict(remote[rows[shot].remote_id or ""]["inputs_from"])

    assert made_from("keeper-shot_t2") == {"start_image": rows["keeper-frame_t2~r2"].remote_id}
    for n in (1, 3):
        assert made_from(f"keeper-shot_t{n}") == {
            "start_image": rows[f"keeper-frame_t{n}"].remote_id
        }
    assert made_from("sea-shot")["start_image"] == rows["sea-frame"].remote_id
    assert {r.state for r in rows.values()} == {S.DONE}
    async with Ledger.open(first.ledger_path, readonly=True) as ledger:
        (event,) = [e for e in await ledger.events(key=rows["keeper-shot_t2"].key)
                       if e.to_state == "waiting" and e.from_state == "pending"]  # fmt: skip
    assert event.cause == "reroll: waits for the new take of an input"
