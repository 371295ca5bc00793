"""One `run`: plan into the ledger, recover from any crash, then submit, poll and download.

Order of work, and why:

1. Load and check the manifest, unless the ledger already holds the jobs of these very bytes
   (``startup``): a resume of 100,000 jobs then starts in about a second.
2. Take the ledger's exclusive lock: two runs on one ledger could both send the same job.
3. Sync the manifest into the ledger, in one transaction (skipped when the ledger holds it).
4. Recover, set-based (``startup``): ``submitting`` rows (a crash between intent and answer)
   become ``ambiguous``; ``downloading`` rows go back to ``completed``; ``done`` rows whose file
   is gone are fetched again; ``--retry-failed`` sends failed jobs back to ``pending``.
5. Reconcile every ambiguous job *before* the first POST (``reconcile``).
6. Run the submitter, poller and downloader side by side until nothing is left in flight.

Several manifests in one run (:func:`run_many`) are several batches of one ledger: each has its
own stages, budget and summary; they share the account's in-flight window (ranked by
``priority:``, then manifest order, starving none), the request pacer and one reconciliation.

Ctrl-C or SIGTERM cancels the stages wherever they are: every state on disk is one the next run
recovers from, so stopping needs no cleanup and loses nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from orchestrator.budget import Budget
from orchestrator.client import KreaClient
from orchestrator.clock import Clock
from orchestrator.config import Settings
from orchestrator.downloader import Downloader
from orchestrator.errors import (
    EXIT_JOBS_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    ConfigError,
    OrchestratorError,
)
from orchestrator.jobs import UNSENT, JobState
from orchestrator.ledger import Ledger, LedgerLock
from orchestrator.limits import InFlightWindow, Pacer
from orchestrator.manifest.manifest import Manifest, ManifestHeader
from orchestrator.pipeline import NullReporter, Pipeline, Reporter, Tuning
from orchestrator.poller import Poller
from orchestrator.reconcile import Reconciler
from orchestrator.registry import AccountRegistry
from orchestrator.startup import (
    Plan,
    cancelled_batches,
    check_trial,
    prepare,
    recover,
    sync_manifest,
    trial_keys,
)
from orchestrator.submitter import Submitter
from orchestrator.webhooks import webhook_receiver

S = JobState
DEFAULT_CEILING = 1000
#: Each batch's jobs a trial run may send (None: every job), by batch name.
Chosen = dict[str, frozenset[str] | None]


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
    #: requests the run sent to Krea, by route (every batch's: one client per run)
    api_requests: dict[str, int] = field(default_factory=dict)
    api_seconds: float = 0.0  #: how long the run took, in Krea's seconds (real × time scale)
    #: Pending jobs a trial run (``--only``, ``--limit``) or a cancel left out on purpose: the
    #: exit code judges the rest.
    not_selected: int = 0
    cancelled_at: str | None = None  #: when `cancel` stopped the batch (its pending jobs wait)

    @property
    def planned(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        if self.stopped in ("funds", "budget"):
            return EXIT_STOPPED
        finished = self.counts.get(S.DONE, 0) + self.not_selected
        return EXIT_OK if finished == self.planned else EXIT_JOBS_FAILED


ManifestSource = Plan | Manifest | str | os.PathLike[str]


async def run(
    manifest: ManifestSource, settings: Settings, reporter: Reporter | None = None
) -> RunSummary:
    """Take ``manifest`` to verified files (see the module docstring).

    Given a path, a manifest whose jobs the ledger already holds is not loaded again (startup.py);
    given a Plan, its jobs are released once they are in the ledger.
    """
    (summary,) = await run_many([manifest], settings, [reporter or NullReporter()])
    return summary


async def run_many(
    manifests: Sequence[ManifestSource], settings: Settings, reporters: Sequence[Reporter]
) -> list[RunSummary]:
    """Several batches in one run: one ledger, one in-flight window, one request pacer, one
    reconciliation; each batch its own budget, reporter and summary (in manifest order).

    Every manifest is checked before anything is written; two with one batch name are refused.
    A free slot goes to the highest ``priority:``, then the earliest manifest, starving none.
    """
    plans = [await prepare(manifest, settings) for manifest in manifests]
    _refuse_twice(plans)
    await check_trial(plans, settings)
    lock = LedgerLock(settings.ledger_path)
    lock.acquire()
    try:
        async with Ledger.open(settings.ledger_path) as ledger:
            headers = []
            for plan in plans:
                headers.append(await sync_manifest(ledger, plan, settings))
                plan.manifest = None  # 100,000 JobSpecs need not outlive their sync
            return await _run(ledger, headers, settings, reporters)
    finally:
        lock.release()


def _refuse_twice(plans: Sequence[Plan]) -> None:
    seen: dict[str, str] = {}
    for plan in plans:
        batch, path = plan.header.batch, plan.header.path
        if batch in seen:
            raise ConfigError(
                f"{path}: batch {batch!r} is also the batch of {seen[batch]}; "
                "one run takes each batch once"
            )
        seen[batch] = path


async def _run(
    ledger: Ledger,
    manifests: Sequence[ManifestHeader],
    settings: Settings,
    reporters: Sequence[Reporter],
) -> list[RunSummary]:
    first = manifests[0]
    rps = settings.requests_per_second or first.limits.requests_per_second
    ceiling = settings.max_in_flight or first.limits.max_in_flight or DEFAULT_CEILING
    pacer = Pacer(rps)
    window = InFlightWindow(ceiling)  # the account's: one for every batch
    # Downloads: no total cap (50 MB on a slow link is fine), only an inactivity timeout (P4.4).
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=10.0, sock_read=settings.download_timeout_s
    )
    async with (
        KreaClient.connect(
            settings.api_base, settings.api_key, pace=pacer, timeout_s=settings.request_timeout_s
        ) as client,
        aiohttp.ClientSession(timeout=timeout) as media,
        _registry(settings) as registry,
    ):
        pipes = [
            Pipeline(
                ledger=ledger,
                client=client,
                batch=manifest.batch,
                out_dir=settings.out_dir,
                clock=Clock(settings.time_scale),
                window=window,
                pacer=pacer,
                budget=Budget((await ledger.batch(manifest.batch)).budget_micro),  # type: ignore[union-attr]
                reporter=reporter,
                rng=random.Random(settings.seed),
                tuning=_tuning(settings),
                files=manifest.files,
                webhook_url=settings.webhook_url,
                retry_failed=settings.retry_failed,
                registry=registry,
                rank=(-manifest.priority, index),
            )
            for index, (manifest, reporter) in enumerate(zip(manifests, reporters, strict=True))
        ]
        home = pipes[0]
        for pipe in pipes[1:]:  # one account: one view of Krea's clock, of other clients' jobs
            pipe.clock_bounds, pipe.strangers = home.clock_bounds, home.strangers
        if registry is not None and (learnt := await registry.clock(home.clock.scale)):
            home.clock_bounds.restore(*learnt)
        chosen: Chosen = {}
        stopped = await cancelled_batches(ledger, [p.batch for p in pipes], settings)
        for pipe in pipes:
            await recover(pipe)
            chosen[pipe.batch] = (
                frozenset()  # `cancel` stopped it: finish what flies, send nothing new
                if pipe.batch in stopped
                else await trial_keys(ledger, pipe.batch, settings)
            )
            pipe.reporter.start(pipe.batch, await _start_counts(pipe, chosen[pipe.batch]))
        started = home.clock.now()
        await _stages(pipes, settings, media, chosen)
        for pipe in pipes:
            if pipe.flags.fatal is not None:
                raise pipe.flags.fatal
        took = home.clock.now() - started
        return [
            await _summarize(pipe, took, chosen[pipe.batch], stopped.get(pipe.batch))
            for pipe in pipes
        ]


async def _start_counts(pipe: Pipeline, chosen: frozenset[str] | None) -> dict[JobState, int]:
    """The batch's jobs by state, for progress: a trial's left-out unsent jobs are not counted."""
    counts = await pipe.ledger.state_counts(pipe.batch, current_only=True)
    if chosen is not None:
        rows = await pipe.ledger.entry_states(pipe.batch)
        for unsent in UNSENT:
            counts[unsent] = sum(key in chosen for key, _, state in rows if state is unsent)
    return counts


@asynccontextmanager
async def _registry(settings: Settings) -> AsyncIterator[AccountRegistry | None]:
    """The account registry, unless this run is alone on its account by construction."""
    if not settings.account_registry:
        yield None
        return
    async with AccountRegistry.open(
        settings.api_base, settings.api_key, settings.ledger_path, directory=settings.state_dir
    ) as registry:
        yield registry


def _tuning(settings: Settings) -> Tuning:
    """Sweep bounds; in webhook mode deliveries drive confirmation, sweeps are a safety net."""
    if settings.webhook_url:
        return Tuning(poll_min_s=settings.poll_max_s, poll_max_s=settings.poll_max_s)
    return Tuning(poll_min_s=settings.poll_min_s, poll_max_s=settings.poll_max_s)


async def _stages(
    pipes: Sequence[Pipeline], settings: Settings, media: aiohttp.ClientSession, chosen: Chosen
) -> None:
    """Run the stages to the end; the error that stopped them, not their task group, if any."""
    try:
        await _run_stages(pipes, settings, media, chosen)
    except BaseExceptionGroup as group:
        raise _first_cause(group) from None


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception a caller can act on: our own error if any stage raised one."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        item = pending.pop(0)
        if isinstance(item, BaseExceptionGroup):
            pending[:0] = list(item.exceptions)
        else:
            leaves.append(item)
    ours = [leaf for leaf in leaves if isinstance(leaf, OrchestratorError)]
    return (ours or leaves)[0]


async def _run_stages(
    pipes: Sequence[Pipeline], settings: Settings, media: aiohttp.ClientSession, chosen: Chosen
) -> None:
    reconciler = Reconciler(pipes[0], {pipe.batch: pipe for pipe in pipes})
    await reconciler.settle()  # nothing is sent while any POST's outcome is unknown
    routes = {pipe.batch: (pipe, Poller(pipe)) for pipe in pipes}
    async with (
        webhook_receiver(settings.webhook_listen, routes),
        asyncio.TaskGroup() as group,
    ):
        for pipe, poller in routes.values():
            stages = _batch_stages(pipe, poller, reconciler, settings, media, chosen[pipe.batch])
            group.create_task(stages)


async def _batch_stages(
    pipe: Pipeline,
    poller: Poller,
    reconciler: Reconciler,
    settings: Settings,
    media: aiohttp.ClientSession,
    chosen: frozenset[str] | None,
) -> None:
    """One batch's submitter, poller and downloader, until nothing of it is left in flight."""
    downloader = Downloader(pipe, media, workers=settings.download_workers)
    submitter = Submitter(pipe, reconciler, workers=settings.submit_workers, chosen=chosen)
    async with asyncio.TaskGroup() as group:
        group.create_task(submitter.run())
        group.create_task(downloader.run())
        await poller.run()
        downloader.finish()


async def _summarize(
    pipe: Pipeline, api_seconds: float, chosen: frozenset[str] | None, cancelled_at: str | None
) -> RunSummary:
    counts = await pipe.ledger.state_counts(pipe.batch, current_only=True)
    counts.pop(S.ORPHAN, None)
    not_selected = 0
    if chosen is not None:
        rows = await pipe.ledger.entry_states(pipe.batch)
        left = [key for key, _, state in rows if key not in chosen and state in UNSENT]
        not_selected = len(left)
    held = pipe.budget.held_back
    stopped = None
    if pipe.flags.no_funds:
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
        api_seconds=api_seconds,
        not_selected=not_selected,
        cancelled_at=cancelled_at,
    )
