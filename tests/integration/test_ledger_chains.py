"""Chained jobs in the ledger (issue 16): a job that takes other jobs' results is planned waiting
with its edges, becomes pending in the statement that gives its last input a result (the real
commit path, group commits included), and shows as blocked, derived, while an input cannot give
one; superseded waiting rows are no spend, as superseded pending ones are.

Every test walks a real ledger file through real transitions; JobSpecs are built by hand, as the
manifest would make them (``inputs``: the keys of the jobs whose results it takes).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.chains import marker
from orchestrator.errors import IllegalTransition
from orchestrator.jobs import HAS_RESULT, JobSpec, JobState, job_key
from orchestrator.ledger import Batch, Blocked, Ledger, Move, plan_queries
from orchestrator.ledger.migrations import MIGRATIONS, RESULT_STATES
from orchestrator.money import reports
from tests.integration.pipeline_support import manifest_text
from tests.integration.test_ledger import undo_migration_11
from tests.integration.test_startup import settings, synced, write

S = JobState
MODEL = "kling/kling-2.5"
Step = tuple[JobState, JobState, dict[str, Any]]


def spec(entry_id: str, seq: int, *inputs: JobSpec, price_micro: int = 366_700) -> JobSpec:
    """A job of batch ``b``; one with ``inputs`` holds a marker for each of their results."""
    request: dict[str, Any] = {"prompt": f"{entry_id}, slow dolly"}
    if inputs:
        request["reference_images"] = [marker(source.key) for source in inputs]
    return JobSpec(
        key=job_key("b", entry_id, MODEL, request),
        batch="b",
        entry_id=entry_id,
        model=MODEL,
        request=request,
        price_micro=price_micro,
        output_path=f"{entry_id}.mp4",
        seq=seq,
        inputs=tuple(source.key for source in inputs),
    )


def sent(key: str) -> list[Step]:
    """pending -> submitting -> submitted."""
    return [
        (S.PENDING, S.SUBMITTING, {"attempts": 1}),
        (S.SUBMITTING, S.SUBMITTED, {"remote_id": f"r-{key}", "remote_status": "queued"}),
    ]


COMPLETED: Step = (S.SUBMITTED, S.COMPLETED, {"remote_status": "completed", "result_url": "u"})
DOWNLOADED = [(S.COMPLETED, S.DOWNLOADING, {}), (S.DOWNLOADING, S.DONE, {"bytes": 1})]


def failed(error: str) -> Step:
    return (S.SUBMITTED, S.FAILED, {"remote_status": "failed", "last_error": error})


async def walk(ledger: Ledger, key: str, *steps: Step) -> None:
    """Transitions one at a time, each through the group commit (one statement, autocommit)."""
    for expect, to, fields in steps:
        await ledger.transition(key, to, expect=expect, cause="test", **fields)


async def state(ledger: Ledger, job: JobSpec) -> JobState:
    row = await ledger.job(job.key)
    assert row is not None
    return row.state


async def history(ledger: Ledger, job: JobSpec) -> list[tuple[str | None, str, str]]:
    return [(e.from_state, e.to_state, e.cause) for e in await ledger.events(key=job.key)]


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    """A ledger on ``tmp_path`` with batch ``b``."""
    async with Ledger.open(tmp_path / "l.db") as opened_ledger:
        await opened_ledger.save_batch(Batch("b", "/m.yaml", "sha", "/out"))
        yield opened_ledger


# -- planning ---------------------------------------------------------------------------------


async def test_a_job_with_inputs_is_planned_waiting_with_its_edges(ledger: Ledger) -> None:
    """The frame is pending; the shot made from it waits, and the ledger knows what for."""
    frame = spec("frame", 0)
    shot = spec("shot", 1, frame)
    synced_plan = await ledger.sync_plan("b", [frame, shot], {})
    assert (synced_plan.added, synced_plan.dropped) == (2, 0)
    assert (await state(ledger, frame), await state(ledger, shot)) == (S.PENDING, S.WAITING)
    assert await ledger.inputs_of(shot.key) == [frame.key]
    assert await ledger.inputs_of(frame.key) == []
    assert await history(ledger, shot) == [(None, "waiting", "planned")]
    assert await ledger.blocked("b") == []
    assert await ledger.any_pending([shot.key]) is False  # nothing to send yet


async def test_a_waiting_job_takes_the_newest_estimate_as_a_pending_one_does(
    ledger: Ledger,
) -> None:
    """Unsent, a waiting row's price follows the manifest's estimate on the next sync."""
    frame = spec("frame", 0)
    await ledger.sync_plan("b", [frame, spec("shot", 1, frame)], {})
    dearer = spec("shot", 1, frame, price_micro=500_000)
    await ledger.sync_plan("b", [frame, dearer], {})
    row = await ledger.job(dearer.key)
    assert row is not None
    assert (row.state, row.price_micro) == (S.WAITING, 500_000)


# -- promotion --------------------------------------------------------------------------------


async def test_the_input_completing_makes_the_taker_pending_with_its_event(ledger: Ledger) -> None:
    """The statement that completes the frame makes the shot pending, history included."""
    frame = spec("frame", 0)
    shot = spec("shot", 1, frame)
    await ledger.sync_plan("b", [frame, shot], {})
    await walk(ledger, frame.key, *sent(frame.key))
    assert await state(ledger, shot) is S.WAITING  # submitted is no result
    await walk(ledger, frame.key, COMPLETED)
    assert await state(ledger, shot) is S.PENDING
    events = await ledger.events(key=shot.key)
    assert [(e.from_state, e.to_state, e.cause, e.detail) for e in events] == [
        (None, "waiting", "planned", None),
        ("waiting", "pending", "inputs ready", None),
    ]
    frame_row = await ledger.job(frame.key)
    assert frame_row is not None
    assert events[-1].at == frame_row.updated_at  # the same moment as the frame's result
    await walk(ledger, frame.key, *DOWNLOADED)  # moves among results promote nothing again
    assert await history(ledger, shot) == [
        (None, "waiting", "planned"),
        ("waiting", "pending", "inputs ready"),
    ]


async def test_one_input_of_two_with_a_result_is_not_enough(ledger: Ledger) -> None:
    """A job made from two frames waits for both."""
    first, second = spec("first", 0), spec("second", 1)
    shot = spec("shot", 2, first, second)
    await ledger.sync_plan("b", [first, second, shot], {})
    await walk(ledger, first.key, *sent(first.key), COMPLETED, *DOWNLOADED)
    assert await state(ledger, shot) is S.WAITING
    await walk(ledger, second.key, *sent(second.key), COMPLETED)
    assert await state(ledger, shot) is S.PENDING


async def test_a_group_commit_promotes_and_keeps_its_compare_and_set_checks(
    ledger: Ledger,
) -> None:
    """Several moves in one round (one executemany, then unit by unit when one misses): the
    trigger's changes are not counted as the moves', so good units commit and promote, and
    the stale unit alone fails, its promotion undone with it."""
    frames = [spec(f"frame{i}", i) for i in range(4)]
    shots = [spec(f"shot{i}", 10 + i, frame) for i, frame in enumerate(frames)]
    await ledger.sync_plan("b", [*frames, *shots], {})
    for frame in frames:
        await walk(ledger, frame.key, *sent(frame.key))
    done = Move(frames[0].key, S.SUBMITTED, S.COMPLETED, "poll", COMPLETED[2])
    also = Move(frames[1].key, S.SUBMITTED, S.COMPLETED, "poll", COMPLETED[2])
    rounds = ledger.commit_counts[0]
    await ledger.apply([done, also])  # one unit of two identical statements: one executemany
    assert ledger.commit_counts[0] == rounds + 1
    assert [await state(ledger, s) for s in shots[:2]] == [S.PENDING, S.PENDING]

    good = Move(frames[2].key, S.SUBMITTED, S.COMPLETED, "poll", COMPLETED[2])
    stale = [
        Move(frames[3].key, S.SUBMITTED, S.COMPLETED, "poll", COMPLETED[2]),
        Move(frames[0].key, S.SUBMITTED, S.COMPLETED, "poll", COMPLETED[2]),  # completed already
    ]
    rounds = ledger.commit_counts[0]
    results = await asyncio.gather(
        ledger.apply([good]), ledger.apply(stale), return_exceptions=True
    )
    assert ledger.commit_counts[0] == rounds + 1  # one round, then unit by unit to tell whose
    assert results[0] is None
    assert isinstance(results[1], IllegalTransition)
    assert await state(ledger, shots[2]) is S.PENDING
    assert (await state(ledger, frames[3]), await state(ledger, shots[3])) == (
        S.SUBMITTED,
        S.WAITING,
    )
    assert await history(ledger, shots[3]) == [(None, "waiting", "planned")]


async def test_a_sync_whose_inputs_already_have_results_plans_the_job_pending(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The frame was made by an earlier run and only the shot is new: pending at once, even
    when the shot comes first in the manifest and in a chunk of its own."""
    frame = spec("frame", 1)
    await ledger.sync_plan("b", [frame], {})
    await walk(ledger, frame.key, *sent(frame.key), COMPLETED, *DOWNLOADED)
    shot, other = spec("shot", 0, frame), spec("other", 2, frame, spec("unmade", 3))
    monkeypatch.setattr(plan_queries, "SYNC_CHUNK", 1)
    await ledger.sync_plan("b", [shot, frame, other, spec("unmade", 3)], {})
    assert await history(ledger, shot) == [
        (None, "waiting", "planned"),
        ("waiting", "pending", "inputs ready"),
    ]
    assert await state(ledger, other) is S.WAITING  # one of its inputs is still to be made
    assert await ledger.promote_ready("b") == 0


# -- blocked ----------------------------------------------------------------------------------


async def test_a_failed_input_blocks_its_takers_and_theirs(ledger: Ledger) -> None:
    """Blocked is derived: the shot names the failed frame and its error; the edit made from the
    shot names the same frame, through the shot. Nothing is written to either."""
    frame = spec("frame", 0)
    shot = spec("shot", 1, frame)
    edit = spec("edit", 2, shot)
    await ledger.sync_plan("b", [frame, shot, edit], {})
    await walk(ledger, frame.key, *sent(frame.key), failed("content policy\nsecond line"))
    assert await ledger.blocked("b") == [
        Blocked(shot.key, "shot", "input frame failed: content policy"),
        Blocked(edit.key, "edit", "input frame failed: content policy (through shot)"),
    ]
    assert await history(ledger, edit) == [(None, "waiting", "planned")]


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ([(S.PENDING, S.REJECTED, {"last_error": "422: bad size"})], "was rejected: 422: bad size"),
        ([(S.SUBMITTED, S.CANCELLED, {"remote_status": "cancelled"})], "was cancelled"),
    ],
    ids=["rejected", "cancelled"],
)
async def test_a_rejected_or_cancelled_input_blocks(
    ledger: Ledger, steps: list[Step], reason: str
) -> None:
    """Rejected (final) and cancelled inputs block as a failed one does."""
    frame = spec("frame", 0)
    shot = spec("shot", 1, frame)
    await ledger.sync_plan("b", [frame, shot], {})
    if steps[0][0] is S.SUBMITTED:
        await walk(ledger, frame.key, *sent(frame.key))
    await walk(ledger, frame.key, *steps)
    assert await ledger.blocked("b") == [Blocked(shot.key, "shot", f"input frame {reason}")]


async def test_an_error_in_the_reason_is_one_short_line(ledger: Ledger) -> None:
    """A long error is cut: the reason stays a line of a status table."""
    frame = spec("frame", 0)
    shot = spec("shot", 1, frame)
    await ledger.sync_plan("b", [frame, shot], {})
    await walk(ledger, frame.key, *sent(frame.key), failed("x" * 1000))
    (found,) = await ledger.blocked("b")
    assert len(found.reason) < 160
    assert found.reason.endswith("…")


async def test_an_input_that_will_never_be_sent_blocks(ledger: Ledger) -> None:
    """An input no longer planned (and never sent), or not in the ledger at all, blocks."""
    frame = spec("frame", 0)
    shot = spec("shot", 1, frame)
    ghost = JobSpec("0" * 32, "b", "ghost", MODEL, {}, 1, "ghost.mp4", 9)
    lost = spec("lost", 2, ghost)
    await ledger.sync_plan("b", [frame, shot, lost], {})
    await ledger.sync_plan("b", [shot, lost], {})  # by hand: the manifest keeps the shot only
    assert await ledger.blocked("b") == [
        Blocked(shot.key, "shot", "input frame is no longer in the manifest"),
        Blocked(lost.key, "lost", f"input {ghost.key} is not in the ledger"),
    ]


async def test_retrying_the_failed_input_unblocks_and_then_completes(ledger: Ledger) -> None:
    """Failed -> pending (retry) is all it takes: the shot waits again, unblocked, and is made
    pending when the new attempt completes; the edit waits on for the shot."""
    frame = spec("frame", 0)
    shot = spec("shot", 1, frame)
    edit = spec("edit", 2, shot)
    await ledger.sync_plan("b", [frame, shot, edit], {})
    await walk(ledger, frame.key, *sent(frame.key), failed("provider error"))
    assert len(await ledger.blocked("b")) == 2
    assert await ledger.move_all(S.FAILED, S.PENDING, "retry requested", batch="b") == [frame.key]
    assert await ledger.blocked("b") == []
    assert await state(ledger, shot) is S.WAITING
    await walk(ledger, frame.key, *sent(frame.key), COMPLETED)
    assert (await state(ledger, shot), await state(ledger, edit)) == (S.PENDING, S.WAITING)


# -- superseded waiting rows ------------------------------------------------------------------


async def test_a_superseded_waiting_job_is_dropped_like_a_pending_one(tmp_path: Path) -> None:
    """Planned, a waiting job is spend to come (not sent); dropped by the manifest, it is no
    spend at all, in the summed report and the row-by-row one, and owns no file."""
    path = tmp_path / "l.db"
    frame = spec("frame", 0)
    shot = spec("shot", 1, frame)
    async with Ledger.open(path) as ledger:
        await ledger.save_batch(Batch("b", "/m.yaml", "sha", "/out"))
        await ledger.sync_plan("b", [frame, shot], {})
        for figures in (reports.figures, reports.figures_by_row):
            totals = (await figures(ledger, "b")).totals
            assert (totals.jobs, totals.not_sent_jobs, totals.not_sent_micro) == (2, 2, 733_400)
        assert ("shot", "shot.mp4") in await ledger.output_owners("b")
        again = await ledger.sync_plan("b", [frame], {})
        assert again.dropped == 1
        for figures in (reports.figures, reports.figures_by_row):
            totals = (await figures(ledger, "b")).totals
            assert (totals.jobs, totals.not_sent_jobs, totals.free_jobs) == (1, 1, 0)
        assert await ledger.output_owners("b") == [("frame", "frame.mp4")]
        assert await ledger.blocked("b") == []  # a superseded job is nobody's concern


# -- rerolls ----------------------------------------------------------------------------------


async def test_a_new_take_of_a_chained_clip_takes_the_same_inputs(ledger: Ledger) -> None:
    """A reroll of a shot made from a frame is pending (the frame's result exists) and takes
    the frame's result too."""
    frame = spec("frame", 0)
    shot = spec("shot", 1, frame)
    await ledger.sync_plan("b", [frame, shot], {})
    await walk(ledger, frame.key, *sent(frame.key), COMPLETED, *DOWNLOADED)
    await walk(ledger, shot.key, *sent(shot.key), COMPLETED, *DOWNLOADED)
    await ledger.set_mark(shot.key, "reject")
    (reroll,) = await ledger.add_rerolls("b")
    (take,) = await ledger.reroll_keys("b")
    assert reroll.take == "shot~r2"
    assert await ledger.inputs_of(take) == [frame.key]


# -- the schema -------------------------------------------------------------------------------


def test_the_trigger_names_the_states_with_a_result() -> None:
    """Migration 11 spells out jobs.HAS_RESULT: the two must not drift apart."""
    assert set(RESULT_STATES) == {state.value for state in HAS_RESULT}


async def test_migration_11_upgrades_a_version_10_ledger(tmp_path: Path) -> None:
    """A ledger as version 10 left it reads as having no chains, then is upgraded on open, its
    rows kept, and chains work in it."""
    path = tmp_path / "l.db"
    frame = spec("frame", 0)
    async with Ledger.open(path) as ledger:
        await ledger.save_batch(Batch("b", "/m.yaml", "sha", "/out"))
        await ledger.sync_plan("b", [frame], {})
    with sqlite3.connect(path) as db:
        undo_migration_11(db)
        db.execute("DELETE FROM migrations WHERE version = 11")
        db.execute("PRAGMA user_version = 10")
    async with Ledger.open(path, readonly=True) as reader:
        assert await reader.blocked("b") == []
        assert await reader.inputs_of(frame.key) == []
    async with Ledger.open(path) as ledger:
        assert await ledger.pragma("user_version") == MIGRATIONS[-1][0] == 11
        shot = spec("shot", 1, frame)
        await ledger.sync_plan("b", [frame, shot], {})
        await walk(ledger, frame.key, *sent(frame.key), COMPLETED)
        assert await state(ledger, shot) is S.PENDING


async def test_a_fast_resume_makes_ready_waiting_jobs_pending(tmp_path: Path) -> None:
    """The start that skips the sync (an unchanged manifest) still leaves no job waiting for
    results that all exist (here: a ledger edited by hand, the edge added after the result)."""
    path, config = write(tmp_path, manifest_text(2)), settings(tmp_path)
    await synced(path, config)
    with sqlite3.connect(config.ledger_path) as db:
        first, second = (key for (key,) in db.execute("SELECT key FROM jobs ORDER BY seq"))
        db.execute("UPDATE jobs SET state = 'done', rev = rev + 1 WHERE key = ?", (first,))
        db.execute("UPDATE jobs SET state = 'waiting', rev = rev + 1 WHERE key = ?", (second,))
        db.execute("INSERT INTO inputs VALUES (?, ?)", (second, first))
    plan = await synced(path, config)
    assert plan.manifest is None  # the fast path: the manifest was not loaded
    async with Ledger.open(config.ledger_path, readonly=True) as ledger:
        row = await ledger.job(second)
        events = await ledger.events(key=second)
    assert row is not None
    assert row.state is S.PENDING
    assert (events[-1].from_state, events[-1].to_state, events[-1].cause) == (
        "waiting",
        "pending",
        "inputs ready",
    )
