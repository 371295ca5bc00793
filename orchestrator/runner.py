"""One `run`: plan into the ledger, recover from any crash, then submit, poll and download.

Order of work, and why:

1. Take the ledger's exclusive lock: two runs on one ledger could both send the same job.
2. Sync the manifest into the ledger (skipped when the file is byte-for-byte the one last synced).
3. Recover: ``submitting`` rows (a crash between intent and answer) become ``ambiguous``;
   ``downloading`` rows go back to ``completed``; ``done`` rows whose file is gone are fetched
   again; ``--retry-failed`` sends failed jobs back to ``pending``.
4. Reconcile every ambiguous job *before* the first POST (``reconcile``).
5. Run the submitter, poller and downloader side by side until nothing is left in flight.

Ctrl-C or SIGTERM cancels the stages wherever they are: every state on disk is one the next run
recovers from, so stopping needs no cleanup and loses nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from orchestrator.client import KreaClient
from orchestrator.clock import Clock
from orchestrator.config import Settings
from orchestrator.downloader import Downloader, verified_on_disk
from orchestrator.errors import EXIT_CANNOT_RUN, EXIT_JOBS_FAILED, EXIT_OK, EXIT_STOPPED
from orchestrator.jobs import IN_FLIGHT, REMOTE_TERMINAL, JobState
from orchestrator.ledger import Batch, Ledger, LedgerLock, Move
from orchestrator.limits import InFlightWindow, Pacer
from orchestrator.manifest import Manifest
from orchestrator.pipeline import Budget, NullReporter, Pipeline, Reporter, Tuning
from orchestrator.poller import Poller
from orchestrator.prices import seconds_for
from orchestrator.reconcile import Reconciler
from orchestrator.submitter import Submitter
from orchestrator.webhooks import webhook_receiver

S = JobState
DEFAULT_CEILING = 1000


@dataclass(frozen=True)
class RunSummary:
    """How a run ended."""

    batch: str
    out_dir: Path
    counts: dict[JobState, int]
    billed_micro: int
    exposure_micro: int
    held_back: int
    held_back_micro: int
    stopped: str | None  #: why submitting stopped early, if it did
    api_requests: dict[str, int] = field(default_factory=dict)

    @property
    def planned(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        if self.stopped == "unauthorized":
            return EXIT_CANNOT_RUN
        if self.stopped in ("funds", "budget"):
            return EXIT_STOPPED
        return EXIT_OK if self.counts.get(S.DONE, 0) == self.planned else EXIT_JOBS_FAILED


async def run(
    manifest: Manifest, settings: Settings, reporter: Reporter | None = None
) -> RunSummary:
    """Take ``manifest`` to verified files (see the module docstring)."""
    reporter = reporter or NullReporter()
    lock = LedgerLock(settings.ledger_path)
    lock.acquire()
    try:
        async with Ledger.open(settings.ledger_path) as ledger:
            await sync_manifest(ledger, manifest, settings)
            return await _run(ledger, manifest, settings, reporter)
    finally:
        lock.release()


def batch_record(manifest: Manifest, settings: Settings) -> Batch:
    """The batch row: absolute paths, and the budget from the flag or else the manifest."""
    budget = settings.budget_micro if settings.budget_micro is not None else manifest.budget_micro
    out_dir, manifest_path = os.path.abspath(settings.out_dir), os.path.abspath(manifest.path)
    return Batch(manifest.batch, manifest_path, manifest.sha256, out_dir, budget)


async def sync_manifest(ledger: Ledger, manifest: Manifest, settings: Settings) -> None:
    """Record the batch and its jobs; a byte-identical manifest already synced is skipped."""
    known = await ledger.batch(manifest.batch)
    batch = batch_record(manifest, settings)
    await ledger.save_batch(batch)
    if known is not None and (known.manifest_sha256, known.out_dir) == (
        batch.manifest_sha256,
        batch.out_dir,
    ):
        return
    seconds = {s.key: seconds_for(s.model, s.request) for s in manifest.specs}
    await ledger.sync_plan(manifest.batch, manifest.specs, seconds)
    await ledger.apply(await ledger.moved_outputs(manifest.batch, manifest.specs))


async def _run(
    ledger: Ledger, manifest: Manifest, settings: Settings, reporter: Reporter
) -> RunSummary:
    rps = settings.requests_per_second or manifest.limits.requests_per_second
    ceiling = settings.max_in_flight or manifest.limits.max_in_flight or DEFAULT_CEILING
    pacer = Pacer(rps)
    # Downloads: no total cap (50 MB on a slow link is fine), only an inactivity timeout (P4.4).
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=10.0, sock_read=settings.download_timeout_s
    )
    async with (
        KreaClient.connect(
            settings.api_base, settings.api_key, pace=pacer, timeout_s=settings.request_timeout_s
        ) as client,
        aiohttp.ClientSession(timeout=timeout) as media,
    ):
        pipe = Pipeline(
            ledger=ledger,
            client=client,
            batch=manifest.batch,
            out_dir=settings.out_dir,
            clock=Clock(settings.time_scale),
            window=InFlightWindow(ceiling),
            pacer=pacer,
            budget=Budget(cap_micro=(await ledger.batch(manifest.batch)).budget_micro),  # type: ignore[union-attr]
            reporter=reporter,
            rng=random.Random(settings.seed),
            tuning=_tuning(settings),
            files={k: v for s in manifest.specs for k, v in s.files.items()},
            webhook_url=settings.webhook_url,
            retry_failed=settings.retry_failed,
        )
        await recover(pipe)
        reporter.start(pipe.batch, await ledger.state_counts(pipe.batch, planned_only=True))
        await _stages(pipe, settings, media)
        return await summarize(pipe)


def _tuning(settings: Settings) -> Tuning:
    """Sweep bounds; in webhook mode deliveries drive confirmation, sweeps are a safety net."""
    if settings.webhook_url:
        return Tuning(poll_min_s=settings.poll_max_s, poll_max_s=settings.poll_max_s)
    return Tuning(poll_min_s=settings.poll_min_s, poll_max_s=settings.poll_max_s)


async def recover(pipe: Pipeline) -> None:
    """Bring a ledger left by a crash (or a finished run) to a state the stages work from."""
    ledger, batch = pipe.ledger, pipe.batch
    crashed = await ledger.jobs(states=[S.SUBMITTING])
    await ledger.apply(
        [
            Move(r.key, S.SUBMITTING, S.AMBIGUOUS, "crash recovery: the POST may have been sent")
            for r in crashed
        ]
    )
    interrupted = await ledger.jobs(batch=batch, states=[S.DOWNLOADING])
    await ledger.apply(
        [
            Move(r.key, S.DOWNLOADING, S.COMPLETED, "crash recovery: download interrupted")
            for r in interrupted
        ]
    )
    done = await ledger.jobs(batch=batch, states=[S.DONE], planned_only=True)
    await ledger.apply(
        [
            Move(r.key, S.DONE, S.COMPLETED, "the file is missing or changed on disk")
            for r in done
            if not verified_on_disk(pipe.out_dir / (r.output_path or ""), r.bytes, r.sha256)
        ]
    )
    if pipe.retry_failed > 0:
        failed = await ledger.jobs(batch=batch, states=[S.FAILED, S.CANCELLED], planned_only=True)
        await ledger.apply(
            [Move(r.key, r.state, S.PENDING, "retry requested: a new attempt") for r in failed]
        )
        for row in failed:
            pipe.retried[row.key] = 1
    await _restore_accounts(pipe)


async def _restore_accounts(pipe: Pipeline) -> None:
    """In-flight slots, spend and the download queue, from the ledger."""
    rows = await pipe.ledger.jobs(batch=pipe.batch)
    for row in rows:
        flying = row.state in IN_FLIGHT or (
            row.state is S.ORPHAN and row.remote_status not in REMOTE_TERMINAL
        )
        if flying:
            pipe.window.hold()
            pipe.budget.exposure_micro += row.price_micro
        elif row.remote_status == "completed":
            pipe.budget.billed_micro += row.price_micro
        if row.state is S.COMPLETED:
            pipe.completed.put_nowait(row.key)


async def _stages(pipe: Pipeline, settings: Settings, media: aiohttp.ClientSession) -> None:
    reconciler = Reconciler(pipe)
    await reconciler.settle()  # nothing is sent while any POST's outcome is unknown
    poller = Poller(pipe)
    downloader = Downloader(pipe, media, workers=settings.download_workers)
    async with (
        webhook_receiver(settings.webhook_listen, pipe, poller),
        asyncio.TaskGroup() as group,
    ):
        group.create_task(Submitter(pipe, reconciler, workers=settings.submit_workers).run())
        group.create_task(downloader.run())
        await poller.run()
        downloader.finish()


async def summarize(pipe: Pipeline) -> RunSummary:
    counts = await pipe.ledger.state_counts(pipe.batch, planned_only=True)
    counts.pop(S.ORPHAN, None)
    held = pipe.budget.held_back
    stopped = None
    if pipe.flags.unauthorized:
        stopped = "unauthorized"
    elif pipe.flags.no_funds:
        stopped = "funds"
    elif held:
        stopped = "budget"
    return RunSummary(
        batch=pipe.batch,
        out_dir=pipe.out_dir,
        counts=counts,
        billed_micro=pipe.budget.billed_micro,
        exposure_micro=pipe.budget.exposure_micro,
        held_back=len(held),
        held_back_micro=sum(held.values()),
        stopped=stopped,
        api_requests=dict(pipe.client.requests),
    )
