"""Reconciliation on its dangerous paths: another batch's doubt, a floor that could not be read.

Each test drives the real reconciler or pipeline against the simulator and a real ledger; the
property test at the end checks the attribution rule itself on arbitrary inputs.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.budget import Budget
from orchestrator.client import KreaClient
from orchestrator.clock import Clock, format_utc
from orchestrator.jobs import JobState
from orchestrator.ledger import Batch, Ledger
from orchestrator.limits import InFlightWindow, Pacer
from orchestrator.pipeline import Pipeline
from orchestrator.reconcile import Attempt, Candidate, Reconciler, attribute
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import (
    TOKEN,
    ledger_rows,
    manifest_text,
    run_manifest,
)
from tests.integration.test_ledger import spec

S = JobState
BODY = {"prompt": "someone else's clip", "duration": 5}


async def test_an_orphan_of_another_batch_takes_no_slot_or_money_of_this_run(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Batch `other`'s two lost POSTs make an orphan that cannot be cancelled: `b` holds none."""
    sim = await simulator(
        time_scale=0.0, fault_malformed_rate=1.0, malformed_routes="delete_job", seed=1
    )
    async with Ledger.open(tmp_path / "ledger.db") as ledger:
        await ledger.save_batch(Batch("other", "/o.yaml", "sha", "/out"))
        specs = [spec(i, batch="other") for i in range(2)]
        await ledger.sync_plan("other", specs, {})
        floor = format_utc(datetime.now(UTC) - timedelta(days=1))
        for one in specs:
            await ledger.transition(one.key, S.SUBMITTING, expect=S.PENDING, cause="t", floor=floor)
            await ledger.transition(one.key, S.AMBIGUOUS, expect=S.SUBMITTING, cause="t")
        async with KreaClient.connect(sim.url, TOKEN) as client:
            await client.create_job("kling/kling-2.5", BODY)  # either lost POST may have made it
            pipe = Pipeline(ledger=ledger, client=client, batch="b", out_dir=tmp_path,
                            clock=Clock(1000.0), window=InFlightWindow(1), pacer=Pacer(None),
                            budget=Budget(), rng=random.Random(1))  # fmt: skip
            await Reconciler(pipe).settle()
        rows = await ledger.jobs()
    (orphan,) = [r for r in rows if r.state is S.ORPHAN]
    assert (orphan.batch, orphan.remote_status) == ("other", "queued")  # the DELETE failed
    assert (pipe.window.in_flight, pipe.budget.exposure_micro) == (0, 0)
    assert {r.state for r in rows if r.batch == "other" and r.state is not S.ORPHAN} == {S.PENDING}


async def test_a_failed_first_job_list_never_lets_older_jobs_be_taken_for_ours(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """The floor's GET /jobs fails, then a POST's answer is lost: no orphan, no DELETE."""
    sim = await simulator(time_scale=1000.0)
    async with KreaClient.connect(sim.url, TOKEN) as client:
        earlier = [await client.create_job("kling/kling-2.5", BODY) for _ in range(2)]
    sim.configure(outage=True, fault_ambiguous_rate=1.0)  # every POST's answer is lost

    async def end_outage_after_the_first_list() -> None:
        await sim.wait_until(lambda stats: stats["requests"].get("GET /jobs", 0) >= 1)
        sim.configure(outage=False)

    ended = asyncio.ensure_future(end_outage_after_the_first_list())
    outcome = await run_manifest(sim, tmp_path, manifest_text(1))
    await ended
    stats = sim.stats()
    assert stats["faults"]["ambiguous"] >= 1
    assert "DELETE /jobs/{id}" not in stats["requests"]
    assert not [r for r in await ledger_rows(outcome.ledger_path) if r.state is S.ORPHAN]
    statuses = {job["job_id"]: job["status"] for job in sim.jobs()}
    assert len(statuses) == 3, "one job for the one entry, beside the two earlier ones"
    assert all(statuses[job.job_id] != "cancelled" for job in earlier)
    (row,) = await ledger_rows(outcome.ledger_path)
    assert row.state is S.DONE
    assert row.remote_id not in {job.job_id for job in earlier}


# -- the attribution rule, on arbitrary inputs ----------------------------------------------------

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
SECONDS = st.integers(min_value=0, max_value=30)


@st.composite
def _doubts(draw: st.DrawFn) -> tuple[list[Attempt], list[Candidate]]:
    floors = draw(st.lists(st.one_of(st.none(), SECONDS), min_size=1, max_size=5))
    attempts = [
        Attempt(f"k{i}", None if f is None else EPOCH + timedelta(seconds=f))
        for i, f in enumerate(floors)
    ]
    created = draw(st.lists(SECONDS, max_size=6))
    candidates = [
        Candidate(f"r{i}", EPOCH + timedelta(seconds=c), "queued", format_utc(EPOCH))
        for i, c in enumerate(created)
    ]
    return attempts, candidates


def _may_own(attempt: Attempt, candidate: Candidate) -> bool:
    return attempt.floor is None or candidate.created_at >= attempt.floor


@given(_doubts())
def test_attribution_never_guesses(doubt: tuple[list[Attempt], list[Candidate]]) -> None:
    """Never older than the floor, never one job to two keys, never 'not created' with a claim."""
    attempts, candidates = doubt
    verdict = attribute(attempts, candidates)
    by_key = {a.key: a for a in attempts}
    for key, candidate in verdict.matched.items():
        assert _may_own(by_key[key], candidate)
    matched_ids = [c.remote_id for c in verdict.matched.values()]
    assert len(matched_ids) == len(set(matched_ids))
    left = [c for c in candidates if c.remote_id not in set(matched_ids)]
    for key in verdict.not_created:
        assert not any(_may_own(by_key[key], c) for c in left)
    settled = [*verdict.matched, *verdict.not_created, *verdict.contested]
    assert sorted(settled) == sorted(by_key)
    unattributable = {c.remote_id for c in verdict.unattributable}
    assert unattributable == {c.remote_id for c in left if any(_may_own(a, c) for a in attempts)}
