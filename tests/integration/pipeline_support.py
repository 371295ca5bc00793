"""Pipeline test setup: a manifest on disk, a run against a simulator, the ground truth."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import Settings
from orchestrator.jobs import JobRecord, JobState
from orchestrator.ledger import Ledger
from orchestrator.manifest.manifest import load_manifest
from orchestrator.runner import RunSummary, run
from orchestrator.simulator import RunningSimulator

TOKEN = "sk-test-pipeline"
SCALE = 1000.0  # API seconds per real second: a 90 s Kling job takes 90 ms


def manifest_text(
    count: int, *, batch: str = "b", model: str = "kling/kling-2.5", extra: str = ""
) -> str:
    jobs = "\n".join(f"  - id: j{i}\n    prompt: shot number {i}" for i in range(count))
    head = f"batch: {batch}\ndefaults:\n  model: {model}\n  duration: 5\n{extra}"
    return f"{head}jobs:\n{jobs}\n"


@dataclass
class Outcome:
    summary: RunSummary
    ledger_path: Path
    out_dir: Path


def settings_for(sim: RunningSimulator, tmp_path: Path, **changes: Any) -> Settings:
    base = Settings(
        api_base=sim.url,
        api_key=TOKEN,
        ledger_path=tmp_path / "ledger.db",
        out_dir=tmp_path / "out",
        time_scale=SCALE,
        poll_min_s=2.0,
        poll_max_s=30.0,
        seed=1,
    )
    return base.with_(**changes)


async def run_manifest(sim: RunningSimulator, tmp_path: Path, text: str, **changes: Any) -> Outcome:
    path = tmp_path / "jobs.yaml"
    path.write_text(text)
    settings = settings_for(sim, tmp_path, **changes)
    summary = await run(load_manifest(path), settings)
    return Outcome(summary, settings.ledger_path, settings.out_dir)


async def ledger_rows(path: Path, batch: str = "b") -> list[JobRecord]:
    async with Ledger.open(path, readonly=True) as ledger:
        return await ledger.jobs(batch=batch)


def charged(sim: RunningSimulator) -> list[dict[str, Any]]:
    """Jobs the simulator billed."""
    return [job for job in sim.jobs() if job["charged_micro"]]


async def assert_exactly_once(sim: RunningSimulator, outcome: Outcome, entries: int) -> None:
    """Every entry done, billed exactly once, file on disk equal to what the simulator served."""
    rows = [r for r in await ledger_rows(outcome.ledger_path) if r.state is not JobState.ORPHAN]
    assert len(rows) == entries
    assert all(r.state is JobState.DONE for r in rows), {r.entry_id: r.state for r in rows}
    billed = {job["job_id"]: job for job in charged(sim)}
    assert sorted(billed) == sorted(r.remote_id for r in rows), (
        "billed jobs differ from the ledger's"
    )
    for row in rows:
        data = (outcome.out_dir / (row.output_path or "")).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        assert len(data) == row.bytes
    assert sim.stats()["billed_micro"] == outcome.summary.billed_micro


async def ledger_events(path: Path, key: str) -> list[tuple[str | None, str, str]]:
    """(from, to, cause) of every transition of one job, oldest first."""
    async with Ledger.open(path, readonly=True) as ledger:
        return [(e.from_state, e.to_state, e.cause) for e in await ledger.events(key=key)]
