"""A webhook hint is never left waiting for a whole sweep interval.

A hint can land while a sweep is finishing, after the sweep chose which jobs to read by id. The
poller used to clear its wake-up event before sleeping, so such a hint waited for ``poll_max``
(30 s in webhook mode). Here the hint is given from inside the sweep itself (the reporter is
called while the sweep records what it saw), and the sweep interval is 10,000 API seconds: the
hinted job must still be read at once.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from orchestrator.budget import Budget
from orchestrator.client import KreaClient
from orchestrator.clock import Clock
from orchestrator.jobs import JobState
from orchestrator.ledger import Batch, Ledger
from orchestrator.limits import InFlightWindow, Pacer
from orchestrator.pipeline import NullReporter, Pipeline, Tuning
from orchestrator.poller import Poller
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import TOKEN
from tests.integration.test_ledger import spec

S = JobState
BY_ID = "GET /jobs/{id}"


class _HintDuringSweep(NullReporter):
    """Gives the poller a hint for ``remote_id`` the first time a sweep reports a change."""

    def __init__(self) -> None:
        self.poller: Poller | None = None
        self.remote_id = ""

    def job_changed(
        self, entry_id: str, old: JobState | None, new: JobState, note: str = ""
    ) -> None:
        if self.poller is not None and self.remote_id:
            self.poller.hint(self.remote_id)
            self.remote_id = ""  # once


async def test_a_hint_during_a_sweep_is_confirmed_at_once(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Job A changes status in a sweep; a hint for job B given right then is read by id now."""
    sim = await simulator(time_scale=0.0, concurrency=1)  # manual clock: nothing moves unasked
    reporter = _HintDuringSweep()
    async with (
        Ledger.open(tmp_path / "ledger.db") as ledger,
        KreaClient.connect(sim.url, TOKEN) as client,
    ):
        await ledger.save_batch(Batch("b", "/m.yaml", "sha", "/out"))
        specs = [spec(i) for i in range(2)]
        await ledger.sync_plan("b", specs, {})
        for one in specs:
            remote = await client.create_job(one.model, one.request)
            await ledger.transition(one.key, S.SUBMITTING, expect=S.PENDING, cause="t")
            await ledger.transition(
                one.key, S.SUBMITTED, expect=S.SUBMITTING, cause="t", remote_id=remote.job_id,
                remote_status=remote.status, remote_created_at=remote.created_at,
            )  # fmt: skip
            reporter.remote_id = remote.job_id  # B: the second job, waiting behind A
        sim.advance(5.0)  # A starts (one slot): its status changes, B's does not
        pipe = Pipeline(ledger=ledger, client=client, batch="b", out_dir=tmp_path,
                        clock=Clock(1.0), window=InFlightWindow(10), pacer=Pacer(None),
                        budget=Budget(), rng=random.Random(1), reporter=reporter,
                        tuning=Tuning(poll_min_s=10_000.0, poll_max_s=10_000.0))  # fmt: skip
        reporter.poller = Poller(pipe)
        polling = asyncio.ensure_future(reporter.poller.run())
        try:
            stats = await asyncio.wait_for(
                sim.wait_until(lambda s: s["requests"].get(BY_ID, 0) >= 1), timeout=30.0
            )
        finally:
            polling.cancel()
    assert stats["requests"]["GET /jobs"] == 2, "the hint started the second sweep at once"
