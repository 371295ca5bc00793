"""The ledger: durable settings, atomic transitions with history, one writer, readers beside."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import IllegalTransition, LedgerBusy, LedgerError
from orchestrator.jobs import JobSpec, JobState, job_key
from orchestrator.ledger import Batch, Ledger, LedgerLock, Move

S = JobState


def spec(i: int, batch: str = "b", prompt: str = "p") -> JobSpec:
    request = {"prompt": f"{prompt} {i}"}
    return JobSpec(
        key=job_key(batch, f"j{i}", "kling/kling-2.5", request),
        batch=batch,
        entry_id=f"j{i}",
        model="kling/kling-2.5",
        request=request,
        price_micro=366_700,
        output_path=f"{batch}/j{i}.mp4",
        seq=i,
    )


def undo_migration_11(db: sqlite3.Connection) -> None:
    """Drop what migration 11 made (not its record): the chained jobs' edges and trigger."""
    db.execute("DROP TRIGGER jobs_inputs_ready")
    db.execute("DROP TABLE inputs")  # and its index
    db.execute("ALTER TABLE jobs DROP COLUMN inputs_sent")


def undo_migrations_6_to_11(db: sqlite3.Connection) -> None:
    """Drop what migrations 6 to 11 made (not their records): a ledger as version 5 left it."""
    undo_migration_11(db)
    # migration 10's billing times first: its triggers read billed_first (migration 8)
    for trigger in ("billed_first_job", "jobs_billed_at_inserted", "jobs_billed_at_moved"):
        db.execute(f"DROP TRIGGER {trigger}")
    for index in ("jobs_billed_days", "jobs_billed_order", "events_free"):
        db.execute(f"DROP INDEX {index}")
    db.execute("ALTER TABLE jobs DROP COLUMN billed_at")
    db.execute("DROP TABLE marks")  # 9
    db.execute("DROP INDEX jobs_reroll_of")
    db.execute("ALTER TABLE jobs DROP COLUMN reroll_of")
    db.execute("DROP TRIGGER events_billed_first")  # 8
    db.execute("DROP TABLE billed_first")
    db.execute("DROP INDEX jobs_report")
    db.execute("ALTER TABLE batches DROP COLUMN api_base")  # 7
    db.execute("ALTER TABLE batches DROP COLUMN cancelled_at")
    db.execute("DROP TABLE unattributed")  # 6


async def planned(path: Path, count: int = 3) -> list[JobSpec]:
    specs = [spec(i) for i in range(count)]
    async with Ledger.open(path) as ledger:
        await ledger.save_batch(Batch("b", "/m.yaml", "sha", "/out"))
        await ledger.sync_plan("b", specs, {})
    return specs


async def test_every_connection_is_wal_full_with_a_busy_timeout(tmp_path: Path) -> None:
    """P1.1: writer and reader both run WAL, synchronous=FULL (writer) and a busy timeout."""
    path = tmp_path / "l.db"
    await planned(path)
    async with Ledger.open(path) as ledger:
        assert await ledger.pragma("journal_mode") == "wal"
        assert await ledger.pragma("synchronous") == 2
        assert await ledger.pragma("busy_timeout") >= 5000
    async with Ledger.open(path, readonly=True) as reader:
        assert await reader.pragma("journal_mode") == "wal"
        assert await reader.pragma("busy_timeout") >= 5000


async def test_a_transition_writes_state_and_event_together(tmp_path: Path) -> None:
    """Each transition is one durable change with its history row, cause and fields."""
    path = tmp_path / "l.db"
    specs = await planned(path)
    key = specs[0].key
    async with Ledger.open(path) as ledger:
        await ledger.transition(
            key, S.SUBMITTING, expect=S.PENDING, cause="intent", floor="F", attempts=1
        )
        await ledger.transition(
            key,
            S.SUBMITTED,
            expect=S.SUBMITTING,
            cause="ok",
            remote_id="r-1",
            remote_status="queued",
        )
        events = await ledger.events(key=key)
        row = await ledger.job(key)
    assert [(e.from_state, e.to_state, e.cause) for e in events] == [
        (None, "pending", "planned"),
        ("pending", "submitting", "intent"),
        ("submitting", "submitted", "ok"),
    ]
    assert events[-1].remote_id == "r-1"
    assert events[-1].price_micro == 366_700
    assert row is not None
    assert (row.state, row.remote_id, row.floor, row.attempts) == (
        S.SUBMITTED,
        "r-1",
        "F",
        1,
    )


async def test_illegal_and_stale_transitions_change_nothing(tmp_path: Path) -> None:
    """A forbidden move, or one from a state the row is no longer in, raises and writes nothing."""
    path = tmp_path / "l.db"
    specs = await planned(path)
    async with Ledger.open(path) as ledger:
        with pytest.raises(IllegalTransition):
            await ledger.transition(specs[0].key, S.DONE, expect=S.PENDING, cause="x")
        with pytest.raises(IllegalTransition):
            await ledger.transition(specs[0].key, S.SUBMITTED, expect=S.SUBMITTING, cause="x")
        assert (await ledger.job(specs[0].key)).state is S.PENDING  # type: ignore[union-attr]
        assert len(await ledger.events(key=specs[0].key)) == 1


async def test_a_batch_of_moves_is_all_or_nothing(tmp_path: Path) -> None:
    """apply(): if one move is stale, the whole transaction rolls back."""
    path = tmp_path / "l.db"
    specs = await planned(path)
    async with Ledger.open(path) as ledger:
        moves = [
            Move(specs[0].key, S.PENDING, S.SUBMITTING, "a"),
            Move(specs[1].key, S.SUBMITTING, S.SUBMITTED, "b"),
        ]
        with pytest.raises(IllegalTransition):
            await ledger.apply(moves)
        assert (await ledger.job(specs[0].key)).state is S.PENDING  # type: ignore[union-attr]


async def test_cancellation_inside_a_transaction_rolls_back(tmp_path: Path) -> None:
    """P1.4/P1.5: a task cancelled mid-transaction leaves no partial write behind.

    ``sync_plan`` reads its jobs inside its transaction, after it has already unmarked every
    planned row, so a generator of jobs lets the test cancel the task at that exact point.
    """
    path = tmp_path / "l.db"
    await planned(path, 3)
    task = asyncio.current_task()
    assert task is not None
    inside: list[bool] = []

    def jobs_then_cancel() -> Iterator[JobSpec]:
        inside.append(_write_lock_is_taken(path))  # proof that the transaction is open
        task.cancel()  # delivered at sync_plan's next await, inside the transaction
        yield from (spec(i) for i in range(3, 10))

    async with Ledger.open(path) as ledger:
        with pytest.raises(asyncio.CancelledError):
            await ledger.sync_plan("b", jobs_then_cancel(), {})
        task.uncancel()
        assert inside == [True]
        # the same connection: what the rest of the run would see, and a write still works
        assert await ledger.state_counts("b") == {S.PENDING: 3}
        assert len(await ledger.jobs(batch="b", current_only=True)) == 3
        assert len(await ledger.events(batch="b")) == 3
        again = await ledger.sync_plan("b", [spec(i) for i in range(3)], {})
    assert (again.added, again.kept, again.dropped) == (0, 3, 0)


def _write_lock_is_taken(path: Path) -> bool:
    """True while another connection holds the ledger's write transaction."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        return False
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)
    finally:
        probe.close()


async def test_fifty_concurrent_writers_serialise(tmp_path: Path) -> None:
    """P1.5: fifty tasks sharing one connection each apply a move; none is lost or interleaved."""
    path = tmp_path / "l.db"
    specs = await planned(path, 50)
    async with Ledger.open(path) as ledger:
        await asyncio.gather(
            *(ledger.transition(s.key, S.SUBMITTING, expect=S.PENDING, cause="x") for s in specs)
        )
        assert await ledger.state_counts("b") == {S.SUBMITTING: 50}
        assert len(await ledger.events(batch="b")) == 100


async def test_events_are_append_only(tmp_path: Path) -> None:
    """History cannot be edited or deleted, even with raw SQL."""
    path = tmp_path / "l.db"
    await planned(path)
    db = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE events SET cause = 'x'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM events")
    db.close()


async def test_resyncing_the_same_plan_adds_nothing(tmp_path: Path) -> None:
    """P2.4: the same jobs synced twice map onto the same rows; a new job adds one row."""
    path = tmp_path / "l.db"
    specs = await planned(path, 3)
    async with Ledger.open(path) as ledger:
        again = await ledger.sync_plan("b", specs, {})
        more = await ledger.sync_plan("b", [*specs, spec(3)], {})
        fewer = await ledger.sync_plan("b", specs[:2], {})
    assert (again.added, again.kept) == (0, 3)
    assert more.added == 1
    assert fewer.dropped == 2  # j2 and j3 are pending and no longer planned


def test_second_writer_is_refused_with_the_owner_pid(tmp_path: Path) -> None:
    """P1.6: a second process cannot take the ledger while the first holds it."""
    path = tmp_path / "l.db"
    lock = LedgerLock(path)
    lock.acquire()
    try:
        code = (
            "import sys; from orchestrator.ledger import LedgerLock; from pathlib import Path\n"
            "from orchestrator.errors import LedgerBusy\n"
            f"try:\n    LedgerLock(Path({str(path)!r})).acquire()\nexcept LedgerBusy as e:\n"
            "    print(e); sys.exit(3)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
    finally:
        lock.release()
    assert result.returncode == 3
    assert "in use by pid" in result.stdout


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    """A SIGKILLed holder leaves no stale lock: the kernel drops flocks of dead processes."""
    path = tmp_path / "l.db"
    code = (
        "import sys; from pathlib import Path; from orchestrator.ledger import LedgerLock\n"
        f"LedgerLock(Path({str(path)!r})).acquire(); print('locked', flush=True)\n"
        "sys.stdin.read()  # hold the lock until killed\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "locked\n", "the child never took the lock"
        with pytest.raises(LedgerBusy) as busy:
            LedgerLock(path).acquire()
        assert busy.value.pid == holder.pid
    finally:
        holder.kill()
        holder.communicate()
    assert holder.returncode == -signal.SIGKILL
    lock = LedgerLock(path)
    lock.acquire()  # must not raise
    lock.release()


async def test_readers_work_while_the_writer_holds_the_lock(tmp_path: Path) -> None:
    """status/report open read-only and see committed rows while a run writes."""
    path = tmp_path / "l.db"
    await planned(path)
    lock = LedgerLock(path)
    lock.acquire()
    try:
        async with Ledger.open(path) as writer, Ledger.open(path, readonly=True) as reader:
            assert (await reader.state_counts("b"))[S.PENDING] == 3
            with pytest.raises(LedgerBusy):
                LedgerLock(path).acquire()
            assert writer.readonly is False
    finally:
        lock.release()


async def test_readonly_refuses_a_missing_ledger(tmp_path: Path) -> None:
    """status on a folder with no ledger says so instead of creating one."""
    with pytest.raises(LedgerError, match="no ledger"):
        async with Ledger.open(tmp_path / "missing.db", readonly=True):
            pass
    assert not (tmp_path / "missing.db").exists()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A ledger written by a newer orchestrator is not misread."""
    path = tmp_path / "l.db"
    await planned(path)
    db = sqlite3.connect(path)
    db.execute("INSERT INTO migrations VALUES (99, 'future', 'now')")
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="newer"):
        async with Ledger.open(path):
            pass


async def test_migrations_upgrade_an_older_ledger_in_place(tmp_path: Path) -> None:
    """A ledger at schema 1 is brought to the newest version on open, its rows kept."""
    from orchestrator.ledger.migrations import MIGRATIONS

    path = tmp_path / "l.db"
    await planned(path)
    db = sqlite3.connect(path)
    undo_migrations_6_to_11(db)
    db.execute("DROP INDEX events_batch")  # and 2 to 4
    db.execute("ALTER TABLE batches DROP COLUMN synced_plan")
    db.execute("ALTER TABLE jobs DROP COLUMN file_mtime_ns")
    db.execute("DELETE FROM migrations WHERE version > 1")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    async with Ledger.open(path) as ledger:
        assert await ledger.pragma("user_version") == MIGRATIONS[-1][0]
        assert (await ledger.state_counts("b"))[S.PENDING] == 3
    db = sqlite3.connect(path)
    assert (
        db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'events_batch'").fetchone()[0]
        == 1
    )
    columns = {row[1] for row in db.execute("PRAGMA table_info(batches)")}
    assert {"synced_plan", "api_base", "cancelled_at"} <= columns
    db.close()
