"""A lost POST that left long after it was registered: its window holds its own job.

The registry's ``sent_at`` is taken before the POST's registration and intent are on disk; on a
busy machine the request may reach the socket a tenth of a second later. A window whose tight
bound was counted from ``sent_at`` ended before the POST's own job (made just before the dropped
connection was seen), so another client's job, made just after the registration, was alone in
the tight window and adopted, and ours was taken for another client's (seen once in
``tests/e2e/test_shared_account.py``). The tight bound now counts from the ``written`` mark.

The real registry, reconciler and ledger against the simulator, with the simulator's clock
moved by hand and the registry's local clock given by the test: no timing is left to chance.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import pytest

from orchestrator.budget import Budget
from orchestrator.client import KreaClient
from orchestrator.clock import Clock, format_utc
from orchestrator.jobs import JobState
from orchestrator.ledger import Batch, Ledger, Unattributed
from orchestrator.limits import InFlightWindow, Pacer
from orchestrator.pipeline import Pipeline
from orchestrator.reconcile import Reconciler
from orchestrator.registry import AccountRegistry, account
from orchestrator.simulator import RunningSimulator
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import TOKEN
from tests.integration.test_ledger import spec

S = JobState
BODY = {"prompt": "another client's clip", "duration": 5}
RTT_S = 0.02  #: the longest answer time the run has seen


class OneIntent(NamedTuple):
    """A ledger with one job about to be sent, the account's registry and a client on the
    simulator, and the floor of the job's intent."""

    ledger: Ledger
    registry: AccountRegistry
    client: KreaClient
    key: str
    floor: str


def reconciler(job: OneIntent, tmp_path: Path, offset: float) -> Reconciler:
    """A run's reconciler whose clock bounds put Krea's clock ``offset`` after ours."""
    pipe = Pipeline(ledger=job.ledger, client=job.client, batch="b", out_dir=tmp_path,
                    clock=Clock(1.0), window=InFlightWindow(1), pacer=Pacer(None),
                    budget=Budget(), rng=random.Random(1), registry=job.registry)  # fmt: skip
    pipe.clock_bounds.restore(offset - 0.001, offset + 0.001, RTT_S)
    return Reconciler(pipe)


@asynccontextmanager
async def one_intent(sim: RunningSimulator, tmp_path: Path) -> AsyncIterator[OneIntent]:
    async with (
        Ledger.open(tmp_path / "ledger.db") as ledger,
        AccountRegistry.open(sim.url, TOKEN, tmp_path / "ledger.db") as registry,
        KreaClient.connect(sim.url, TOKEN) as client,
    ):
        await ledger.save_batch(Batch("b", "/b.yaml", "sha", "/out"))
        one = spec(0)
        await ledger.sync_plan("b", [one], {})
        floor = format_utc(datetime.fromtimestamp(sim.now(), UTC))
        yield OneIntent(ledger, registry, client, one.key, floor)


async def test_another_clients_job_made_before_a_late_write_is_never_adopted(
    simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered at t, written at t + 0.2, its job made at t + 0.21, the drop seen at t + 0.25;
    another client's job at t + 0.01. Neither is adopted: the entry goes back to pending and both
    jobs are possible duplicates; nothing is cancelled."""
    sim = await simulator(time_scale=0.0, seed=4)
    t = datetime.now(UTC).timestamp()
    local = SimpleNamespace(now=t)
    monkeypatch.setattr(account, "time", SimpleNamespace(time=lambda: local.now))
    krea_at_t = sim.now() + 1.0  # Krea's clock = local + offset, at time scale 1
    offset = krea_at_t - t
    async with one_intent(sim, tmp_path) as job:
        ledger, registry, client, key, floor = job
        await ledger.transition(key, S.SUBMITTING, expect=S.PENDING, cause="t", floor=floor)
        await registry.before_post(key, floor)  # sent_at = t
        sim.advance(krea_at_t + 0.01 - sim.now())
        theirs = await client.create_job("kling/kling-2.5", BODY)  # the other client, at t + 0.01
        local.now = t + 0.2
        await registry.written(key)  # the body reaches the socket at t + 0.2
        sim.advance(0.2)
        ours = await client.create_job("kling/kling-2.5", {"prompt": "p 0"})  # made at t + 0.21
        local.now = t + 0.25
        await registry.ambiguous(key, no_answer=True)  # the connection dropped
        long_ago = format_utc(datetime.now(UTC) - timedelta(minutes=1))  # no grace left to wait
        await ledger.transition(
            key, S.AMBIGUOUS, expect=S.SUBMITTING, cause="t", answered_at=long_ago
        )
        await reconciler(job, tmp_path, offset).settle()
        (row,) = await ledger.jobs()
        doubts = await ledger.unattributed()
    assert row.remote_id != theirs.job_id, "another client's job was taken for the entry"
    assert (row.state, row.remote_id) == (S.PENDING, None), "no job adopted"
    assert {(d.remote_id, d.kind) for d in doubts} == {
        (theirs.job_id, "possible_duplicate"),
        (ours.job_id, "possible_duplicate"),
    }
    assert "DELETE /jobs/{id}" not in sim.stats()["requests"]


async def test_the_written_mark_keeps_its_time(
    simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the tight bound counts from: the mark's local time, read back in a snapshot."""
    sim = await simulator(time_scale=0.0)
    local = SimpleNamespace(now=datetime.now(UTC).timestamp())
    monkeypatch.setattr(account, "time", SimpleNamespace(time=lambda: local.now))
    async with AccountRegistry.open(sim.url, TOKEN, tmp_path / "ledger.db") as registry:
        await registry.post_started("k", None)
        (before,) = (await registry.snapshot(None)).attempts
        local.now += 0.5
        await registry.written("k")
        (after,) = (await registry.snapshot(None)).attempts
    assert before.written_at is None
    assert after.written_at == pytest.approx(before.sent_at + 0.5)


async def test_a_dead_runs_unsent_post_never_takes_a_lone_job_while_another_client_is_about(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """A run killed after registering its POST and before writing it (it may never have been
    sent): the next run finds one job in its window. Another client made a job a second before
    the window (recorded as foreign): that client is active, so the lone job is a doubt, never
    adopted, even though no other job of that client lies inside the window."""
    sim = await simulator(time_scale=0.0, seed=5)
    t = datetime.now(UTC).timestamp()
    krea_at_t = sim.now() + 2.0
    offset = krea_at_t - t
    async with one_intent(sim, tmp_path) as job:
        ledger, registry, client, key, floor = job
        sim.advance(1.0)
        before = await client.create_job("kling/kling-2.5", BODY)  # a second before the window
        await ledger.add_unattributed(
            [Unattributed(before.job_id, "foreign", None, None, 0, before.status,
                          before.created_at)]
        )  # fmt: skip
        await ledger.transition(key, S.SUBMITTING, expect=S.PENDING, cause="t", floor=floor)
        # what start-up makes of a killed run's POST: died with it on the wire, never written
        await registry.adopt({key: (t, t + 1.0, floor)})
        sim.advance(1.5)
        lone = await client.create_job("kling/kling-2.5", BODY)  # inside the window, alone
        long_ago = format_utc(datetime.now(UTC) - timedelta(minutes=1))
        await ledger.transition(
            key, S.AMBIGUOUS, expect=S.SUBMITTING, cause="t", answered_at=long_ago
        )
        await reconciler(job, tmp_path, offset).settle()
        (row,) = await ledger.jobs()
        doubts = {d.remote_id: d.kind for d in await ledger.unattributed()}
    assert row.remote_id != lone.job_id, "a job the run cannot prove its own was adopted"
    assert row.state is S.PENDING, "sent again"
    assert doubts == {before.job_id: "foreign", lone.job_id: "possible_duplicate"}
    assert "DELETE /jobs/{id}" not in sim.stats()["requests"]
