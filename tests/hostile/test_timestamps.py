"""Krea's timestamps, however written: parsed at the client, stored in one form, never a crash.

Reconciliation orders jobs by ``created_at`` and the ledger compares them as text, so every
remote timestamp is parsed where it enters (``answers.normal_utc``) and stored fixed-width, UTC,
milliseconds. One that cannot be read makes its job an unreadable item (a list page is read
again, a POST's answer is reconciled), never an exception in a stage.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.answers import RemoteJob, normal_utc
from orchestrator.errors import BadResponse
from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import (
    assert_exactly_once,
    ledger_rows,
    manifest_text,
    run_manifest,
)
from tests.integration.test_ledger import undo_migrations_6_to_11

ONE_FORM = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
MOMENTS = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def _written(moment: datetime, offset: timezone, form: int) -> str:
    """``moment`` in one of the ways an ISO-8601 date-time may be written."""
    local = moment.astimezone(offset)
    return [
        local.isoformat(),  # +HH:MM, microseconds when there are any
        local.isoformat(timespec="seconds"),
        local.isoformat(timespec="milliseconds"),
        moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
    ][form]


@given(MOMENTS, MOMENTS, OFFSETS, OFFSETS, st.integers(0, 4), st.integers(0, 4))
def test_text_order_of_the_one_form_is_time_order(
    a: datetime, b: datetime, za: timezone, zb: timezone, fa: int, fb: int
) -> None:
    """Two timestamps written any two ways compare as text the way their times compare."""
    ta, tb = _written(a, za, fa), _written(b, zb, fb)
    na, nb = normal_utc(ta), normal_utc(tb)
    assert na is not None
    assert nb is not None
    assert ONE_FORM.fullmatch(na)
    assert ONE_FORM.fullmatch(nb)
    seen_a = datetime.fromisoformat(ta.replace("Z", "+00:00"))
    seen_b = datetime.fromisoformat(tb.replace("Z", "+00:00"))
    if seen_a < seen_b:
        assert na <= nb
    elif seen_a > seen_b:
        assert na >= nb


@pytest.mark.parametrize("created_at", ["13/02/2026 02:20", "", "yesterday", 1770949258, None])
def test_a_job_with_an_unreadable_created_at_is_unreadable(created_at: object) -> None:
    """The client refuses it as a BadResponse, the type every stage already handles."""
    with pytest.raises(BadResponse):
        RemoteJob.from_json({"job_id": "j", "status": "queued", "created_at": created_at})


async def test_unreadable_created_at_answers_never_crash_a_run(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """A third of the answers carry a job whose created_at is not a date: every clip once."""
    sim = await simulator(
        time_scale=1000.0, fault_malformed_rate=0.3, malformed_forms="bad_timestamp", seed=5
    )
    outcome = await run_manifest(sim, tmp_path, manifest_text(12))
    assert sim.stats()["faults"]["malformed"] >= 3
    assert outcome.summary.exit_code == 0
    await assert_exactly_once(sim, outcome, 12)


@pytest.mark.parametrize("shape", ["seconds", "offset", "micros"])
async def test_every_timestamp_shape_is_stored_in_one_form(
    simulator: StartSimulator, tmp_path: Path, shape: str
) -> None:
    """Krea writing its times another valid way: lost POSTs still settle once, stored alike."""
    sim = await simulator(time_scale=1000.0, fault_ambiguous_rate=0.3, seed=2)
    first = await run_manifest(sim, tmp_path, manifest_text(6))
    sim.configure(timestamp_shape=shape)
    outcome = await run_manifest(sim, tmp_path, manifest_text(12))
    assert first.summary.exit_code == outcome.summary.exit_code == 0
    await assert_exactly_once(sim, outcome, 12)
    rows = await ledger_rows(outcome.ledger_path)
    assert all(ONE_FORM.fullmatch(r.remote_created_at or "") for r in rows)
    assert all(ONE_FORM.fullmatch(r.floor or "") for r in rows if r.floor)


async def test_older_ledgers_get_their_timestamps_rewritten_in_one_form(tmp_path: Path) -> None:
    """Migration 5 rewrites stored remote timestamps (any offset) as fixed-width UTC."""
    path = tmp_path / "ledger.db"
    async with Ledger.open(path):
        pass
    with sqlite3.connect(path) as db:  # as version 4 left it: Krea's text, as sent
        db.execute(
            "INSERT INTO jobs (key, batch, entry_id, model, request, state, seq, price_micro, "
            "remote_created_at, floor, completed_at, cause, created_at, updated_at) VALUES "
            "('k', 'b', 'e', 'm', '{}', ?, 0, 1, '2026-02-13T02:20:58Z', "
            "'2026-02-13T03:20:58.2654+01:00', 'not a date', 'test', 'x', 'x')",
            (JobState.SUBMITTED.value,),
        )
        undo_migrations_6_to_11(db)
        db.execute("DELETE FROM migrations WHERE version >= 5")
        db.execute("PRAGMA user_version = 4")
    async with Ledger.open(path) as ledger:
        (row,) = await ledger.jobs(batch="b")
    assert (row.remote_created_at, row.floor) == (
        "2026-02-13T02:20:58.000Z",
        "2026-02-13T02:20:58.265Z",
    )
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT completed_at FROM jobs").fetchone() == ("not a date",)
