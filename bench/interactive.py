"""The commands people type between runs, on a 1,000- and a 100,000-job ledger: wall time and RSS.

`status`, `report` (each format), `validate`, `estimate` and `export` (each format, jobs and
events) run as users run them, one process each, under GNU time (wall time, peak RSS). Each is
run ``repeats`` times and the median wall time is kept (the first run also warms
the page cache, as any second look at a ledger would). The two sizes side by side show what grows
with the ledger: ``status`` and ``report`` should not (SQLite adds up), nor should the memory of
``export`` (it writes rows as it reads them).

The ledger is what a run leaves, built the fast way: the manifest is planned and synced with the
real start-up code (``startup.sync_manifest``), then the jobs are walked through the state machine
by one UPDATE per step and group of jobs, in one transaction, so the ledger's own trigger writes
every event a run would (planned, intent, submitted, Krea's statuses, completed, downloading, done;
about seven per job). The mix, by ``seq % 100``: 85 done, 2 done after a failed attempt, 3 failed,
1 cancelled, 1 rejected, 2 in flight, 1 completed awaiting its download, 1 ambiguous and 4 pending,
over three days of billing, plus a few orphans, possible duplicates and foreign jobs. Each move
is checked against ``jobs.TRANSITIONS`` first.

The manifest is one entry per 8 jobs, as people write large batches: a prompt, ``expand`` over
two durations and ``takes: 4``, every other entry on a second model (so 4 request shapes). The
plain list the scale step validates (one entry per job, ``workload.write_manifest``) is validated
and estimated too: there the YAML itself is the work.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import workload
from bench.config import Plan
from bench.procs import orchestrator_command
from bench.scenarios import Figures
from orchestrator.config import Settings
from orchestrator.jobs import JobState, can_transition
from orchestrator.ledger import Ledger, Unattributed
from orchestrator.manifest.manifest import load_manifest
from orchestrator.startup import sync_manifest

S = JobState
#: Jobs per manifest entry: ``expand`` over 2 durations times ``takes: 4``.
PER_ENTRY = 8
#: GNU time: the peak RSS of one command, measured from outside (see ``_run_once``).
TIME = "/usr/bin/time"
HAS_TIME = Path(TIME).exists()
MODELS = (("kling/kling-2.5", "aspect_ratio: '16:9'"), ("kling/kling-1", "mode: std"))
#: (name, arguments after ``--ledger L``): the ledger readers.
LEDGER_COMMANDS = (
    ("status", ["status"]),
    ("status_json", ["status", "--format", "json"]),
    ("report", ["report"]),
    ("report_csv", ["report", "--format", "csv"]),
    ("report_json", ["report", "--format", "json"]),
    ("report_html", ["report", "--format", "html"]),
    ("export_csv", ["export"]),
    ("export_json", ["export", "--format", "json"]),
    ("export_events", ["export", "--events"]),
)


def write_manifest(folder: Path, jobs: int, batch: str) -> Path:
    """``jobs`` jobs (a multiple of ``PER_ENTRY``) as entries with ``expand`` and ``takes``."""
    path = folder / f"{batch}.yaml"
    with path.open("w") as out:
        out.write(f"batch: {batch}\ndefaults:\n  model: {MODELS[0][0]}\njobs:\n")
        for index in range(jobs // PER_ENTRY):
            model, extra = MODELS[index % 2]
            out.write(
                f"  - id: shot{index:05d}\n    model: {model}\n    {extra}\n"
                f"    prompt: scene {index}, a slow pan across the harbour at dusk\n"
                "    expand: {duration: [5, 10]}\n    takes: 4\n"
            )
    return path


# -- the ledger a run leaves -----------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One UPDATE: the jobs in ``groups`` (``seq % 100`` ranges) from ``expect`` to ``to``."""

    expect: JobState
    to: JobState
    cause: str
    groups: tuple[tuple[int, int], ...]
    sets: str = ""  #: more ``column = expr`` assignments (``t`` is the step's time expression)


_UUID = (
    "lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || "
    "substr(lower(hex(randomblob(2))), 2) || '-a' || substr(lower(hex(randomblob(2))), 2) || '-' "
    "|| lower(hex(randomblob(6)))"
)
_SENT = ((0, 95),)  # every group but the pending ones
_DONE = ((0, 84),)
_RETRIED = ((85, 86),)
_SUBMITTED = ((0, 90), (92, 94))  # sent and accepted (not rejected, not ambiguous)


def _steps() -> list[Step]:
    """The walk, in order; the retried jobs fail once, then go round again."""
    intent = "intent_at = {t}, floor = {t}, attempts = attempts + 1"
    accepted = f"remote_id = {_UUID}, remote_status = 'backlogged', remote_created_at = {{t}}, "
    accepted += "answered_at = {t}, last_error = NULL"
    completed = "remote_status = 'completed', completed_at = {t}, "
    completed += "result_url = 'https://cdn.example/' || remote_id || '.mp4?sig=bench'"
    done = "bytes = 9134 + seq % 977, sha256 = lower(hex(randomblob(32))), "
    done += "file_mtime_ns = 1796473124223842032 + seq, done_at = {t}, last_error = NULL"
    failed = "remote_status = 'failed', last_error = 'moderation: the request was flagged'"
    again = ((0, 84), (85, 86), (92, 94))
    return [
        Step(S.PENDING, S.SUBMITTING, "intent: about to POST", _SENT, intent),
        Step(S.SUBMITTING, S.REJECTED, "rejected by Krea", ((91, 91),),
             "answered_at = {t}, last_error = '422: invalid duration', detail = '422'"),
        Step(S.SUBMITTING, S.AMBIGUOUS, "POST outcome unknown", ((95, 95),),
             "answered_at = {t}, last_error = 'connection reset', detail = 'connection reset'"),
        Step(S.SUBMITTING, S.SUBMITTED, "submitted", _SUBMITTED, accepted),
        Step(S.SUBMITTED, S.SUBMITTED, "Krea: processing", _SUBMITTED,
             "remote_status = 'processing'"),
        Step(S.SUBMITTED, S.FAILED, "Krea: failed", ((85, 89),), failed),
        Step(S.SUBMITTED, S.CANCELLED, "Krea: cancelled", ((90, 90),),
             "remote_status = 'cancelled'"),
        Step(S.FAILED, S.PENDING, "retry: a new attempt", _RETRIED),
        Step(S.PENDING, S.SUBMITTING, "intent: about to POST", _RETRIED, intent),
        Step(S.SUBMITTING, S.SUBMITTED, "submitted", _RETRIED, accepted),
        Step(S.SUBMITTED, S.COMPLETED, "Krea: completed", (*_DONE, *_RETRIED, (94, 94)),
             completed),
        Step(S.COMPLETED, S.DOWNLOADING, "download started", again[:2]),
        Step(S.DOWNLOADING, S.DONE, "downloaded and verified", again[:2], done),
    ]  # fmt: skip


def _walk(ledger: Path, batch: str, jobs: int, start: datetime) -> None:
    """Every step as one UPDATE, all in one transaction; the trigger writes the events."""
    spread_s = 3 * 86_400 / jobs  # three days of billing, in manifest order
    base = start.timestamp()
    with sqlite3.connect(ledger, isolation_level=None) as db:
        db.execute("BEGIN IMMEDIATE")
        for number, step in enumerate(_steps()):
            if not can_transition(step.expect, step.to):
                raise AssertionError(f"illegal step {step}")
            at = f"{base} + seq * {spread_s} + {number * 7.5}"
            t = f"strftime('%Y-%m-%dT%H:%M:%fZ', {at}, 'unixepoch')"
            groups = " OR ".join(f"seq % 100 BETWEEN {a} AND {b}" for a, b in step.groups)
            sets = f", {step.sets.format(t=t)}" if step.sets else ""
            db.execute(
                f"UPDATE jobs SET state = ?, cause = ?, detail = NULL, updated_at = {t}{sets}, "
                f"rev = rev + 1 WHERE batch = ? AND state = ? AND ({groups})",
                (step.to.value, step.cause, batch, step.expect.value),
            )
        db.execute("COMMIT")


async def _strangers(ledger: Ledger, batch: str, model: str, start: datetime) -> None:
    """A few orphans, possible duplicates and foreign jobs, as reconciliation records them."""
    for index in range(5):
        at = (start + timedelta(hours=index)).isoformat(timespec="milliseconds")
        await ledger.add_orphan(
            batch, f"orphan-{index}", remote_status="completed" if index % 2 else "failed",
            created_at=at.replace("+00:00", "Z"), price_micro=366_700, model=model,
            cause="reconcile: no entry claims it",
        )  # fmt: skip
    rows = [
        Unattributed(f"stranger-{index}", kind, batch if kind != "foreign" else None, model,
                     366_700 if kind != "foreign" else 0, "completed",
                     (start + timedelta(minutes=index)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        for index, kind in enumerate(["possible_duplicate"] * 3 + ["foreign"] * 12)
    ]  # fmt: skip
    await ledger.add_unattributed(rows)


async def build(folder: Path, jobs: int) -> tuple[Path, Path]:
    """(manifest, ledger) of ``jobs`` jobs in the mix of the module docstring."""
    batch = f"interactive{jobs}"
    manifest_path = write_manifest(workload.ensure_dir(folder), jobs, batch)
    ledger_path = folder / "ledger.db"
    manifest = await asyncio.to_thread(load_manifest, manifest_path)
    settings = Settings(ledger_path=ledger_path, out_dir=folder / "out", account_registry=False)
    start = datetime.now(UTC) - timedelta(days=3)
    async with Ledger.open(ledger_path) as ledger:
        await sync_manifest(ledger, manifest, settings)
    await asyncio.to_thread(_walk, ledger_path, batch, jobs, start)
    async with Ledger.open(ledger_path) as ledger:
        await _strangers(ledger, batch, MODELS[0][0], start)
    return manifest_path, ledger_path


# -- measuring -------------------------------------------------------------------------------


async def _run_once(args: list[str], log_dir: Path) -> tuple[float, float, int]:
    """(wall s, peak RSS MB, exit code) of one ``orchestrator args``, output in ``log_dir``.

    The peak comes from GNU time's ``%M``, which forks the command from its own small
    process: ``ru_maxrss`` of a child forked from the bench would count the bench's own pages
    (those of the 100,000-job plan it just built) before the child's exec.
    """
    command = [*orchestrator_command(), *args]
    rss_file = log_dir / "maxrss.txt"
    timed = [TIME, "-f", "%M", "-o", str(rss_file), *command] if HAS_TIME else command
    with (log_dir / "stdout.log").open("wb") as out, (log_dir / "stderr.log").open("wb") as err:
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(*timed, stdout=out, stderr=err)
        code = await proc.wait()
    wall = time.monotonic() - started
    rss_kb = float(rss_file.read_text().split()[-1]) if rss_file.exists() else 0.0
    return wall, rss_kb / 1024, code


async def _timed(args: list[str], log_dir: Path, repeats: int) -> Figures:
    """Median wall time and the highest peak RSS of ``repeats`` runs of ``orchestrator args``."""
    runs = [await _run_once(args, workload.ensure_dir(log_dir)) for _ in range(repeats)]
    walls = [wall for wall, _, _ in runs]
    out = log_dir / "stdout.log"
    size = out.stat().st_size if out.exists() else 0
    return {"wall_s": statistics.median(walls), "walls_s": walls,
            "peak_rss_mb": max(rss for _, rss, _ in runs),
            "exit_code": max(code for _, _, code in runs), "output_bytes": size}  # fmt: skip


async def one_size(parent: Path, jobs: int, repeats: int) -> Figures:
    """Every command on a ledger of ``jobs`` jobs (and on the plain-list manifest)."""
    folder = parent / f"interactive-{jobs}"
    manifest, ledger = await build(folder, jobs)
    listed = workload.write_manifest(folder, jobs, f"listed{jobs}")
    figures: Figures = {"jobs": jobs, "states": workload.state_counts(ledger)}
    for name, args in LEDGER_COMMANDS:
        command = [*args, "--ledger", str(ledger)]
        figures[name] = await _timed(command, folder / "logs" / name, repeats)
    for suffix, path in (("", manifest), ("_list", listed)):
        for verb in ("validate", "estimate"):
            log = folder / "logs" / f"{verb}{suffix}"
            figures[f"{verb}{suffix}"] = await _timed([verb, str(path)], log, repeats)
    return figures


async def interactive(plan: Plan, parent: Path) -> Figures:
    """Both sizes, smallest first (``plan.interactive_sizes``, ``plan.interactive_repeats``)."""
    return {
        str(jobs): await one_size(parent, jobs, plan.interactive_repeats)
        for jobs in plan.interactive_sizes
    }
