"""Group commit: concurrent transitions share one durable transaction, each caller told alone."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from orchestrator.errors import IllegalTransition
from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger, Move
from tests.integration.test_ledger import planned

S = JobState


def _states_on_disk(path: Path) -> dict[str, str]:
    """Job states as a separate connection reads them: what a crash right now would leave."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT key, state FROM jobs").fetchall())
    finally:
        db.close()


async def test_concurrent_transitions_share_one_commit(tmp_path: Path) -> None:
    """Thirty tasks moving thirty jobs at once cost far fewer commits than thirty."""
    path = tmp_path / "l.db"
    specs = await planned(path, 30)
    async with Ledger.open(path) as ledger:
        await asyncio.gather(
            *(ledger.transition(s.key, S.SUBMITTING, expect=S.PENDING, cause="x") for s in specs)
        )
        rounds, moves = ledger.commit_counts
    assert moves == 30
    assert rounds <= 2
    assert set(_states_on_disk(path).values()) == {"submitting"}


async def test_a_stale_move_fails_its_caller_only(tmp_path: Path) -> None:
    """In a shared round, a compare-and-set that misses raises for its caller; others commit."""
    path = tmp_path / "l.db"
    specs = await planned(path, 3)
    async with Ledger.open(path) as ledger:
        good = ledger.transition(specs[0].key, S.SUBMITTING, expect=S.PENDING, cause="ok")
        stale = ledger.transition(specs[1].key, S.SUBMITTED, expect=S.SUBMITTING, cause="no")
        unit = ledger.apply(
            [
                Move(specs[2].key, S.PENDING, S.SUBMITTING, "first of a unit"),
                Move(specs[1].key, S.SUBMITTING, S.SUBMITTED, "stale: undoes its unit"),
            ]
        )
        results = await asyncio.gather(good, stale, unit, return_exceptions=True)
        assert ledger.commit_counts[0] == 1  # all three callers were in one transaction
    assert results[0] is None
    assert isinstance(results[1], IllegalTransition)
    assert isinstance(results[2], IllegalTransition)
    on_disk = _states_on_disk(path)
    assert on_disk[specs[0].key] == "submitting"
    assert on_disk[specs[1].key] == "pending"
    assert on_disk[specs[2].key] == "pending"  # the unit's first move was undone with it


async def test_a_queued_move_is_on_disk_once_a_later_write_returns(tmp_path: Path) -> None:
    """transition_soon: durable no later than the next awaited write (rounds run in order)."""
    path = tmp_path / "l.db"
    specs = await planned(path, 2)
    async with Ledger.open(path) as ledger:
        queued = ledger.transition_soon(specs[0].key, S.SUBMITTING, expect=S.PENDING, cause="id")
        assert _states_on_disk(path)[specs[0].key] == "pending"  # not yet: nothing awaited
        await ledger.transition(specs[1].key, S.SUBMITTING, expect=S.PENDING, cause="intent")
        assert queued.done()
        assert _states_on_disk(path)[specs[0].key] == "submitting"


async def test_reads_see_queued_moves(tmp_path: Path) -> None:
    """A read after transition_soon sees the move: reads wait for what was queued before them."""
    path = tmp_path / "l.db"
    specs = await planned(path, 1)
    async with Ledger.open(path) as ledger:
        queued = ledger.transition_soon(specs[0].key, S.SUBMITTING, expect=S.PENDING, cause="x")
        job = await ledger.job(specs[0].key)
        await queued
    assert job is not None
    assert job.state is S.SUBMITTING


async def test_an_illegal_move_is_refused_before_it_is_queued(tmp_path: Path) -> None:
    """A move the state machine forbids raises at once and never reaches the database."""
    path = tmp_path / "l.db"
    specs = await planned(path, 1)
    async with Ledger.open(path) as ledger:
        with pytest.raises(IllegalTransition):
            ledger.transition_soon(specs[0].key, S.DONE, expect=S.PENDING, cause="x")
        assert ledger.commit_counts == (0, 0)


async def test_closing_the_ledger_commits_what_was_queued(tmp_path: Path) -> None:
    """A move queued and never awaited is still committed before the connection closes."""
    path = tmp_path / "l.db"
    specs = await planned(path, 1)
    async with Ledger.open(path) as ledger:
        ledger.transition_soon(specs[0].key, S.SUBMITTING, expect=S.PENDING, cause="x")
    assert _states_on_disk(path)[specs[0].key] == "submitting"
