"""A report reads SQLite's sums, not every row, and they add up to what the rows say; an export
is written a page at a time, in the memory of one page.

The ledger is a real file walked through real transitions: two batches and three models, jobs
done (some of unknown length), one failed twice and then done, one found completed by
reconciliation (its remote status seen before the poller's), in flight, cancelled, rejected,
held back, dropped from the manifest after an attempt, billed and failed orphans, possible
duplicates and foreign jobs, billed over three UTC days.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from orchestrator.jobs import JobSpec, JobState, job_key
from orchestrator.ledger import Batch, Ledger, Unattributed, commits
from orchestrator.money import export, reports, spend_history
from orchestrator.money.accounting import Bucket, bucket
from orchestrator.money.rows import DayGroup
from tests.unit.test_reports import INTENT, sent, walk

S = JobState
MODELS = ("kling/kling-2.5", "xai/grok-video", "google/veo-3")
DAYS = ("2026-03-01T23:59:59.999Z", "2026-03-02T00:00:00.000Z", "2026-03-03T12:00:00.000Z")


def spec(batch: str, index: int) -> JobSpec:
    request = {"prompt": f"shot {index}, slow dolly", "duration": 5}
    model = MODELS[index % 3]
    key = job_key(batch, f"j{index}", model, request)
    return JobSpec(key, batch, f"j{index}", model, request, 100_000 + index, f"j{index}.mp4", index)


FAILED = (S.SUBMITTED, S.FAILED, {"remote_status": "failed"})
AGAIN = (S.FAILED, S.PENDING, {})


def completed(day: str) -> tuple[JobState, JobState, dict[str, Any]]:
    return (S.SUBMITTED, S.COMPLETED, {"remote_status": "completed", "completed_at": day})


DONE = [(S.COMPLETED, S.DOWNLOADING, {}), (S.DOWNLOADING, S.DONE, {"bytes": 1, "sha256": "ab"})]


async def _batch(ledger: Ledger, name: str, jobs: int) -> list[JobSpec]:
    specs = [spec(name, i) for i in range(jobs)]
    await ledger.save_batch(Batch(name, f"/{name}.yaml", "sha", "/out", budget_micro=9_000_000))
    await ledger.sync_plan(name, specs, {s.key: (None if s.seq % 7 == 0 else 5.0) for s in specs})
    return specs


async def _walk_mix(ledger: Ledger, specs: list[JobSpec], name: str, clock: list[str]) -> None:
    """Job i's fate by i % 10: 0-4 done, 5 failed twice then done, 6 in flight, 7 cancelled,
    8 rejected, 9 pending; and the last job found completed by reconciliation. Job i's
    transitions happen on ``DAYS[i % 3]`` (``clock``)."""
    for s in specs[:-1]:
        rid, fate = f"{name}-{s.seq}", s.seq % 10
        clock[0] = DAYS[s.seq % 3]
        if fate <= 5:
            extra = [sent(f"{rid}-a"), FAILED, AGAIN, INTENT, sent(f"{rid}-b"), FAILED, AGAIN,
                     INTENT] if fate == 5 else []  # fmt: skip
            day = DAYS[s.seq % 3]
            await walk(ledger, s.key, INTENT, *extra, sent(rid), completed(day), *DONE)
        elif fate == 6:
            await walk(ledger, s.key, INTENT, sent(rid, "processing"))
        elif fate == 7:
            await walk(ledger, s.key, INTENT, sent(rid), (S.SUBMITTED, S.CANCELLED, {}))
        elif fate == 8:
            await walk(ledger, s.key, INTENT, (S.SUBMITTING, S.REJECTED, {}))
    last = specs[-1].key
    found = (S.AMBIGUOUS, S.SUBMITTED, {"remote_id": f"{name}-r", "remote_status": "completed"})
    await walk(ledger, last, INTENT, (S.SUBMITTING, S.AMBIGUOUS, {}), found, completed(DAYS[0]))


@pytest.fixture
async def mixed(tmp_path: Path) -> Path:
    """The ledger of the module docstring."""
    path = tmp_path / "mixed.db"
    clock = [DAYS[0]]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(commits, "now_utc", lambda: clock[0])
        await _fill(path, clock)
    return path


async def _fill(path: Path, clock: list[str]) -> None:
    async with Ledger.open(path) as ledger:
        for name, jobs in (("a", 41), ("b", 12)):
            await _walk_mix(ledger, await _batch(ledger, name, jobs), name, clock)
        await walk(ledger, spec("a", 39).key, (S.PENDING, S.SUBMITTING, {"attempts": 1}),
                   (S.SUBMITTING, S.PENDING, {}))  # fmt: skip
        await ledger.sync_plan("a", [spec("a", i) for i in range(30)], {})  # drops 30..40
        for index, status in enumerate(("completed", "failed", "queued")):
            await ledger.add_orphan(
                "a", f"orphan-{index}", remote_status=status, created_at=DAYS[index],
                price_micro=366_700, model=MODELS[0], cause="t",
            )  # fmt: skip
        await ledger.add_unattributed([
            Unattributed("d1", "possible_duplicate", "a", MODELS[0], 366_700, "queued", DAYS[1]),
            Unattributed("f1", "foreign", None, None, 0, "completed", DAYS[2]),
        ])  # fmt: skip


@pytest.fixture
def no_row_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading every job or money event for a report is an error."""

    async def refused(self: Ledger, batch: str | None = None) -> list[dict[str, Any]]:
        raise AssertionError("a report read the ledger row by row")

    monkeypatch.setattr(Ledger, "report_jobs", refused)
    monkeypatch.setattr(Ledger, "report_events", refused)


async def _rendered(path: Path, batch: str | None, fmt: str) -> str:
    async with Ledger.open(path, readonly=True) as ledger:
        return await reports.render(ledger, batch, fmt)


@pytest.mark.parametrize("batch", [None, "a", "b"])
async def test_the_sums_are_the_figures_of_the_rows(mixed: Path, batch: str | None) -> None:
    """Every figure SQLite adds up equals the row-by-row figure, group by group and day by day."""
    async with Ledger.open(mixed, readonly=True) as ledger:
        by_row = await reports.figures_by_row(ledger, batch)
        summed = await reports.figures(ledger, batch, chart=True)
    assert summed.totals == by_row.totals
    assert (summed.by_batch, summed.by_model) == (by_row.by_batch, by_row.by_model)
    assert summed.by_status == by_row.by_status
    assert summed.by_day == by_row.by_day
    assert {"2026-03-01", "2026-03-02", "2026-03-03"} <= {d.day for d in summed.by_day}
    assert summed.orphans == by_row.orphans
    assert summed.chart == by_row.chart
    assert summed.possible_duplicates == by_row.possible_duplicates
    assert summed.foreign_jobs == by_row.foreign_jobs
    assert summed.totals.free_attempts == by_row.totals.free_attempts > 0


@pytest.mark.usefixtures("no_row_reads")
@pytest.mark.parametrize("fmt", reports.FORMATS)
async def test_a_report_reads_sums_not_rows(
    mixed: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every format renders from SQLite's sums alone, the same text as from every row."""
    monkeypatch.setattr(reports, "now_utc", lambda: "2026-03-04T00:00:00.000Z")
    monkeypatch.setattr(spend_history, "MAX_STEPS", 4, raising=False)  # every n-th charge
    text = await _rendered(mixed, None, fmt)
    monkeypatch.undo()
    monkeypatch.setattr(reports, "now_utc", lambda: "2026-03-04T00:00:00.000Z")
    monkeypatch.setattr(spend_history, "MAX_STEPS", 4, raising=False)

    async def by_row(ledger: Ledger, batch: str | None, *, chart: bool = False) -> Any:
        return await reports.figures_by_row(ledger, batch)

    monkeypatch.setattr(reports, "figures", by_row)
    assert text == await _rendered(mixed, None, fmt)


async def _big_ledger(path: Path, jobs: int) -> None:
    async with Ledger.open(path) as ledger:
        specs = [spec("big", i) for i in range(jobs)]
        await ledger.save_batch(Batch("big", "/big.yaml", "sha", "/out"))
        await ledger.sync_plan("big", specs, {})


@pytest.mark.parametrize(("events", "fmt"), [(False, "csv"), (True, "json")])
async def test_an_export_streams_in_the_memory_of_a_page(
    tmp_path: Path, events: bool, fmt: str
) -> None:
    """20,000 rows are written page by page: the same text as one json.dumps or CSV of them
    all, while the memory peak stays far below what holding them all takes."""
    path = tmp_path / "big.db"
    await _big_ledger(path, 20_000)
    sizes: list[int] = []
    async with Ledger.open(path, readonly=True) as ledger:
        tracemalloc.start()
        try:
            await export.export_to(ledger, None, lambda t: sizes.append(len(t)), events=events,
                                   fmt=fmt)  # fmt: skip
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        whole = await reports.export(ledger, None, events=events, fmt=fmt)
        rows = await (ledger.export_events() if events else ledger.export_jobs())
    assert len(sizes) > 20  # a page at a time
    assert sum(sizes) == len(whole)
    assert peak < 8 * 1024 * 1024, f"{peak / 1e6:.1f} MB"  # the whole text alone is ~10 MB
    if fmt == "json":
        parsed = [{**r, "request": json.loads(r["request"])} if "request" in r else r for r in rows]
        assert whole == json.dumps(parsed, indent=2, ensure_ascii=False)


async def test_an_empty_export_is_an_empty_list(tmp_path: Path) -> None:
    """No rows: ``[]`` and a CSV header, as before."""
    path = tmp_path / "empty.db"
    await _big_ledger(path, 0)
    async with Ledger.open(path, readonly=True) as ledger:
        assert await reports.export(ledger, None, fmt="json") == "[]"
        header = await reports.export(ledger, None, fmt="csv")
    assert header.startswith("key,batch,entry_id")
    assert header.count("\n") == 1


def _billed(group: dict[str, Any]) -> bool:
    """Whether accounting calls a (state, remote_status, planned) day group billed."""
    row = DayGroup.of(group).sample
    return bucket(row) is Bucket.BILLED


@pytest.mark.parametrize("batch", [None, "a"])
async def test_billing_times_kept_as_events_are_written_are_those_found_among_the_events(
    mixed: Path, batch: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``billed_first`` (migration 8, kept by a trigger) gives every job the billing time the
    events give it: the day groups and the chart's points are the same either way."""
    current = sorted(map(str, spend_history.CURRENT_REMOTE))
    kinds = [("done", "completed", 1), ("completed", "completed", 1)]
    async with Ledger.open(mixed, readonly=True) as ledger:
        kept = await ledger.report_billed_days(batch, current)
        kept_chart = await ledger.report_chart(batch, current, kinds, 2)

        async def never(self: Ledger, current: Any) -> bool:
            return False

        monkeypatch.setattr(Ledger, "_billed_first", never)
        found = await ledger.report_billed_days(batch, current)
        found_chart = await ledger.report_chart(batch, current, kinds, 2)
    assert kept
    # The billed jobs' groups are the same; the events' way also groups jobs that are not
    # billed (in flight, free), which accounting drops and the billing index never holds.
    billed = [group for group in found if _billed(group)]
    assert sorted(map(repr, kept)) == sorted(map(repr, billed))
    assert kept_chart == found_chart
