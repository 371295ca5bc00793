"""Issue 4's acceptance test: the report's billed total equals, to the cent, what Krea charged.

Each test runs a real batch against the simulator, then compares the report with the simulator's
own bill: the total, every billed job and its price, the free attempts, and the bill rebuilt from
the events table alone. The batches meet failures, system cancellations and ambiguous submissions,
a budget that stops them part way, Krea's 402, and jobs the user cancels with
`orchestrator cancel` while they are in flight. Jobs not sent yet are reported apart, at the
price they will cost once sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestrator.cli import cancel_command
from orchestrator.config import Settings
from orchestrator.ledger import Ledger
from orchestrator.manifest.manifest import load_manifest
from orchestrator.money import reports
from orchestrator.money.accounting import Bucket, bucket
from orchestrator.money.rows import EventRow, JobRow
from orchestrator.money.spend_history import billed_from_events
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


def manifest_text(budget_usd: float | None, count: int = 14) -> str:
    """``count`` jobs over two models; every third one is a short Grok clip."""
    jobs = []
    for i in range(count):
        jobs.append(f"  - id: shot{i}\n    prompt: shot number {i}, slow dolly\n")
        if i % 3 == 0:
            jobs.append("    model: xai/grok-video\n    duration: 2\n    resolution: 480p\n")
    budget = "" if budget_usd is None else f"budget_usd: {budget_usd}\n"
    head = f"batch: bill\n{budget}defaults:\n  model: kling/kling-2.5\n  duration: 5\n"
    return head + "jobs:\n" + "".join(jobs)


@dataclass
class Reported:
    """What the ledger says after a run, through the report's own entry points."""

    summary: RunSummary | None  #: None when read between runs
    document: dict[str, Any]
    rows: list[dict[str, Any]]
    events: list[EventRow]
    texts: list[str]  #: every rendering and export, for the key check


#: Two Grok clips and four Kling clips; a $1.25 cap lets four be in flight at once.
SIX_JOBS = manifest_text(None, count=6)


def settings_for(sim: RunningSimulator, tmp_path: Path, **changes: Any) -> Settings:
    return Settings(
        api_base=sim.url,
        api_key=TOKEN,
        ledger_path=tmp_path / "ledger.db",
        out_dir=tmp_path / "out",
        time_scale=SCALE,
        poll_min_s=0.5,
        seed=11,
    ).with_(**changes)


def write_manifest(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jobs.yaml"
    path.write_text(text)
    return path


async def run_and_report(
    sim: RunningSimulator, tmp_path: Path, text: str, **changes: Any
) -> Reported:
    settings = settings_for(sim, tmp_path, **changes)
    summary = await run(load_manifest(write_manifest(tmp_path, text)), settings)
    return await read_reports(settings, summary)


async def read_reports(settings: Settings, summary: RunSummary | None) -> Reported:
    """Every rendering and export of batch ``bill``, through the report's own entry points."""
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
    assert totals["billed_micro"] == charged
    if reported.summary is not None:
        assert reported.summary.billed_micro == charged
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
        if group["state"] in ("failed", "cancelled", "rejected"):
            assert group["billed_micro"] == group["not_sent_jobs"] == 0
            assert group["free_jobs"] == group["jobs"]
        if group["state"] == "pending":  # never sent: free so far, and priced for later
            assert group["billed_micro"] == group["free_jobs"] == 0
            assert group["not_sent_jobs"] == group["jobs"]


def assert_unsent_are_priced(reported: Reported) -> None:
    """Pending jobs (not sent, held back, refused by 402) are not sent, at their own price."""
    pending = [r for r in reported.rows if r["state"] == "pending"]
    totals = reported.document["totals"]
    assert totals["not_sent_jobs"] == len(pending)
    assert totals["not_sent_micro"] == sum(r["price_micro"] for r in pending)
    csv_total = next(csv.DictReader(io.StringIO(reported.texts[1])))
    assert int(csv_total["not_sent_micro"]) == totals["not_sent_micro"]


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
    assert_unsent_are_priced(reported)
    totals = reported.document["totals"]
    assert (totals["not_sent_jobs"], totals["not_sent_micro"]) == (
        summary.held_back,
        summary.held_back_micro,
    )
    assert "held back by the budget" in reported.texts[0]  # the table names the bucket
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


async def test_a_run_krea_stops_with_402_reports_the_bill_and_the_rest(
    simulator, tmp_path: Path
) -> None:
    """402 part way: billed == the bill; the jobs never sent are priced, not called free."""
    sim = await simulator(time_scale=SCALE, concurrency=2, backlog=2, balance_usd="1.50", seed=4)
    reported = await run_and_report(sim, tmp_path, manifest_text(None, count=8))
    assert reported.summary.stopped == "funds"
    assert_matches_the_bill(sim, reported)
    assert_unsent_are_priced(reported)
    totals = reported.document["totals"]
    assert totals["not_sent_jobs"] >= 1
    assert totals["free_jobs"] == 0  # nothing failed: every job is billed or still to send
    every_price = sum(r["price_micro"] for r in reported.rows)
    assert totals["billed_micro"] + totals["not_sent_micro"] == every_price
    assert_no_key_anywhere(reported)


async def ledger_rows_when(
    sim: RunningSimulator, settings: Settings, ready: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The batch's rows once ``ready(rows)``: re-read after each answered request, no sleeping."""
    answered = 0  # the run writes its ledger before its first request
    while True:
        await sim.wait_until(lambda stats, seen=answered: _requests(stats) > seen)
        answered = _requests(sim.stats())
        async with Ledger.open(settings.ledger_path, readonly=True) as ledger:
            rows = await ledger.export_jobs("bill")
        if ready(rows):
            return rows


def _requests(stats: dict[str, Any]) -> int:
    return sum(stats["requests"].values())


def counts(*wanted: tuple[str, int]) -> Callable[[list[dict[str, Any]]], bool]:
    """A ``ledger_rows_when`` predicate: exactly this many rows in each named state."""
    return lambda rows: all(sum(r["state"] == s for r in rows) == n for s, n in wanted)


async def stop_when(
    sim: RunningSimulator,
    settings: Settings,
    manifest: Path,
    ready: Callable[[list[dict[str, Any]]], bool],
) -> list[dict[str, Any]]:
    """Run ``manifest`` until its rows are ``ready``, then stop the run as Ctrl-C does."""
    task = asyncio.create_task(run(load_manifest(manifest), settings))
    try:
        return await ledger_rows_when(sim, settings, ready)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def cancel_as_the_cli(sim: RunningSimulator, settings: Settings) -> str:
    """`orchestrator cancel --batch bill`: the CLI builds exactly these Settings."""
    as_the_cli = Settings(api_base=sim.url, api_key=TOKEN, ledger_path=settings.ledger_path)
    return await cancel_command.cancel(as_the_cli, "bill")


async def test_jobs_the_user_cancels_in_flight_are_free_and_the_bill_still_matches(
    simulator, tmp_path: Path
) -> None:
    """`orchestrator cancel --batch` mid-run, then the run resumed: billed == the bill, to the µ$.

    The simulator's clock is manual. Four jobs are sent (the budget holds back two); two
    complete and are downloaded; the run is stopped as Ctrl-C would while the other two are
    processing, and the user cancels them. The run resumed (--resume-cancelled) sends the two
    held back: the cancellations gave their room in the budget back.
    """
    sim = await simulator(time_scale=0, concurrency=2, backlog=8, duration_s=100, seed=3)
    settings = settings_for(sim, tmp_path, budget_micro=1_250_000)
    path = write_manifest(tmp_path, SIX_JOBS)
    ready = counts(("done", 2), ("submitted", 2))
    sent = asyncio.ensure_future(stop_when(sim, settings, path, ready))
    await sim.wait_until(lambda stats: stats["jobs_created"] == 4)
    sim.advance(150)  # two complete at 100 s; the next two start then and are processing
    rows = await sent
    assert [r["state"] for r in rows].count("pending") == 2  # held back by the budget

    said = await cancel_as_the_cli(sim, settings)
    assert said.startswith("cancelled 2 of 2 jobs in flight")
    between = await read_reports(settings, None)
    assert_matches_the_bill(sim, between)
    assert_unsent_are_priced(between)
    totals = between.document["totals"]
    assert (totals["billed_jobs"], totals["free_jobs"], totals["not_sent_jobs"]) == (2, 2, 2)

    sim.configure(time_scale=SCALE)
    reported = await run_and_report(
        sim, tmp_path, SIX_JOBS, budget_micro=1_250_000, resume_cancelled=True
    )
    assert_matches_the_bill(sim, reported)
    assert_unsent_are_priced(reported)
    cancelled = {r["remote_id"] for r in reported.rows if r["state"] == "cancelled"}
    assert len(cancelled) == 2
    by_sim = {job["job_id"]: job for job in sim.jobs()}
    assert all(by_sim[i]["status"] == "cancelled" and not by_sim[i]["charged_micro"]
               for i in cancelled)  # fmt: skip
    causes = {(e["remote_id"], e["cause"]) for e in json.loads(reported.texts[5])
              if e["to_state"] == "cancelled"}  # fmt: skip
    assert causes == {(i, "orchestrator cancel") for i in cancelled}
    totals = reported.document["totals"]
    assert (totals["billed_jobs"], totals["free_jobs"], totals["free_attempts"]) == (4, 2, 2)
    assert totals["not_sent_jobs"] == totals["in_flight_jobs"] == 0
    (group,) = [g for g in reported.document["by_status"] if g["state"] == "cancelled"]
    assert (group["jobs"], group["free_jobs"], group["billed_micro"]) == (2, 2, 0)
    assert reported.summary is not None
    assert reported.summary.stopped is None
    assert_no_key_anywhere(reported)


async def test_a_job_krea_finished_before_the_cancel_reached_it_is_billed(
    simulator, tmp_path: Path
) -> None:
    """Cancel races completion: Krea answers 409 for finished jobs; they are billed, not free.

    The run is stopped with four jobs sent and none seen finished; two then complete at Krea
    before `orchestrator cancel` reaches them, and two are still processing.
    """
    sim = await simulator(time_scale=0, concurrency=2, backlog=8, duration_s=100, seed=3)
    settings = settings_for(sim, tmp_path, budget_micro=1_250_000)
    await stop_when(sim, settings, write_manifest(tmp_path, SIX_JOBS), counts(("submitted", 4)))
    sim.advance(150)  # the ledger still says submitted; Krea has completed two of them

    said = await cancel_as_the_cli(sim, settings)
    assert said.startswith("cancelled 2 of 4 jobs in flight")
    between = await read_reports(settings, None)
    assert_matches_the_bill(sim, between)
    totals = between.document["totals"]
    assert (totals["billed_jobs"], totals["free_jobs"], totals["not_sent_jobs"]) == (2, 2, 2)

    sim.configure(time_scale=SCALE)
    reported = await run_and_report(
        sim, tmp_path, SIX_JOBS, budget_micro=1_250_000, resume_cancelled=True
    )
    assert_matches_the_bill(sim, reported)
    totals = reported.document["totals"]
    assert (totals["billed_jobs"], totals["free_jobs"], totals["clips"]) == (4, 2, 4)
