"""What each CLI command does, without click: load, call the library, return text and exit codes.

``cli`` parses arguments and prints; this module does the work, so the commands can be called
from Python (and tested) without a terminal. Text for people is plain aligned columns; anything a
program reads has a JSON form whose shape is documented in the README.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from orchestrator import errors
from orchestrator.answers import RemoteJob
from orchestrator.client import KreaClient
from orchestrator.clock import Clock, parse_utc
from orchestrator.config import Settings
from orchestrator.jobs import JobRecord, JobState
from orchestrator.ledger import Ledger, LedgerLock, Move
from orchestrator.limits import Pacer
from orchestrator.manifest.manifest import load_manifest
from orchestrator.money import costs, reports
from orchestrator.retry import Action, Backoff, classify_read

S = JobState
T = TypeVar("T")
#: Tries of one `cancel` request through transient failures (about a minute of backoff when
#: Krea gives no Retry-After) before the outage is said, rather than waited out.
CANCEL_TRIES = 8
#: Columns a table for people may take: it never wraps in a terminal this wide.
WIDTH = 100


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
    text = table(("model", "jobs", "usd"), rows)
    if result.budget_micro is not None:
        verdict = "fits" if result.fits_budget else "EXCEEDS"
        text += f"\nbudget {_money(result.budget_micro)}: the estimate {verdict} it"
    return text, result.fits_budget


@asynccontextmanager
async def read_ledger(path: str | Path, batch: str | None = None) -> AsyncIterator[Ledger]:
    """The ledger at ``path``, read-only; a missing ledger or batch is bad input (exit 2)."""
    _require_ledger(path)
    async with Ledger.open(path, readonly=True) as ledger:
        await _check_batch(ledger, batch)
        yield ledger


def _require_ledger(path: str | Path) -> None:
    """Readers never create a ledger: a path with none is a typo, said as bad input (exit 2),
    with the ledgers that are in that folder (after `--simulate`, ``simulated.db``)."""
    if not Path(path).is_file():
        raise errors.NoLedger(str(path), _ledgers_beside(Path(path)))


def _ledgers_beside(path: Path) -> tuple[str, ...]:
    """The SQLite files in ``path``'s folder that hold a ledger (a ``batches`` table), by name."""
    folder = path.parent
    found = []
    for candidate in sorted(folder.glob("*.db"))[:50]:
        try:
            with sqlite3.connect(f"file:{candidate}?mode=ro", uri=True) as db:
                tables = db.execute("SELECT name FROM sqlite_master WHERE name = 'batches'")
                if tables.fetchone():
                    found.append(str(candidate) if folder != Path() else candidate.name)
        except sqlite3.Error:
            continue  # not SQLite, or unreadable: not a ledger to suggest
    return tuple(found)


async def _check_batch(ledger: Ledger, batch: str | None) -> None:
    if batch is not None and await ledger.batch(batch) is None:
        raise errors.InputError(f"no batch {batch!r} in {ledger.path}")


async def status(ledger_path: Path, batch: str | None, fmt: str) -> str:
    """`orchestrator status`: counts per batch and state, jobs no run claims, oldest in flight.

    ``--format json`` is a list with one object per batch (README, Commands)::

        [{"batch": "demo", "states": {"done": 9}, "orphans": 0, "possible_duplicates": 1,
          "foreign": 3, "superseded": 1, "oldest_in_flight": "3m05s", "oldest_in_flight_s": 185.2}]

    ``states`` counts the current manifest's jobs; ``superseded``, rows of entries since edited or
    removed (cost kept in reports); ``foreign``, other clients' jobs seen by its runs or by none.
    """
    async with read_ledger(ledger_path, batch) as ledger:
        names = [batch] if batch else await ledger.batch_names()
        data = [await _batch_status(ledger, name) for name in names]
    if fmt == "json":
        return json.dumps(data, indent=2)
    return _status_table(data) if data else "the ledger has no batches yet"


#: Columns of `status` after the states: (JSON key, header, header when shortened).
_STATUS_COUNTS = (
    ("orphans", "orphans", "orph"),
    ("possible_duplicates", "possible dups", "dups"),
    ("foreign", "foreign", "frgn"),
    ("superseded", "superseded", "sups"),
    ("oldest_in_flight", "oldest in flight", "oldest"),
)
#: State headers when the full names would not fit ``WIDTH``.
_SHORT_STATES = {
    "pending": "pend", "submitting": "sbmtg", "submitted": "sbmtd", "completed": "compl",
    "downloading": "dlng", "rejected": "rej", "cancelled": "canc", "ambiguous": "amb",
}  # fmt: skip


def _status_table(data: Sequence[dict[str, Any]]) -> str:
    """One row per batch, within ``WIDTH`` columns: the states some batch has jobs in and every
    count; if that is too wide, only the counts some batch has, then shorter headers, and
    when even those do not fit, one row per batch and count."""
    states = [s.value for s in JobState if any(d["states"].get(s.value) for d in data)]
    some = [c for c in _STATUS_COUNTS if any(d[c[0]] for d in data)]
    text = ""
    for counts, short in ((_STATUS_COUNTS, False), (some, False), (some, True)):
        rows, header = _status_rows(data, states, counts, short=short)
        text = table(("batch", *header), rows)
        if fits(text):
            return text
    rows, header = _status_rows(data, states, some, short=False)
    return table(("batch", "jobs or count", "n"), _status_long(rows, header))


def _status_rows(
    data: Sequence[dict[str, Any]],
    states: Sequence[str],
    counts: Sequence[tuple[str, str, str]],
    *,
    short: bool,
) -> tuple[list[tuple[str, ...]], tuple[str, ...]]:
    """The rows of `status`'s table (no "batch" header), with full or shortened headers."""
    rows = [
        (clip(d["batch"], 30), *(str(d["states"].get(s, 0)) for s in states),
         *("-" if d[key] is None else str(d[key]) for key, _, _ in counts))
        for d in data
    ]  # fmt: skip
    if short:
        header = (*(_SHORT_STATES.get(s, s) for s in states), *(c[2] for c in counts))
    else:
        header = (*states, *(c[1] for c in counts))
    return rows, header


def _status_long(rows: Sequence[tuple[str, ...]], header: Sequence[str]) -> list[tuple[str, ...]]:
    """The status table turned on its side: (batch, column, value) for each value it shows."""
    return [(row[0], *cell) for row in rows for cell in zip(header, row[1:], strict=True)]


async def _batch_status(ledger: Ledger, name: str) -> dict[str, Any]:
    counts = await ledger.state_counts(name, current_only=True)
    every = await ledger.state_counts(name)
    orphans = every.get(S.ORPHAN, 0)  # remote jobs no entry claims: not the batch's jobs
    counts.pop(S.ORPHAN, None)
    unclaimed = await ledger.unattributed_counts(name)  # nor these: no run claims them
    oldest = await ledger.oldest_in_flight(name)
    seconds = (datetime.now(UTC) - parse_utc(oldest)).total_seconds() if oldest else None
    return {
        "batch": name,
        "states": {s.value: n for s, n in counts.items()},
        "orphans": orphans,
        "possible_duplicates": unclaimed["possible_duplicate"],
        "foreign": unclaimed["foreign"],
        "superseded": sum(every.values()) - orphans - sum(counts.values()),
        "oldest_in_flight": None if seconds is None else _age(seconds),
        "oldest_in_flight_s": None if seconds is None else round(seconds, 1),
    }


def _age(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


async def report(ledger_path: Path, batch: str | None, fmt: str) -> str:
    """`orchestrator report` (see ``reports``)."""
    async with read_ledger(ledger_path, batch) as ledger:
        return await reports.render(ledger, batch, fmt)


async def export(ledger_path: Path, batch: str | None, events: bool, fmt: str) -> str:
    """`orchestrator export`: every job (or event) row, as CSV or JSON."""
    async with read_ledger(ledger_path, batch) as ledger:
        return await reports.export(ledger, batch, events=events, fmt=fmt)


async def cancel(settings: Settings, batch: str) -> str:
    """`orchestrator cancel`: DELETE every job of ``batch`` in flight, and record the outcome.

    Only jobs with a Krea job id can be cancelled: an ambiguous job's id is unknown until the next
    `run` reconciles it, so it is skipped and counted, never guessed. Requests are paced and
    retried as a run's are; an error that retrying cannot pass (a refused key, an outage outlasting
    ``CANCEL_TRIES``) stops it, raised with what was cancelled and what is still in flight.
    """
    _require_ledger(settings.ledger_path)
    lock = LedgerLock(settings.ledger_path)
    lock.acquire()  # a run in progress would keep sending: it must be stopped first
    try:
        async with Ledger.open(settings.ledger_path) as ledger:
            await _check_batch(ledger, batch)
            rows = await ledger.jobs(batch=batch, states=[S.SUBMITTED])
            unknown = await ledger.jobs(batch=batch, states=[S.SUBMITTING, S.AMBIGUOUS])
            outcomes, stop = await _cancel_all(ledger, settings, rows)
    finally:
        lock.release()
    text = _cancel_text(outcomes, len(rows), len(unknown))
    if stop is not None:
        stop.args = (f"{stop.message}; cancel stopped: {text}",)  # same type and fields
        raise stop
    return text


async def _cancel_all(
    ledger: Ledger, settings: Settings, rows: Sequence[JobRecord]
) -> tuple[Counter[str], errors.OrchestratorError | None]:
    """Each job's outcome, in turn; and the error that stopped the rest, if one did."""
    outcomes: Counter[str] = Counter()
    pacer = Pacer(settings.requests_per_second)
    async with KreaClient.connect(
        settings.api_base, settings.api_key, pace=pacer, timeout_s=settings.request_timeout_s
    ) as client:
        krea = _Patient(client, pacer, Clock(settings.time_scale), random.Random(settings.seed))
        try:
            if rows:  # a wrong --api-base answers 404 to DELETE too: find out before reading it
                await krea.list_one()
            for row in rows:
                outcomes[await _cancel_one(ledger, krea, row)] += 1
        except (errors.ApiError, errors.TransportError) as exc:
            return outcomes, exc
    return outcomes, None


class _Patient:
    """`cancel`'s calls to Krea: paced by the client, retried through what retrying can pass.

    A 429, a 5xx, a dropped connection or an unreadable answer waits (Retry-After, else the
    jittered backoff) and tries again, up to ``CANCEL_TRIES``; a rate 429 also slows the pacer.
    Any other error is raised at once: 401 and a wrong API base stop everything, and 404/409 are
    answers the caller reads.
    """

    def __init__(self, client: KreaClient, pacer: Pacer, clock: Clock, rng: random.Random) -> None:
        self.client, self.pacer, self.clock, self.rng = client, pacer, clock, rng

    async def list_one(self) -> None:
        """One page of one job: proves the API base is Krea's (else NotKreaApi)."""
        await self._retried(lambda: self.client.list_jobs(limit=1))

    async def cancel_job(self, job_id: str) -> RemoteJob | None:
        return await self._retried(lambda: self.client.cancel_job(job_id))

    async def get_job(self, job_id: str) -> RemoteJob:
        return await self._retried(lambda: self.client.get_job(job_id))

    async def _retried(self, request: Callable[[], Awaitable[T]]) -> T:
        backoff = Backoff(self.rng)
        while True:
            try:
                return await request()
            except (errors.ApiError, errors.TransportError) as exc:
                passes = classify_read(exc).action is Action.RETRY
                if not passes or backoff.failures + 1 >= CANCEL_TRIES:
                    raise
                if isinstance(exc, errors.RateLimited):
                    self.pacer.on_rate_limited()
                await self.clock.sleep(backoff.next_delay(exc))


async def _cancel_one(ledger: Ledger, krea: _Patient, row: JobRecord) -> str:
    """DELETE one job; its Krea status afterwards ("unknown" when Krea no longer knows it)."""
    remote_id = row.remote_id or ""
    try:
        remote = await krea.cancel_job(remote_id)
    except errors.ApiError as exc:  # 409: it finished first; 404: the GET below says
        if classify_read(exc).action is not Action.REJECT:
            raise
        remote = None
    try:
        if remote is None or remote.status != "cancelled":
            remote = await krea.get_job(remote_id)  # what it became instead
    except errors.NotFound:
        return "unknown"  # the next `run` marks it failed after Krea's 404s
    to = {"cancelled": S.CANCELLED, "completed": S.COMPLETED, "failed": S.FAILED}.get(remote.status)
    if to is not None:
        fields: dict[str, Any] = {"remote_status": remote.status}
        if to is S.COMPLETED:
            fields |= {"result_url": remote.urls[0] if remote.urls else None}
        await ledger.apply([Move(row.key, S.SUBMITTED, to, "orchestrator cancel", fields)])
    return remote.status


def _cancel_text(outcomes: Counter[str], in_flight: int, skipped: int) -> str:
    left = in_flight - sum(outcomes.values())  # not reached: an error stopped the cancel first
    cancelled = outcomes.pop("cancelled", 0)
    parts = [f"cancelled {cancelled} of {in_flight} jobs in flight"]
    if outcomes:
        others = ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items()))
        parts.append(f"{sum(outcomes.values())} could no longer be cancelled ({others})")
    if left:
        parts.append(f"{left} not cancelled (still in flight)")
    if skipped:
        parts.append(
            f"skipped {skipped} ambiguous jobs: their Krea job id is unknown until the next "
            "`orchestrator run` reconciles them"
        )
    return "; ".join(parts)


def _money(micro: int | None) -> str:
    return "-" if micro is None else f"${micro / 1_000_000:,.2f}"


def _usd(micro: int | None) -> float | None:
    return None if micro is None else micro / 1_000_000


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """Plain aligned columns under a header and a rule (cells are not cut: see :func:`clip`)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def fits(text: str) -> bool:
    """Whether every line of ``text`` fits a terminal ``WIDTH`` columns wide."""
    return all(len(line) <= WIDTH for line in text.splitlines())


def clip(text: str, width: int, *, keep_end: bool = False) -> str:
    """``text`` in at most ``width`` columns, an ellipsis where it was cut (at its start with
    ``keep_end``, so a path keeps its file name)."""
    if len(text) <= width:
        return text
    if keep_end:
        return "…" + text[len(text) - width + 1 :]
    return text[: width - 1] + "…"
