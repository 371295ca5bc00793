"""`orchestrator run` and `retry`: one or several manifests to verified files, with progress.

Several manifests are several batches of one run (``runner.run_many``): each gets its own
reporter (lines and JSON events then name their batch; the live panel shows one batch, so
several print plain lines instead), its own summary, and the run exits with the worst code.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path

from orchestrator import errors
from orchestrator.cli.commands import estimate_of
from orchestrator.cli.notes import shown_on
from orchestrator.cli.progress import Ending, JsonLog, LineLog, LivePanel, Quiet
from orchestrator.config import DEFAULT_LEDGER, Settings
from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from orchestrator.manifest.manifest import load_manifest
from orchestrator.money import reports
from orchestrator.money.accounting import Figures
from orchestrator.money.report_sections import dollars
from orchestrator.runner import RunSummary, run_many
from orchestrator.selection import Selection
from orchestrator.startup import prepare

S = JobState
DEMO_SIMULATOR = {"concurrency": 4, "backlog": 12, "seed": 7}
#: Why submitting stopped early, for --quiet's one line (exit 3 either way).
STOPPED_BY = {
    "budget": ", stopped by the budget cap",
    "funds": ", stopped by Krea's 402 (top up the API balance)",
}
#: Exit codes from best to worst: a run of several batches exits with its worst batch's.
SEVERITY = (errors.EXIT_OK, errors.EXIT_JOBS_FAILED, errors.EXIT_STOPPED)


async def run(
    manifest_paths: Sequence[str],
    settings: Settings,
    *,
    simulate: bool,
    dry_run: bool,
    progress: str,
) -> int:
    """`orchestrator run`: returns the exit code.

    Each reporter is given an ending however the run ends (an error, Ctrl-C), so a CI step
    reading ``--json`` always finds an ``end`` event last.
    """
    if dry_run:
        return _dry_run(manifest_paths, settings)
    reporters = _reporters(progress, manifest_paths)
    try:
        with shown_on(reporters):  # the stages' log records, on these displays (notes)
            summaries = await _run_batches(manifest_paths, settings, simulate, reporters)
    except errors.OrchestratorError as exc:
        for reporter in reporters:
            reporter.finish(Ending(exc.exit_code, fields={"error": exc.message}))
        raise
    except asyncio.CancelledError:
        for reporter in reporters:
            reporter.finish(Ending(errors.EXIT_INTERRUPTED, fields={"error": "interrupted"}))
        raise
    for reporter, summary in zip(reporters, summaries, strict=True):
        reporter.finish(await _ending(summary, settings))
    return worst(summary.exit_code for summary in summaries)


def worst(codes: Iterable[int]) -> int:
    """The worst of several batches' exit codes (see SEVERITY)."""
    return max(codes, key=SEVERITY.index, default=errors.EXIT_OK)


def _dry_run(manifest_paths: Sequence[str], settings: Settings) -> int:
    """The estimate of each manifest (of the jobs ``--only``/``--limit`` select, if given)."""
    budget = None if settings.budget_micro is None else settings.budget_micro / 1_000_000
    manifests = [load_manifest(path) for path in manifest_paths]
    trial = Selection(settings.only, settings.limit)
    trial.check({m.batch: [spec.entry_id for spec in m.specs] for m in manifests})
    codes = []
    for path, manifest in zip(manifest_paths, manifests, strict=True):
        text, fits = estimate_of(manifest, budget, "table", trial)
        print(text if len(manifest_paths) == 1 else f"{path}:\n{text}\n")
        codes.append(errors.EXIT_STOPPED if fits is False else errors.EXIT_OK)
    return worst(codes)


async def _run_batches(
    manifest_paths: Sequence[str], settings: Settings, simulate: bool, reporters: list[LineLog]
) -> list[RunSummary]:
    plans = [await prepare(path, settings) for path in manifest_paths]  # loaded only if needed
    for reporter, plan in zip(reporters, plans, strict=True):
        if reporter.batch is not None:
            reporter.batch = plan.header.batch  # its lines said the file's name until now
    async with AsyncExitStack() as stack:
        if simulate:
            settings = await _start_simulator(stack, settings, reporters[0])
        panel = reporters[0]
        if isinstance(panel, LivePanel):
            panel.budget_micro = settings.budget_micro or plans[0].budget_micro
            stack.enter_context(panel)
        return await run_many(plans, settings, reporters)


async def _start_simulator(
    stack: AsyncExitStack, settings: Settings, reporter: LineLog
) -> Settings:
    from orchestrator.simulator import running_simulator

    sim = await stack.enter_async_context(
        running_simulator(time_scale=settings.time_scale, **DEMO_SIMULATOR)
    )
    reporter.headline(
        f"Using the built-in Krea simulator at {sim.url} ({settings.time_scale:g}x speed, no cost)"
    )
    return settings.with_(api_base=sim.url, api_key="simulated-account")


def _reporters(progress: str, manifest_paths: Sequence[str]) -> list[LineLog]:
    if progress == "auto":
        progress = "live" if sys.stderr.isatty() else "plain"
    if len(manifest_paths) == 1:
        if progress == "live":
            return [LivePanel()]
        return [_line_reporter(progress, None)]
    batches = [_batch_name(path) for path in manifest_paths]
    kind = "plain" if progress == "live" else progress  # one panel cannot show several batches
    return [_line_reporter(kind, batch) for batch in batches]


def _line_reporter(progress: str, batch: str | None) -> LineLog:
    if progress == "json":
        return JsonLog(batch=batch)
    return Quiet(batch=batch) if progress == "quiet" else LineLog(batch=batch)


def _batch_name(path: str) -> str:
    """What to call a manifest's lines before it is loaded: its file name without suffix."""
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] or name


async def _ending(summary: RunSummary, settings: Settings) -> Ending:
    """The summary as lines for people, one line for --quiet, and the ``end`` event's fields."""
    async with Ledger.open(settings.ledger_path, readonly=True) as ledger:
        figures = await reports.figures(ledger, summary.batch)
        blocked = len(await ledger.blocked(summary.batch))
    done = summary.counts.get(S.DONE, 0)
    counts = sorted(summary.counts.items())
    others = ", ".join(f"{n} {s}" for s, n in counts if s is not S.DONE and n)
    lines = [f"{done} of {summary.planned} jobs have verified files under {summary.out_dir}/"]
    lines += [f"not done: {others}"] if others else []
    if blocked:
        lines.append(
            f"blocked: {blocked} waiting jobs, as an input failed, was cancelled or rejected "
            "(see `orchestrator status`)"
        )
    if summary.not_selected and summary.cancelled_at:
        lines.append(
            f"not sent: {summary.not_selected} jobs, as `orchestrator cancel` stopped the batch "
            f"({summary.cancelled_at}); run again with --resume-cancelled to send them"
        )
    elif summary.not_selected and settings.rerolls_only:
        lines.append(
            f"not sent: {summary.not_selected} jobs, as reroll sends only new takes; "
            "`orchestrator run` sends them"
        )
    elif summary.not_selected:
        trial = Selection(settings.only, settings.limit).describe()
        lines.append(
            f"not selected: {summary.not_selected} jobs left unsent by {trial}; "
            "run without it to send them"
        )
    if summary.held_back:
        held = f"{summary.held_back} jobs ({dollars(summary.held_back_micro)})"
        more = -(-summary.held_back_micro // 10_000) / 100  # whole cents, rounded up
        lines.append(
            f"held back by the budget: {held}; a budget ${more:,.2f} higher sends them all "
            "(rerun with --budget, or raise budget_usd:)"
        )
    if summary.stopped == "funds":
        lines.append(
            "Krea answered 402: top up the API balance at https://krea.ai/app/api, then rerun"
        )
    lines.append(reports.summary_text(figures))
    lines.append(_requests_line(summary))
    lines += _where(summary, settings)
    line = (
        f"batch {summary.batch}: {done} of {summary.planned} done"
        + (f" ({others})" if others else "")
        + f", {dollars(figures.totals.billed_micro)} billed"
        + STOPPED_BY.get(summary.stopped or "", "")
        + f", exit {summary.exit_code}"
    )
    fields = _end_fields(summary, figures) | {"ledger": str(settings.ledger_path)}
    return Ending(summary.exit_code, lines, line, fields)


def _where(summary: RunSummary, settings: Settings) -> list[str]:
    """Where the results are, and the commands that read them (with this run's ``--ledger``)."""
    ledger = _shell_path(settings.ledger_path)
    flag = "" if ledger == DEFAULT_LEDGER else f" --ledger {ledger}"
    batch = f" --batch {summary.batch}"
    return [
        f"ledger {ledger} (every job, its history and cost); files under {summary.out_dir}/",
        f"review the clips in a browser (play, pick, reject): orchestrator view{flag}",
        "next:",
        f"  orchestrator status{flag}",
        f"  orchestrator report{flag}{batch}",
        f"  orchestrator export{flag}{batch} --format csv",
    ]


def _shell_path(path: Path) -> str:
    """``path`` as the user would type it here: relative to the working folder when inside it."""
    try:
        text = str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        text = str(path)
    return shlex.quote(text)


def _requests_line(summary: RunSummary) -> str:
    """What the run asked of Krea; job lists per second is what sweeping costs the account."""
    asked = summary.api_requests
    lists = asked.get("GET /jobs", 0)
    posts = asked.get("POST /generate/video", 0) + asked.get("POST /generate/image", 0)
    return (
        f"requests to Krea: {posts} POST, {lists} job lists "
        f"({_list_rate(summary):.2f}/s), {asked.get('GET /jobs/{id}', 0)} single-job reads"
        " (every batch of this run)"
    )


def _list_rate(summary: RunSummary) -> float:
    """Job lists per second of Krea's clock over the run."""
    return summary.api_requests.get("GET /jobs", 0) / max(summary.api_seconds, 1.0)


def _end_fields(summary: RunSummary, figures: Figures) -> dict[str, object]:
    """The ``end`` event (README, Commands): add keys, never rename."""
    totals = figures.totals
    return {
        "batch": summary.batch,
        "planned": summary.planned,
        "done": summary.counts.get(S.DONE, 0),
        "counts": {str(s): n for s, n in sorted(summary.counts.items())},
        "billed_micro": totals.billed_micro,
        "billed_usd": totals.billed_micro / 1_000_000,
        "in_flight_micro": totals.in_flight_micro,
        "in_flight_usd": totals.in_flight_micro / 1_000_000,
        "held_back": summary.held_back,
        "held_back_micro": summary.held_back_micro,
        "not_selected": summary.not_selected,
        "cancelled_at": summary.cancelled_at,
        "stopped": summary.stopped,
        "out_dir": str(summary.out_dir),
        "requests": dict(sorted(summary.api_requests.items())),
        "list_calls_per_s": round(_list_rate(summary), 3),
    }
