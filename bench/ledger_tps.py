"""Ledger micro-benchmark: durable transitions per second on a temp file.

Every job passes through at least five transitions (submitting, submitted, completed,
downloading, done), each committed (WAL, ``synchronous=FULL``) before the next remote call, so
the ledger's commit rate bounds how many jobs per second one ``run`` can move. Measured:

* ``transition``: one job at a time, each call its own durable commit (what the submitter and
  the downloader do);
* ``apply``: moves in batches of ``batch`` in one transaction (what a status sweep does);
* ``concurrent``: ``tasks`` tasks each walking its own jobs with ``transition`` at the same time
  (what a run's submit worker, poller and download workers do): the group commit lets their
  transitions share commits. Reported with the transitions per commit and the CPU per transition
  (the process's, threads included).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from bench.workload import ensure_dir, write_manifest
from orchestrator.jobs import JobState
from orchestrator.ledger import Batch, Ledger, Move
from orchestrator.manifest.manifest import load_manifest

S = JobState
WALK = (S.SUBMITTING, S.SUBMITTED, S.COMPLETED, S.DOWNLOADING, S.DONE)


@dataclass(frozen=True)
class LedgerFigures:
    transition_per_s: float
    apply_moves_per_s: float
    transitions: int
    moves: int
    concurrent_per_s: float
    concurrent_per_commit: float
    concurrent_cpu_us: float  #: CPU microseconds per transition, concurrent walk
    one_by_one_cpu_us: float  #: CPU microseconds per transition, one at a time


async def _planned(ledger: Ledger, folder: Path, jobs: int) -> list[str]:
    """Sync a generated manifest into ``ledger``; returns the job keys."""
    manifest = load_manifest(write_manifest(folder, jobs, "ledgerbench"))
    batch = Batch(manifest.batch, str(manifest.path), manifest.sha256, str(folder), None)
    await ledger.save_batch(batch)
    await ledger.sync_plan(manifest.batch, manifest.specs, {})
    return [spec.key for spec in manifest.specs]


async def _walk_one_by_one(ledger: Ledger, keys: list[str]) -> tuple[float, float]:
    """Each key through WALK with ``transition``; returns (elapsed, CPU) seconds."""
    started, cpu = time.perf_counter(), time.process_time()
    for key in keys:
        previous = S.PENDING
        for state in WALK:
            await ledger.transition(key, state, expect=previous, cause="bench")
            previous = state
    return time.perf_counter() - started, time.process_time() - cpu


async def _walk_concurrently(ledger: Ledger, keys: list[str], tasks: int) -> tuple[float, float]:
    """``tasks`` tasks share the keys, each walking its own; returns (elapsed, CPU) seconds."""
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(_walk_one_by_one(ledger, keys[i::tasks]) for i in range(tasks)))
    return time.perf_counter() - started, time.process_time() - cpu


async def _walk_in_batches(ledger: Ledger, keys: list[str], batch: int) -> float:
    """The keys through WALK with ``apply``, ``batch`` moves per transaction."""
    started = time.perf_counter()
    previous = S.PENDING
    for state in WALK:
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            await ledger.apply([Move(k, previous, state, "bench") for k in chunk])
        previous = state
    return time.perf_counter() - started


async def measure(
    folder: Path, single: int = 600, batched: int = 2000, batch: int = 100, tasks: int = 6
) -> LedgerFigures:
    """Run the three measurements on a fresh ledger in ``folder``."""
    async with Ledger.open(ensure_dir(folder) / "bench.db") as ledger:
        keys = await _planned(ledger, folder, 2 * single + batched)
        one_s, one_cpu = await _walk_one_by_one(ledger, keys[:single])
        many_s = await _walk_in_batches(ledger, keys[single : single + batched], batch)
        rounds = ledger.commit_counts[0]
        together_s, together_cpu = await _walk_concurrently(ledger, keys[single + batched :], tasks)
        rounds = ledger.commit_counts[0] - rounds
    walked = single * len(WALK)
    return LedgerFigures(
        transition_per_s=walked / one_s,
        apply_moves_per_s=batched * len(WALK) / many_s,
        transitions=walked,
        moves=batched * len(WALK),
        concurrent_per_s=walked / together_s,
        concurrent_per_commit=walked / rounds,
        concurrent_cpu_us=1e6 * together_cpu / walked,
        one_by_one_cpu_us=1e6 * one_cpu / walked,
    )
