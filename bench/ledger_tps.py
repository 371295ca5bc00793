"""Ledger micro-benchmark: durable transitions per second on a temp file.

Every job passes through at least five transitions (submitting, submitted, completed,
downloading, done), each committed (WAL, ``synchronous=FULL``) before the next remote call, so
the ledger's commit rate bounds how many jobs per second one ``run`` can move. Measured:

* ``transition``: one job at a time, each call its own durable commit (what the submitter and
  the downloader do);
* ``apply``: moves in batches of ``batch`` in one transaction (what a status sweep does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from bench.workload import ensure_dir, write_manifest
from orchestrator.jobs import JobState
from orchestrator.ledger import Batch, Ledger, Move
from orchestrator.manifest import load_manifest

S = JobState
WALK = (S.SUBMITTING, S.SUBMITTED, S.COMPLETED, S.DOWNLOADING, S.DONE)


@dataclass(frozen=True)
class LedgerFigures:
    transition_per_s: float
    apply_moves_per_s: float
    transitions: int
    moves: int


async def _planned(ledger: Ledger, folder: Path, jobs: int) -> list[str]:
    """Sync a generated manifest into ``ledger``; returns the job keys."""
    manifest = load_manifest(write_manifest(folder, jobs, "ledgerbench"))
    batch = Batch(manifest.batch, str(manifest.path), manifest.sha256, str(folder), None)
    await ledger.save_batch(batch)
    await ledger.sync_plan(manifest.batch, manifest.specs, {})
    return [spec.key for spec in manifest.specs]


async def _walk_one_by_one(ledger: Ledger, keys: list[str]) -> float:
    """Each key through WALK with ``transition``; returns elapsed seconds."""
    started = time.perf_counter()
    for key in keys:
        previous = S.PENDING
        for state in WALK:
            await ledger.transition(key, state, expect=previous, cause="bench")
            previous = state
    return time.perf_counter() - started


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
    folder: Path, single: int = 600, batched: int = 2000, batch: int = 100
) -> LedgerFigures:
    """Run both measurements on a fresh ledger in ``folder``."""
    async with Ledger.open(ensure_dir(folder) / "bench.db") as ledger:
        keys = await _planned(ledger, folder, single + batched)
        one_s = await _walk_one_by_one(ledger, keys[:single])
        many_s = await _walk_in_batches(ledger, keys[single:], batch)
    return LedgerFigures(
        transition_per_s=single * len(WALK) / one_s,
        apply_moves_per_s=batched * len(WALK) / many_s,
        transitions=single * len(WALK),
        moves=batched * len(WALK),
    )
