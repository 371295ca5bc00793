"""Marks and rerolls in the ledger: durable, beside a run's writes, and each take made once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger, Move
from tests.integration.test_ledger import planned, spec

S = JobState


async def _done(ledger: Ledger, key: str) -> None:
    """Walk one job to done the way a run does (the states only)."""
    fields = {"remote_id": f"r-{key}", "remote_status": "completed"}
    for expect, to in ((S.PENDING, S.SUBMITTING), (S.SUBMITTING, S.SUBMITTED),
                       (S.SUBMITTED, S.COMPLETED), (S.COMPLETED, S.DOWNLOADING),
                       (S.DOWNLOADING, S.DONE)):  # fmt: skip
        await ledger.apply([Move(key, expect, to, "test", fields if to is S.SUBMITTED else {})])


async def test_a_mark_is_kept_changed_and_cleared_and_unknown_jobs_say_so(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    specs = await planned(path)
    async with Ledger.open(path) as ledger:
        assert await ledger.set_mark(specs[0].key, "pick")
        assert await ledger.set_mark(specs[1].key, "reject")
        assert await ledger.set_mark(specs[1].key, "pick")
        assert not await ledger.set_mark("no-such-key", "pick")
        with pytest.raises(ConfigError, match="pick, reject"):
            await ledger.set_mark(specs[2].key, "keep")  # type: ignore[arg-type]
    async with Ledger.open(path, readonly=True) as reader:
        assert await reader.marks("b") == {specs[0].key: "pick", specs[1].key: "pick"}
    async with Ledger.open(path) as ledger:
        assert await ledger.set_mark(specs[0].key, None)
        assert await ledger.marks("b") == {specs[1].key: "pick"}


async def test_a_mark_waits_for_a_writer_holding_the_ledger_and_is_then_kept(
    tmp_path: Path,
) -> None:
    """A run's transaction holds the write lock: the mark waits for it instead of failing."""
    path = tmp_path / "l.db"
    specs = await planned(path)
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE batches SET updated_at = 'now'")
    async with Ledger.open(path) as ledger:
        marking = asyncio.ensure_future(ledger.set_mark(specs[0].key, "reject"))
        done, _ = await asyncio.wait([marking], timeout=0.3)  # it cannot finish while held
        assert not done
        writer.execute("COMMIT")
        assert await marking
        assert await ledger.marks("b") == {specs[0].key: "reject"}
    writer.close()


async def test_rerolls_are_made_once_for_done_rejected_clips_and_stay_planned(
    tmp_path: Path,
) -> None:
    """A done rejected clip gets one take beside it; a pending rejected one is named instead;
    the next sync of the same plan keeps the take planned, one without its job drops it."""
    path = tmp_path / "l.db"
    specs = await planned(path)
    async with Ledger.open(path) as ledger:
        await _done(ledger, specs[0].key)
        await ledger.set_mark(specs[0].key, "reject")
        await ledger.set_mark(specs[1].key, "reject")

        made = await ledger.add_rerolls("b")

        assert [(r.rejected, r.take, bool(r.reason)) for r in made] == [
            ("j0", "j0~r2", False),
            ("j1", None, True),
        ]
        assert "pending" in made[1].reason
        assert await ledger.add_rerolls("b") == [made[1]]  # j0 already has its take
        (take_key,) = await ledger.reroll_keys("b")
        take = await ledger.job(take_key)
        assert take is not None
        assert (take.entry_id, take.output_path, take.state) == ("j0~r2", "b/j0~r2.mp4", S.PENDING)
        assert take.request == specs[0].request
        assert take.price_micro == specs[0].price_micro

        await ledger.sync_plan("b", specs, {})
        assert await ledger.reroll_keys("b") == {take_key}
        await ledger.sync_plan("b", [spec(0, prompt="edited"), *specs[1:]], {})
        assert await ledger.reroll_keys("b") == frozenset()
        dropped = await ledger.job(take_key)
        assert dropped is not None
        assert not dropped.planned
