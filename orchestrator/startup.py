"""A run's start: the manifest's jobs into the ledger, and the ledger into a state to work from.

Everything before a run's first API request happens here; at 100,000 jobs it is what a user
waits for when resuming (issue 6). Why it is built this way:

* **An unchanged manifest is not loaded again.** Parsing and checking 100,000 entries takes
  seconds, so each sync records in the batch row (``synced_plan``) the manifest's header
  (:class:`~orchestrator.manifest.manifest.ManifestHeader`: batch, limits, budget, local files), the
  output folder and the fingerprint of the planning code and data. A later run whose manifest
  has the same bytes, path and output folder under the same fingerprint, and whose local files
  still hash the same, starts from that record: its jobs are already in the ledger.
* **Validation comes before any write.** Any other manifest is loaded and checked in full
  before the ledger is opened or locked; a bad one changes nothing.
* **One transaction per sync**: batch row, jobs, moved outputs and ``synced_plan`` commit
  together, so a crash mid-sync leaves the previous plan whole.
* **No file is written by two batches.** A plan with an output path that a job of another batch
  of the ledger owns, in the same or an enclosing output folder, is refused before anything is
  written (issue 7): within one manifest planning.py already refuses shared paths.
* **Recovery is set-based**: one UPDATE per kind of crash leftover, and the in-flight window
  and spend restored from sums SQLite computes, so no step holds 100,000 records.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from orchestrator.clock import format_utc, parse_utc
from orchestrator.config import Settings
from orchestrator.errors import InputError, LedgerError, ManifestError
from orchestrator.jobs import JobSpec, JobState
from orchestrator.ledger import Batch, Ledger, Move
from orchestrator.ledger.records import DoneFile
from orchestrator.manifest.local_files import FileHasher
from orchestrator.manifest.manifest import (
    Limits,
    Manifest,
    ManifestHeader,
    load_manifest,
    manifest_sha256,
    planner_fingerprint,
)
from orchestrator.manifest.output_paths import collision_key
from orchestrator.money.prices import seconds_for
from orchestrator.pipeline import Pipeline
from orchestrator.selection import Selection
from orchestrator.transfer import verified_on_disk

S = JobState
#: The ledger's newest jobs, if this recent, are claimed in the account registry at every start
#: (another run's window can only reach jobs newer than its floor: the account's newest job).
CLAIM_DAYS = 1
CLAIM_NEWEST = 2000


@dataclass
class Plan:
    """A manifest ready to run: its header, and its jobs until they are in the ledger."""

    header: ManifestHeader
    manifest: Manifest | None  #: None when the ledger already holds the jobs, or once synced

    @property
    def budget_micro(self) -> int | None:
        return self.header.budget_micro


async def prepare(source: Plan | Manifest | str | os.PathLike[str], settings: Settings) -> Plan:
    """The plan of ``source``; a path is loaded (and checked) only if the ledger lacks its jobs."""
    if isinstance(source, Plan):
        return source
    if isinstance(source, Manifest):
        return Plan(source.header, source)
    header = await _synced_header(os.fspath(source), settings)
    if header is not None:
        return Plan(header, None)
    manifest = await asyncio.to_thread(load_manifest, source)  # reads, hashes, checks: seconds
    return Plan(manifest.header, manifest)


def _batch_record(header: ManifestHeader, settings: Settings) -> Batch:
    """The batch row: absolute paths, and the budget from the flag or else the manifest."""
    budget = settings.budget_micro if settings.budget_micro is not None else header.budget_micro
    out_dir, manifest_path = os.path.abspath(settings.out_dir), os.path.abspath(header.path)
    return Batch(header.batch, manifest_path, header.sha256, out_dir, budget, settings.api_base)


async def sync_manifest(
    ledger: Ledger, plan: Plan | Manifest, settings: Settings
) -> ManifestHeader:
    """Record the batch and its jobs; a plan the ledger already holds is not written again."""
    plan = await prepare(plan, settings)
    record = _batch_record(plan.header, settings)
    if await _holds(ledger, plan.header, record):
        await ledger.save_batch(record)  # the budget flag may differ from the last run's
        # What a sync ends with (a trigger keeps it so as inputs complete): no job left waiting
        # for results that all exist, even in a ledger edited by other means. One indexed UPDATE.
        await ledger.promote_ready(plan.header.batch)
        return plan.header
    # No jobs in hand means the plan was found in the ledger, and another run has changed the
    # batch since (before this one took the lock; rare): load and check the manifest anew.
    manifest = plan.manifest
    if manifest is None:
        manifest = await asyncio.to_thread(load_manifest, plan.header.path)
    await _refuse_shared_files(ledger, manifest.specs, record)
    synced = json.dumps(_synced_plan(manifest.header, record), sort_keys=True)
    await ledger.sync_plan(
        manifest.batch, manifest.specs, _seconds, record=record, synced_plan=synced
    )
    return manifest.header


async def check_trial(plans: Iterable[Plan], settings: Settings) -> None:
    """ConfigError for an ``--only`` name no job has, before anything is written."""
    trial = Selection(settings.only, settings.limit)
    if not trial.only:
        return
    ids: dict[str, list[str]] = {}
    for plan in plans:
        if plan.manifest is not None:
            ids[plan.header.batch] = [spec.entry_id for spec in plan.manifest.specs]
        else:  # the ledger holds this very plan (and, being synced, can be read)
            async with Ledger.open(settings.ledger_path, readonly=True) as ledger:
                rows = await ledger.entry_states(plan.header.batch)
            ids[plan.header.batch] = [entry_id for _, entry_id, _ in rows]
    trial.check(ids)


async def trial_keys(ledger: Ledger, batch: str, settings: Settings) -> frozenset[str] | None:
    """Keys of the jobs of ``batch`` this run may send; None: every job (no trial flags)."""
    if settings.rerolls_only:
        return await ledger.reroll_keys(batch)
    trial = Selection(settings.only, settings.limit)
    if trial.everything:
        return None
    rows = await ledger.entry_states(batch)
    chosen = trial.chosen([entry_id for _, entry_id, _ in rows])
    # A chosen job's inputs are chosen too: without its frame a shot could never be sent.
    return frozenset(await ledger.with_inputs(k for k, entry_id, _ in rows if entry_id in chosen))


async def cancelled_batches(
    ledger: Ledger, batches: Iterable[str], settings: Settings
) -> dict[str, str]:
    """The batches `orchestrator cancel` stopped (name -> when), whose pending jobs this run
    must not send; with ``--resume-cancelled`` none, and the marks are cleared."""
    stopped = {}
    for name in batches:
        batch = await ledger.batch(name)
        if batch is None or batch.cancelled_at is None:
            continue
        if settings.resume_cancelled:
            await ledger.set_cancelled(name, False)
        else:
            stopped[name] = batch.cancelled_at
    return stopped


async def recover(pipe: Pipeline) -> None:
    """Bring a ledger left by a crash (or a finished run) to a state the stages work from."""
    ledger, batch = pipe.ledger, pipe.batch
    # Every batch's: under the ledger's lock, no POST of any batch can still be on the wire.
    await ledger.move_all(S.SUBMITTING, S.AMBIGUOUS, "crash recovery: the POST may have been sent")
    await _rejoin_account(pipe)
    await ledger.move_all(
        S.DOWNLOADING, S.COMPLETED, "crash recovery: download interrupted", batch=batch
    )
    gone = await asyncio.to_thread(_missing_files, pipe.out_dir, await ledger.done_files(batch))
    await ledger.apply(
        [Move(key, S.DONE, S.COMPLETED, "the file is missing or changed on disk") for key in gone]
    )
    if pipe.retry_failed > 0:
        for state in (S.FAILED, S.CANCELLED):
            cause = "retry requested: a new attempt"
            for key in await ledger.move_all(state, S.PENDING, cause, batch=batch):
                pipe.retried[key] = 1
    await _restore_accounts(pipe)


async def _rejoin_account(pipe: Pipeline) -> None:
    """Bring the account registry up to date with this ledger, before any reconciliation.

    The ledger lock proves every earlier run on this ledger dead, so this run takes over their
    open POSTs: those whose row is ambiguous stay possible owners (bounded by the dead run's last
    heartbeat); the others are over (a job id recorded, or no POST sent). The ledger's recent
    jobs are claimed, in case the registry was removed or predates them.
    """
    registry, ledger = pipe.registry, pipe.ledger
    if registry is None:
        return
    left = await registry.left_behind()
    ambiguous = {row.key: row for row in await ledger.jobs(states=[S.AMBIGUOUS])}
    unsent = await registry.unsent({k: _epoch(r.intent_at) for k, r in ambiguous.items()})
    cause = "crash recovery: the POST was never sent (the account registry has no record of it)"
    await ledger.apply([Move(key, S.AMBIGUOUS, S.PENDING, cause) for key in unsent])
    ambiguous = {key: row for key, row in ambiguous.items() if key not in unsent}
    for key in left.keys() - ambiguous.keys():
        row = await ledger.job(key)
        if row is not None and row.remote_id and row.remote_created_at:
            await registry.claimed(key, row.remote_id, row.remote_created_at)
        else:
            await registry.not_created(key)
    await registry.adopt(
        {
            key: (_epoch(row.intent_at), left.get(key) or _epoch(row.answered_at), row.floor)
            for key, row in ambiguous.items()
        }
    )
    recent = format_utc(datetime.now(UTC) - timedelta(days=CLAIM_DAYS))
    await registry.claim_all(await ledger.remote_jobs_since(recent, CLAIM_NEWEST))


def _epoch(text: str | None) -> float:
    return parse_utc(text).timestamp() if text else time.time()


def _missing_files(out_dir: Path, done: Iterable[DoneFile]) -> list[str]:
    """Keys of done jobs whose file is gone or changed (stats, hashes changed files: a thread)."""
    return [
        file.key
        for file in done
        if not verified_on_disk(
            out_dir / (file.output_path or ""), file.bytes, file.sha256, mtime_ns=file.mtime_ns
        )
    ]


async def _restore_accounts(pipe: Pipeline) -> None:
    """In-flight slots, spend and the download queue, from the ledger."""
    flying, exposure_micro, billed_micro = await pipe.ledger.flight_totals(pipe.batch)
    for _ in range(flying):
        pipe.window.hold()
    pipe.budget.restore(billed_micro=billed_micro, exposure_micro=exposure_micro)
    for key in await pipe.ledger.job_keys(pipe.batch, S.COMPLETED):
        pipe.completed.put_nowait(key)


def _seconds(spec: JobSpec) -> float | None:
    return seconds_for(spec.model, spec.request)


# -- the record of a sync ---------------------------------------------------------------------


def _synced_plan(header: ManifestHeader, record: Batch) -> dict[str, Any]:
    """What ``batches.synced_plan`` holds: enough to run without the manifest, and to match it."""
    return {
        "planner": planner_fingerprint(),
        "manifest_path": record.manifest_path,
        "out_dir": record.out_dir,
        "sha256": header.sha256,
        "batch": header.batch,
        "limits": asdict(header.limits),
        "budget_micro": header.budget_micro,
        "local_files": header.local_files,
        "priority": header.priority,
    }


def _header(synced: dict[str, Any], path: str) -> ManifestHeader:
    limits = Limits(**synced["limits"])
    budget, files = synced["budget_micro"], synced["local_files"]
    priority = synced.get("priority", 0)
    return ManifestHeader(path, synced["batch"], synced["sha256"], limits, budget, files, priority)


async def _holds(ledger: Ledger, header: ManifestHeader, record: Batch) -> bool:
    """True when the ledger's jobs of the batch were synced from exactly this plan."""
    wanted = _synced_plan(header, record)
    for batch, text in await ledger.synced_plans(header.sha256):
        if batch.name == header.batch and json.loads(text) == wanted:
            return True
    return False


async def _synced_header(path: str, settings: Settings) -> ManifestHeader | None:
    """The header of the plan the ledger holds for the manifest at ``path``, if still current.

    Read-only and best effort: any doubt (no ledger, an unreadable file, a changed local file)
    means None, and the manifest is then loaded and checked in full.
    """
    if not settings.ledger_path.exists():
        return None
    try:
        sha256 = await asyncio.to_thread(manifest_sha256, path)
        async with Ledger.open(settings.ledger_path, readonly=True) as ledger:
            candidates = await ledger.synced_plans(sha256)
    except (ManifestError, LedgerError, sqlite3.Error):
        return None
    synced = [json.loads(text) for _, text in candidates]
    return await asyncio.to_thread(_current_header, synced, path, settings)  # hashes local files


def _current_header(
    candidates: list[dict[str, Any]], path: str, settings: Settings
) -> ManifestHeader | None:
    """The first recorded plan made by this planner, for this manifest path and output folder."""
    wanted = (planner_fingerprint(), os.path.abspath(path), os.path.abspath(settings.out_dir))
    for synced in candidates:
        made = (synced["planner"], synced["manifest_path"], synced["out_dir"])
        if made == wanted and _files_unchanged(synced["local_files"]):
            return _header(synced, path)
    return None


def _files_unchanged(local_files: dict[str, str]) -> bool:
    """True when every local file still has the content the plan's job keys were made from."""
    hasher = FileHasher(os.sep)  # the paths are absolute
    try:
        return all(hasher.digest(path)[0] == digest for path, digest in local_files.items())
    except ValueError:
        return False


# -- files shared between batches -------------------------------------------------------------


async def _refuse_shared_files(ledger: Ledger, specs: Iterable[JobSpec], record: Batch) -> None:
    """InputError when a job would write a file that a job of another batch owns."""
    owners = await _other_owners(ledger, record)
    if not owners:
        return
    for spec in specs:
        found = owners.get(collision_key(os.path.join(record.out_dir, spec.output_path)))
        if found is not None:
            batch, entry_id = found
            raise InputError(
                f"job {spec.entry_id!r} would write {spec.output_path!r} in {record.out_dir}, "
                f"the file of job {entry_id!r} of batch {batch!r} of this ledger; give each "
                "batch its own output folder (--out), or put {batch} in the output template"
            )


async def _other_owners(ledger: Ledger, record: Batch) -> dict[str, tuple[str, str]]:
    """collision key of each absolute path other batches write near ``record``'s folder."""
    owners: dict[str, tuple[str, str]] = {}
    for name in await ledger.batch_names():
        other = await ledger.batch(name)
        if name == record.name or other is None or not _nested(other.out_dir, record.out_dir):
            continue
        for entry_id, path in await ledger.output_owners(name):
            owners[collision_key(os.path.join(other.out_dir, path))] = (name, entry_id)
    return owners


def _nested(one: str, other: str) -> bool:
    """True when one folder is the other or inside it (their files can be the same files)."""
    return os.path.commonpath([one, other]) in (one, other)
