"""Issue 4's acceptance test: the report's billed total equals, to the cent, what Krea charged.

Each test runs a real batch against the simulator with failures, cancellations and ambiguous
submissions (and, in one, a budget that stops it part way), then compares the report with the
simulator's own bill: the total, every billed job and its price, the free attempts, and the bill
rebuilt from the events table alone.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestrator import reports
from orchestrator.accounting import Bucket, EventRow, JobRow, billed_from_events, bucket
from orchestrator.config import Settings
from orchestrator.ledger import Ledger
from orchestrator.manifest import load_manifest
from orchestrator.runner import RunSummary, run
from orchestrator.simulator import RunningSimulator

TOKEN = "sk-test-costs-match-bill"
SCALE = 1000.0  # API seconds per real second, the same on both sides
FAULTY = {
    "time_scale": SCALE,
    "concurrency": 2,
    "backlog": 2,
    "moderation_rate": 0.1,
    "provider_error_rate": 0.1,
    "system_cancel_rate": 0.15,
    "fault_ambiguous_rate": 0.25,
}
CENT = Decimal("0.01")


def manifest_text(budget_usd: float | None) -> str:
    """14 jobs over two models; every third one is a short Grok clip."""
    jobs = []
    for i in range(14):
        jobs.append(f"  - id: shot{i}\n    prompt: shot number {i}, slow dolly\n")
        if i % 3 == 0:
            jobs.append("    model: xai/grok-video\n    duration: 2\n    resolution: 480p\n")
    budget = "" if budget_usd is None else f"budget_usd: {budget_usd}\n"
    head = f"batch: bill\n{budget}defaults:\n  model: kling/kling-2.5\n  duration: 5\n"
    return head + "jobs:\n" + "".join(jobs)


@dataclass
class Reported:
    """What the ledger says after a run, through the report's own entry points."""

    summary: RunSummary
    document: dict[str, Any]
    rows: list[dict[str, Any]]
    events: list[EventRow]
    texts: list[str]  #: every rendering and export, for the key check


async def run_and_report(
    sim: RunningSimulator, tmp_path: Path, text: str, **changes: Any
) -> Reported:
    path = tmp_path / "jobs.yaml"
    path.write_text(text)
    settings = Settings(
        api_base=sim.url,
        api_key=TOKEN,
        ledger_path=tmp_path / "ledger.db",
        out_dir=tmp_path / "out",
        time_scale=SCALE,
        poll_min_s=0.5,
        seed=11,
    ).with_(**changes)
    summary = await run(load_manifest(path), settings)
    async with Ledger.open(settings.ledger_path, readonly=True) as ledger:
        texts = [await reports.render(ledger, "bill", fmt) for fmt in reports.FORMATS]
        texts += [await reports.export(ledger, "bill", events=e, fmt="json") for e in (0, 1)]
        texts += [await reports.export(ledger, None, events=e, fmt="csv") for e in (0, 1)]
        texts.append(await reports.batch_summary(ledger, "bill"))
        events = [EventRow.of(row) for row in await ledger.export_events("bill")]  # all of it
    document, rows = json.loads(texts[2]), json.loads(texts[4])
    return Reported(summary, document, rows, events, texts)


def assert_matches_the_bill(sim: RunningSimulator, reported: Reported) -> None:
    """Total, per job and per cent: the report says exactly what the simulator charged."""
    totals, charged = reported.document["totals"], sim.stats()["billed_micro"]
    assert totals["billed_micro"] == charged == reported.summary.billed_micro
    in_cents = (Decimal(charged) / 10**6).quantize(CENT)
    assert Decimal(str(totals["billed_usd"])).quantize(CENT) == in_cents
    billed = {
        r["remote_id"]: r["price_micro"]
        for r in reported.rows
        if bucket(JobRow.of(r)) is Bucket.BILLED
    }
    sim_billed = {j["job_id"]: j["charged_micro"] for j in sim.jobs() if j["charged_micro"]}
    assert billed == sim_billed
    assert billed_from_events(reported.events) == charged
    assert totals["in_flight_jobs"] == totals["in_flight_micro"] == 0  # the run finished
    csv_total = next(csv.DictReader(io.StringIO(reported.texts[1])))
    assert int(csv_total["billed_micro"]) == charged


def assert_failures_are_free(sim: RunningSimulator, reported: Reported) -> None:
    """Every remote job Krea failed or cancelled is a free attempt (or a free orphan), charged 0."""
    unbilled = [j for j in sim.jobs() if j["status"] in ("failed", "cancelled")]
    assert unbilled
    assert all(j["charged_micro"] == 0 for j in unbilled)
    orphans_free = [o for o in reported.document["orphans"] if not (o["billed"] or o["in_flight"])]
    assert reported.document["totals"]["free_attempts"] + len(orphans_free) == len(unbilled)
    for group in reported.document["by_status"]:
        if group["state"] in ("failed", "cancelled", "rejected", "pending"):
            assert group["billed_micro"] == 0
            assert group["free_jobs"] == group["jobs"]


def assert_no_key_anywhere(reported: Reported) -> None:
    assert not [text for text in reported.texts if TOKEN in text or "sk-test" in text]


async def test_a_budget_stopped_run_reports_what_was_charged(simulator, tmp_path: Path) -> None:
    """Failures, cancellations, ambiguous POSTs and a budget cap: billed == the simulator's bill."""
    sim = await simulator(**FAULTY, seed=5)
    reported = await run_and_report(sim, tmp_path, manifest_text(budget_usd=1.5))
    stats = sim.stats()
    assert stats["faults"].get("ambiguous", 0) >= 1
    assert {"failed", "cancelled"} <= set(stats["job_statuses"])
    assert_matches_the_bill(sim, reported)
    assert_failures_are_free(sim, reported)
    summary = reported.summary
    assert summary.stopped == "budget"
    assert summary.held_back >= 1
    held = [r for r in reported.rows if r["state"] == "pending"]
    assert len(held) == summary.held_back
    assert sum(r["price_micro"] for r in held) == summary.held_back_micro
    assert reported.document["totals"]["billed_micro"] <= 1_500_000
    by_batch = reported.document["by_batch"][0]
    assert by_batch["budget_micro"] == 1_500_000
    assert by_batch["billed_micro"] == reported.document["totals"]["billed_micro"]
    assert_no_key_anywhere(reported)


async def test_a_retried_run_counts_earlier_attempts_as_free(simulator, tmp_path: Path) -> None:
    """--retry-failed: each failed attempt is free, the retried job is billed once, bills agree."""
    sim = await simulator(**FAULTY, seed=9)
    reported = await run_and_report(sim, tmp_path, manifest_text(None), retry_failed=1)
    stats = sim.stats()
    assert stats["faults"].get("ambiguous", 0) >= 1
    assert {"failed", "cancelled"} <= set(stats["job_statuses"])
    assert_matches_the_bill(sim, reported)
    assert_failures_are_free(sim, reported)
    totals = reported.document["totals"]
    still_failed = [r for r in reported.rows if r["state"] in ("failed", "cancelled")]
    assert totals["free_attempts"] > len(still_failed)  # the retried jobs' earlier attempts
    assert reported.summary.stopped is None
    assert reported.summary.held_back == 0
    billed_orphans = sum(o["billed"] for o in reported.document["orphans"])
    assert totals["clips"] == totals["billed_jobs"] - billed_orphans
    assert f"${Decimal(totals['billed_micro']) / 10**6:.2f}" in reported.texts[-1]
    assert_no_key_anywhere(reported)
