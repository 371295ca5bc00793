"""The webhook receiver trusts nothing: every delivery is a hint confirmed with GET /jobs/{id}.

Krea signs no webhook and may deliver twice (krea-api.md §7), and anyone who finds the URL can
POST to it. Each test runs a real batch in webhook mode against the simulator, with jobs that
stay ``processing`` until the test moves the simulator's clock, and talks to the receiver over
HTTP like a stranger would.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from orchestrator.jobs import JobState
from orchestrator.simulator import RunningSimulator
from tests.conftest import StartSimulator
from tests.hostile.support import Recorder, free_port, run_recorded
from tests.integration.pipeline_support import (
    TOKEN,
    Outcome,
    assert_exactly_once,
    ledger_rows,
    manifest_text,
)

S = JobState
FOREVER_S = 1e6  #: job duration: nothing finishes until the test advances the clock
GETS = "GET /jobs/{id}"
SWEEPS = "GET /jobs"


@dataclass
class WebhookRun:
    sim: RunningSimulator
    task: asyncio.Task[Outcome]
    recorder: Recorder
    hook_url: str
    tmp_path: Path

    async def post(self, body: bytes, content_type: str = "application/json") -> int:
        """Deliver ``body`` to the receiver as Krea (or anyone) would; the HTTP status."""
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                self.hook_url, data=io.BytesIO(body), headers={"Content-Type": content_type}
            ) as answer,
        ):
            return answer.status

    async def after_next_sweep(self) -> None:
        """Return once the poller has finished a sweep that began after this call."""
        now = self.sim.stats()["requests"].get(SWEEPS, 0)
        await self.sim.wait_until(lambda s: s["requests"].get(SWEEPS, 0) >= now + 2)

    async def rows(self) -> dict[str, Any]:
        return {r.entry_id: r for r in await ledger_rows(self.tmp_path / "ledger.db")}


@contextlib.asynccontextmanager
async def webhook_run(
    simulator: StartSimulator, tmp_path: Path, count: int, **sim_options: Any
) -> AsyncIterator[WebhookRun]:
    """A run in webhook mode whose ``count`` jobs are all submitted and still processing."""
    sim = await simulator(time_scale=1000, duration_s=FOREVER_S, **sim_options)
    port = free_port()
    hook = f"http://127.0.0.1:{port}/krea/hook"
    recorder = Recorder()
    task = asyncio.create_task(
        run_recorded(
            sim, tmp_path, manifest_text(count), recorder,
            webhook_url=hook, webhook_listen=f"127.0.0.1:{port}",
        )
    )  # fmt: skip
    try:
        await recorder.wait_for(lambda r: len(r.reached(S.SUBMITTED)) == count or task.done())
        assert not task.done(), task.result()
        yield WebhookRun(sim, task, recorder, hook, tmp_path)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _forged(remote_id: str) -> bytes:
    return (
        f'{{"job_id": "{remote_id}", "status": "completed", "created_at": "2026-01-01T00:00:00Z",'
        f' "result": {{"urls": ["http://127.0.0.1:9/evil.mp4"]}}}}'
    ).encode()


async def test_a_forged_completion_changes_nothing_until_krea_confirms_it(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P2.6: a "completed" delivery for a job still processing is checked by GET and ignored."""
    async with webhook_run(simulator, tmp_path, 3, concurrency=3) as run:
        rows = await run.rows()
        gets = run.sim.stats()["requests"].get(GETS, 0)
        for row in rows.values():
            assert await run.post(_forged(row.remote_id)) == 204  # taken as a hint, nothing more
        await run.sim.wait_until(lambda s: s["requests"].get(GETS, 0) >= gets + 3)
        await run.after_next_sweep()
        for row in (await run.rows()).values():
            assert row.state is S.SUBMITTED
            assert row.remote_status in ("backlogged", "queued", "scheduled", "processing")
            assert row.result_url is None
        assert not run.recorder.reached(S.COMPLETED)
        assert not list((tmp_path / "out").rglob("*.mp4"))
        run.sim.advance(FOREVER_S)
        outcome = await run.task
    await assert_exactly_once(run.sim, outcome, 3)


async def test_oversized_malformed_and_unknown_deliveries_are_refused_without_effect(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Bodies over 64 KiB: 413; non-JSON or id-less: 400; unknown ids: 202; no lookup, no change."""
    async with webhook_run(simulator, tmp_path, 2, concurrency=2) as run:
        before = await run.rows()
        gets = run.sim.stats()["requests"].get(GETS, 0)
        padding = "x" * (1 << 20)
        huge = f'{{"job_id": "{before["j0"].remote_id}", "pad": "{padding}"}}'.encode()
        assert await run.post(huge) == 413
        assert await run.post(b"<html>not json</html>", "text/html") == 400
        assert await run.post(b'["job_id"]') == 400
        assert await run.post(b'{"status": "completed"}') == 400
        assert await run.post(_forged(str(uuid.uuid4()))) == 202
        assert await run.post(_forged(before["j0"].remote_id + "x")) == 202
        await run.after_next_sweep()
        assert run.sim.stats()["requests"].get(GETS, 0) == gets, "an unknown id was looked up"
        assert await run.rows() == before
        run.sim.advance(FOREVER_S)
        outcome = await run.task
    await assert_exactly_once(run.sim, outcome, 2)


async def test_duplicate_and_replayed_deliveries_finish_each_job_once(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Krea's duplicates and later replays of a finished job: one download each, billed once."""
    async with webhook_run(simulator, tmp_path, 3, concurrency=2, webhook_duplicates=True) as run:
        run.sim.advance(FOREVER_S)  # j0 and j1 finish (two deliveries each); j2 starts
        await run.recorder.wait_for(lambda r: {"j0", "j1"} <= r.reached(S.DONE))
        finished = [r for r in (await run.rows()).values() if r.state is S.DONE]
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            for row in finished:  # the genuine payload, replayed twice more
                async with http.get(f"{run.sim.url}/jobs/{row.remote_id}") as answer:
                    genuine = await answer.read()
                assert await run.post(genuine) == 202
                assert await run.post(genuine) == 202
        await run.after_next_sweep()
        assert [r for r in (await run.rows()).values() if r.state is S.DONE] == finished
        run.sim.advance(FOREVER_S)
        outcome = await run.task
    await run.sim.drain_webhooks()
    await assert_exactly_once(run.sim, outcome, 3)
    downloads = run.sim.stats()["requests"].get("GET /videos/{job_id}.mp4", 0)
    assert downloads == 3, f"{downloads} downloads for 3 jobs"
    assert run.sim.stats()["webhooks"]["delivered"] >= 4
    finished = sorted(entry for entry, _, new, _ in run.recorder.changes if new is S.DONE)
    assert finished == ["j0", "j1", "j2"], "a replayed delivery finished a job a second time"
    assert outcome.summary.counts == {S.DONE: 3}
