"""What each CLI command does, without click: load, call the library, return text and exit codes.

``cli`` parses arguments and prints; this module does the work, so the commands can be called
from Python (and tested) without a terminal. Text for people is plain aligned columns; anything a
program reads has a JSON form whose shape is documented in the README.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator import costs, errors, reports
from orchestrator.client import KreaClient
from orchestrator.clock import parse_utc
from orchestrator.config import Settings
from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger, LedgerLock, Move
from orchestrator.manifest import load_manifest
from orchestrator.pipeline import Reporter
from orchestrator.progress import JsonLog, LineLog, LivePanel, Quiet
from orchestrator.runner import RunSummary
from orchestrator.runner import run as run_batch

S = JobState
DEMO_SIMULATOR = {"concurrency": 4, "backlog": 12, "seed": 7}


async def run(
    manifest_path: str, settings: Settings, *, simulate: bool, dry_run: bool, progress: str
) -> int:
    """`orchestrator run`: returns the exit code."""
    manifest = load_manifest(manifest_path)
    if dry_run:
        text, fits = estimate(manifest_path, _usd(settings.budget_micro), "table")
        print(text)
        return errors.EXIT_STOPPED if fits is False else errors.EXIT_OK
    async with AsyncExitStack() as stack:
        if simulate:
            settings = await _start_simulator(stack, settings)
        reporter = _reporter(progress, settings.budget_micro or manifest.budget_micro)
        if isinstance(reporter, LivePanel):
            stack.enter_context(reporter)
        summary = await run_batch(manifest, settings, reporter)
    print(await _summary_text(summary, settings))
    return summary.exit_code


async def _start_simulator(stack: AsyncExitStack, settings: Settings) -> Settings:
    from orchestrator.simulator import running_simulator

    sim = await stack.enter_async_context(
        running_simulator(time_scale=settings.time_scale, **DEMO_SIMULATOR)
    )
    print(
        f"Using the built-in Krea simulator at {sim.url} ({settings.time_scale:g}x speed, no cost)"
    )
    return settings.with_(api_base=sim.url, api_key="simulated-account")


def _reporter(progress: str, budget_micro: int | None) -> Reporter:
    if progress == "auto":
        progress = "live" if sys.stderr.isatty() else "plain"
    if progress == "live":
        return LivePanel(budget_micro=budget_micro)
    if progress == "json":
        return JsonLog()
    return Quiet() if progress == "quiet" else LineLog()


async def _summary_text(summary: RunSummary, settings: Settings) -> str:
    done = summary.counts.get(S.DONE, 0)
    lines = [f"{done} of {summary.planned} jobs have verified MP4s under {summary.out_dir}/"]
    others = {s: n for s, n in summary.counts.items() if s is not S.DONE and n}
    if others:
        lines.append("not done: " + ", ".join(f"{n} {s}" for s, n in sorted(others.items())))
    if summary.held_back:
        lines.append(
            f"held back by the budget: {summary.held_back} jobs ({_money(summary.held_back_micro)})"
        )
    if summary.stopped == "funds":
        lines.append(
            "Krea answered 402: top up the API balance at https://krea.ai/app/api, then rerun"
        )
    async with Ledger.open(settings.ledger_path, readonly=True) as ledger:
        lines.append(await reports.batch_summary(ledger, summary.batch))
    return "\n".join(lines)


def validate(manifest_path: str) -> str:
    """`orchestrator validate`: a one-paragraph verdict, or ManifestErrors."""
    manifest = load_manifest(manifest_path)
    total = costs.estimate(manifest)
    models = ", ".join(sorted(total.by_model))
    return (
        f"{manifest_path}: OK: batch {manifest.batch!r}, {total.jobs_count} jobs ({models}), "
        f"estimated {_money(total.total_micro)}"
    )


def estimate(manifest_path: str, budget_usd: float | None, fmt: str) -> tuple[str, bool | None]:
    """`orchestrator estimate`: the text and whether it fits the budget (None without one)."""
    manifest = load_manifest(manifest_path)
    budget = None if budget_usd is None else costs.micro_from_usd(budget_usd)
    result = costs.estimate(manifest, budget)
    if fmt == "json":
        return json.dumps(costs.estimate_json(result), indent=2), result.fits_budget
    rows = [(model, str(c.jobs), _money(c.micro)) for model, c in result.by_model.items()]
    rows.append(("total", str(result.jobs_count), _money(result.total_micro)))
    text = _table(("model", "jobs", "usd"), rows)
    if result.budget_micro is not None:
        verdict = "fits" if result.fits_budget else "EXCEEDS"
        text += f"\nbudget {_money(result.budget_micro)}: the estimate {verdict} it"
    return text, result.fits_budget


async def status(ledger_path: Path, batch: str | None, fmt: str) -> str:
    """`orchestrator status`: counts per batch and state, oldest job in flight."""
    async with Ledger.open(ledger_path, readonly=True) as ledger:
        names = [batch] if batch else await ledger.batch_names()
        if batch and await ledger.batch(batch) is None:
            raise errors.InputError(f"no batch {batch!r} in {ledger_path}")
        data = [await _batch_status(ledger, name) for name in names]
    if fmt == "json":
        return json.dumps(data, indent=2)
    states = [s.value for s in JobState if s is not S.ORPHAN]
    rows = [
        (d["batch"], *(str(d["states"].get(s, 0)) for s in states), d["oldest_in_flight"] or "-")
        for d in data
    ]
    return (
        _table(("batch", *states, "oldest in flight"), rows)
        if rows
        else "the ledger has no batches yet"
    )


async def _batch_status(ledger: Ledger, name: str) -> dict[str, Any]:
    counts = await ledger.state_counts(name, planned_only=True)
    oldest = await ledger.oldest_in_flight(name)
    age = None
    if oldest:
        seconds = (datetime.now(UTC) - parse_utc(oldest)).total_seconds()
        age = f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return {
        "batch": name,
        "states": {s.value: n for s, n in counts.items()},
        "oldest_in_flight": age,
    }


async def report(ledger_path: Path, batch: str | None, fmt: str) -> str:
    """`orchestrator report` (see ``reports``)."""
    async with Ledger.open(ledger_path, readonly=True) as ledger:
        return await reports.render(ledger, batch, fmt)


async def export(ledger_path: Path, batch: str | None, events: bool, fmt: str) -> str:
    """`orchestrator export`: every job (or event) row, as CSV or JSON."""
    async with Ledger.open(ledger_path, readonly=True) as ledger:
        return await reports.export(ledger, batch, events=events, fmt=fmt)


async def cancel(settings: Settings, batch: str) -> str:
    """`orchestrator cancel`: DELETE every job of ``batch`` in flight, and record the outcome."""
    lock = LedgerLock(settings.ledger_path)
    lock.acquire()  # a run in progress would keep sending: stop it first
    try:
        async with (
            Ledger.open(settings.ledger_path) as ledger,
            KreaClient.connect(settings.api_base, settings.api_key) as client,
        ):
            rows = await ledger.jobs(batch=batch, states=[S.SUBMITTED])
            outcomes = [
                await _cancel_one(ledger, client, row.key, row.remote_id or "") for row in rows
            ]
    finally:
        lock.release()
    cancelled = outcomes.count("cancelled")
    return f"cancelled {cancelled} of {len(rows)} jobs in flight" + (
        f"; {len(rows) - cancelled} could no longer be cancelled (see `orchestrator status`)"
        if cancelled < len(rows)
        else ""
    )


async def _cancel_one(ledger: Ledger, client: KreaClient, key: str, remote_id: str) -> str:
    try:
        remote = await client.cancel_job(remote_id)
    except errors.ApiError:
        remote = None
    if remote is None or remote.status != "cancelled":
        remote = await client.get_job(remote_id)
    to = {"cancelled": S.CANCELLED, "completed": S.COMPLETED, "failed": S.FAILED}.get(remote.status)
    if to is not None:
        fields: dict[str, Any] = {"remote_status": remote.status}
        if to is S.COMPLETED:
            fields |= {"result_url": remote.urls[0] if remote.urls else None}
        await ledger.apply([Move(key, S.SUBMITTED, to, "orchestrator cancel", fields)])
    return remote.status


def _money(micro: int | None) -> str:
    return "-" if micro is None else f"${micro / 1_000_000:,.2f}"


def _usd(micro: int | None) -> float | None:
    return None if micro is None else micro / 1_000_000


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
