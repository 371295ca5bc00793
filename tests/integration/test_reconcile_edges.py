"""Reconciliation on its dangerous paths: another batch's doubt, a floor that could not be read.

Each test drives the real reconciler or pipeline against the simulator and a real ledger; the
property test at the end checks the attribution rule itself on arbitrary inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.attribution import Attempt, Candidate, Window, attribute
from orchestrator.budget import Budget
from orchestrator.client import KreaClient
from orchestrator.clock import Clock, format_utc
from orchestrator.jobs import JobState
from orchestrator.ledger import Batch, Ledger
from orchestrator.limits import InFlightWindow, Pacer
from orchestrator.pipeline import Pipeline
from orchestrator.reconcile import EMPTY_ACCOUNT_FLOOR, Reconciler
from orchestrator.registry import AccountRegistry
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


async def test_a_doubt_of_another_batch_is_reported_never_cancelled_and_holds_nothing(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Batch `other`'s two lost POSTs and one job either could have made: no DELETE, the job is
    a possible duplicate of `other`, both entries go back to pending, `b` holds no slot."""
    sim = await simulator(time_scale=0.0, seed=1)
    async with Ledger.open(tmp_path / "ledger.db") as ledger:
        await ledger.save_batch(Batch("other", "/o.yaml", "sha", "/out"))
        specs = [spec(i, batch="other") for i in range(2)]
        await ledger.sync_plan("other", specs, {})
        floor = format_utc(datetime.now(UTC) - timedelta(days=1))
        for one in specs:
            await ledger.transition(one.key, S.SUBMITTING, expect=S.PENDING, cause="t", floor=floor)
            await ledger.transition(one.key, S.AMBIGUOUS, expect=S.SUBMITTING, cause="t")
        async with KreaClient.connect(sim.url, TOKEN) as client:
            made = await client.create_job("kling/kling-2.5", BODY)  # either POST may have made it
            pipe = Pipeline(ledger=ledger, client=client, batch="b", out_dir=tmp_path,
                            clock=Clock(1000.0), window=InFlightWindow(1), pacer=Pacer(None),
                            budget=Budget(), rng=random.Random(1))  # fmt: skip
            await Reconciler(pipe).settle()
        rows = await ledger.jobs()
        (doubt,) = await ledger.unattributed()
    assert "DELETE /jobs/{id}" not in sim.stats()["requests"]
    assert (doubt.remote_id, doubt.kind, doubt.batch) == (
        made.job_id,
        "possible_duplicate",
        "other",
    )
    assert doubt.price_micro == max(r.price_micro for r in rows)
    assert (pipe.window.in_flight, pipe.budget.exposure_micro) == (0, 0)
    assert {r.state for r in rows} == {S.PENDING}


async def _lost_post(ledger: Ledger, registry: AccountRegistry, batch: str) -> str:
    """One entry of ``batch`` whose POST left (registered on the account) and got no answer."""
    await ledger.save_batch(Batch(batch, f"/{batch}.yaml", "sha", "/out"))
    one = spec(0, batch=batch)
    await ledger.sync_plan(batch, [one], {})
    floor = format_utc(datetime.now(UTC) - timedelta(days=1))
    await ledger.transition(one.key, S.SUBMITTING, expect=S.PENDING, cause="t", floor=floor)
    await registry.post_started(one.key, floor)
    return one.key


async def test_a_job_one_run_doubted_is_never_adopted_by_another(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Runs a and b (two ledgers, one key) each lose a POST's answer, and one job fits both
    windows. a settles first: a possible duplicate, resent. b settles later, when a's POST is
    over: the job is still not b's to take (it may be a's), so b resends too, adopting nothing."""
    sim = await simulator(time_scale=0.0, seed=3)
    async with contextlib.AsyncExitStack() as stack:
        runs = []
        for name in ("a", "b"):
            ledger = await stack.enter_async_context(Ledger.open(tmp_path / f"{name}.db"))
            registry = await stack.enter_async_context(
                AccountRegistry.open(sim.url, TOKEN, tmp_path / f"{name}.db")
            )
            runs.append((ledger, registry, await _lost_post(ledger, registry, name)))
        client = await stack.enter_async_context(KreaClient.connect(sim.url, TOKEN))
        made = await client.create_job("kling/kling-2.5", BODY)  # either lost POST may have made it
        for ledger, registry, key in runs:
            await ledger.transition(key, S.AMBIGUOUS, expect=S.SUBMITTING, cause="t")
            await registry.ambiguous(key, no_answer=True)
        for name, (ledger, registry, _) in zip("ab", runs, strict=True):
            pipe = Pipeline(ledger=ledger, client=client, batch=name, out_dir=tmp_path,
                            clock=Clock(1000.0), window=InFlightWindow(1), pacer=Pacer(None),
                            budget=Budget(), rng=random.Random(1), registry=registry)  # fmt: skip
            await Reconciler(pipe).settle()
        rows = [(await ledger.jobs())[0] for ledger, _, _ in runs]
        doubts = [await ledger.unattributed() for ledger, _, _ in runs]
        claims = (await runs[1][1].snapshot(None)).claims
    assert [r.state for r in rows] == [S.PENDING, S.PENDING], "neither run took the job"
    assert all(r.remote_id is None for r in rows)
    assert [d.remote_id for d in doubts[0]] == [made.job_id], "a reports it, once"
    assert doubts[1] == [], "b saw a's doubt: nothing new to report"
    assert list(claims) == [made.job_id], "held as a possible duplicate on the account"
    assert "DELETE /jobs/{id}" not in sim.stats()["requests"]


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
    bounds = draw(
        st.lists(
            st.tuples(st.one_of(st.none(), SECONDS), st.one_of(st.none(), SECONDS), SECONDS,
                      st.booleans()),
            min_size=1, max_size=5,
        )
    )  # fmt: skip
    attempts = [
        Attempt(f"k{i}", _window(low, span, grace), ours=ours)
        for i, (low, span, grace, ours) in enumerate(bounds)
    ]
    created = draw(st.lists(SECONDS, max_size=6))
    candidates = [
        Candidate(f"r{i}", EPOCH + timedelta(seconds=c), "queued", format_utc(EPOCH))
        for i, c in enumerate(created)
    ]
    return attempts, candidates


def _window(low: int | None, span: int | None, grace: int) -> Window:
    start = None if low is None else EPOCH + timedelta(seconds=low)
    if span is None:
        return Window(start, None, None)
    tight = (start or EPOCH) + timedelta(seconds=span)
    return Window(start, tight, tight + timedelta(seconds=grace))


@given(_doubts())
def test_attribution_never_guesses(doubt: tuple[list[Attempt], list[Candidate]]) -> None:
    """Only inside a window, never one job to two POSTs, never 'not created' beside a doubt,
    never another run's job for ours, and every job either matched, a doubt or foreign."""
    attempts, candidates = doubt
    verdict = attribute(attempts, candidates)
    by_owner = {a.owner: a for a in attempts}
    for owner, candidate in verdict.matched.items():
        assert by_owner[owner].ours
        assert by_owner[owner].window.holds(candidate.created_at, late=True)
    matched_ids = [c.remote_id for c in verdict.matched.values()]
    assert len(matched_ids) == len(set(matched_ids))
    doubts = {c.remote_id for c in verdict.unattributable}
    for owner in verdict.not_created:
        held = [c for c in candidates if by_owner[owner].window.holds(c.created_at, late=True)]
        assert not {c.remote_id for c in held} & doubts
    ours = sorted(a.owner for a in attempts if a.ours)
    assert sorted([*verdict.matched, *verdict.not_created, *verdict.contested]) == ours
    foreign = {c.remote_id for c in verdict.foreign}
    assert not foreign & doubts
    assert not foreign & set(matched_ids)
    unmatched = [a for a in attempts if a.owner not in {**verdict.matched, **verdict.theirs}]
    for candidate in verdict.foreign:  # in no window of a POST still without its job
        assert not any(a.window.holds(candidate.created_at, late=True) for a in unmatched)


async def test_no_intent_is_written_without_a_floor(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """An empty account is its own explicit floor; every later intent has the newest job's."""
    sim = await simulator(time_scale=1000.0)
    outcome = await run_manifest(sim, tmp_path, manifest_text(3))
    rows = sorted(await ledger_rows(outcome.ledger_path), key=lambda r: r.remote_created_at or "")
    assert rows[0].floor == EMPTY_ACCOUNT_FLOOR
    assert all(r.floor for r in rows)
    assert [r.floor for r in rows[1:]] == [r.remote_created_at for r in rows[:-1]]
