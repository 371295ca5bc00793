"""reports: JSON shape, CSV that adds up to the JSON, self-contained escaped HTML, exports, summary.

The ledger here is a real one on disk, walked through real transitions (no mocks): one batch
with a done job, a job that failed once and was retried to completion, one in flight, one
cancelled, one held back, and a billed orphan whose remote id is hostile HTML.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import InputError
from orchestrator.jobs import JobSpec, JobState, job_key
from orchestrator.ledger import Batch, Ledger
from orchestrator.money import report_html, report_sections, reports
from orchestrator.money.spend_history import Charge

S = JobState
KLING, GROK, ODD = "kling/kling-2.5", "xai/grok-video", "x/<i>odd</i>"
HOSTILE = "<script>alert(1)</script>"
SECRET_URL = "https://cdn.example/clip.mp4?signature=SECRET-SIGNATURE"
#: The documented keys of ``totals`` and of every group, in order.
GROUP_KEYS = [
    "jobs", "billed_jobs", "billed_micro", "billed_usd", "in_flight_jobs", "in_flight_micro",
    "in_flight_usd", "free_jobs", "free_attempts", "clips", "billed_seconds",
    "cost_per_clip_micro", "cost_per_clip_usd", "cost_per_second_micro", "cost_per_second_usd",
    "not_sent_jobs", "not_sent_micro", "not_sent_usd",
]  # fmt: skip


def spec(batch: str, entry_id: str, model: str, price: int, seq: int) -> JobSpec:
    request = {"prompt": f"{entry_id}, slow dolly", "duration": 5}
    key = job_key(batch, entry_id, model, request)
    return JobSpec(key, batch, entry_id, model, request, price, f"{batch}/{entry_id}.mp4", seq)


async def walk(ledger: Ledger, key: str, *steps: tuple[JobState, JobState, dict[str, Any]]) -> None:
    for expect, to, fields in steps:
        await ledger.transition(key, to, expect=expect, cause="test", **fields)


def sent(remote_id: str, status: str = "queued") -> tuple[JobState, JobState, dict[str, Any]]:
    return (S.SUBMITTING, S.SUBMITTED, {"remote_id": remote_id, "remote_status": status})


INTENT = (S.PENDING, S.SUBMITTING, {"attempts": 1})
DONE = [
    (S.SUBMITTED, S.COMPLETED, {"remote_status": "completed", "result_url": SECRET_URL}),
    (S.COMPLETED, S.DOWNLOADING, {}),
    (S.DOWNLOADING, S.DONE, {"bytes": 1234, "sha256": "ab" * 32}),
]


@pytest.fixture
async def ledger_path(tmp_path: Path) -> Path:
    """The ledger described in the module docstring, plus a second batch with one done job."""
    path = tmp_path / "ledger.db"
    b = [spec("b", f"j{i}", KLING if i != 1 else GROK, 366_700 if i != 1 else 105_060, i)
         for i in range(5)]  # fmt: skip
    c = [spec("c", "k0", ODD, 1_000_000, 0)]
    async with Ledger.open(path) as ledger:
        await ledger.save_batch(Batch("b", "/m.yaml", "sha", "/out", budget_micro=5_000_000))
        await ledger.save_batch(Batch("c", "/n.yaml", "sha", "/out"))
        await ledger.sync_plan("b", b, {s.key: 5.0 for s in b})
        await ledger.sync_plan("c", c, {})
        await walk(ledger, b[0].key, INTENT, sent("r0"), *DONE)
        failed = (S.SUBMITTED, S.FAILED, {"remote_status": "failed", "last_error": "moderation"})
        again = (S.FAILED, S.PENDING, {})
        await walk(ledger, b[1].key, INTENT, sent("r1a"), failed, again, INTENT, sent("r1b"))
        await walk(ledger, b[1].key, (S.SUBMITTED, S.COMPLETED, {"remote_status": "completed"}))
        await walk(ledger, b[2].key, INTENT, sent("r2", "processing"))
        cancel = (S.SUBMITTED, S.CANCELLED, {"remote_status": "cancelled"})
        await walk(ledger, b[3].key, INTENT, sent("r3"), cancel)
        await ledger.add_orphan(
            "b", HOSTILE, remote_status="completed", price_micro=366_700,
            created_at="2026-03-01T12:00:00.000Z", model=KLING, cause="t",
        )  # fmt: skip
        await walk(ledger, c[0].key, INTENT, sent("rc"), *DONE)
    return path


async def render(path: Path, fmt: str, batch: str | None = "b") -> str:
    async with Ledger.open(path, readonly=True) as ledger:
        return await reports.render(ledger, batch, fmt)


async def test_json_has_the_documented_shape(ledger_path: Path) -> None:
    """Every documented key; integer micro-USD with usd = micro / 1e6."""
    doc = json.loads(await render(ledger_path, "json"))
    assert list(doc) == ["generated_at", "ledger", "batch", "totals", "by_batch", "by_model",
                         "by_status", "by_day", "orphans", "possible_duplicates"]  # fmt: skip
    totals = doc["totals"]
    assert list(totals) == [*GROUP_KEYS, "orphans", "orphan_billed_micro", "orphan_billed_usd",
                            "possible_duplicates", "possible_duplicate_micro",
                            "possible_duplicate_usd", "foreign_jobs"]  # fmt: skip
    assert (totals["possible_duplicates"], totals["possible_duplicate_micro"]) == (0, 0)
    assert (totals["foreign_jobs"], doc["possible_duplicates"]) == (0, [])
    assert list(doc["by_batch"][0]) == ["batch", *GROUP_KEYS, "budget_micro", "budget_usd"]
    assert list(doc["by_model"][0]) == ["model", *GROUP_KEYS]
    assert list(doc["by_status"][0]) == ["state", *GROUP_KEYS]
    assert list(doc["by_day"][0]) == ["day", "billed_jobs", "billed_micro", "billed_usd",
                                      "free_attempts"]  # fmt: skip
    assert totals["billed_micro"] == 366_700 + 105_060 + 366_700
    assert totals["billed_usd"] == totals["billed_micro"] / 1_000_000
    assert (totals["in_flight_micro"], totals["in_flight_jobs"]) == (366_700, 1)
    assert (totals["free_jobs"], totals["free_attempts"], totals["clips"]) == (1, 2, 2)
    assert (totals["not_sent_jobs"], totals["not_sent_micro"], totals["not_sent_usd"]) == (
        1, 366_700, 0.3667,
    )  # fmt: skip
    split = ("billed_jobs", "in_flight_jobs", "not_sent_jobs", "free_jobs")
    for group in [totals, *doc["by_batch"], *doc["by_model"], *doc["by_status"]]:
        assert sum(group[k] for k in split) == group["jobs"]
    pending = next(g for g in doc["by_status"] if g["state"] == "pending")
    assert (pending["not_sent_jobs"], pending["free_jobs"], pending["jobs"]) == (1, 0, 1)
    assert (totals["orphans"], totals["orphan_billed_micro"]) == (1, 366_700)
    assert totals["cost_per_clip_micro"] == 419_230  # all billed money over the two clips
    assert totals["cost_per_second_micro"] == 83_846  # over 10 s of video
    states = ["pending", "submitted", "completed", "done", "cancelled", "orphan"]
    assert [g["state"] for g in doc["by_status"]] == states  # in JobState order
    assert doc["by_batch"][0]["budget_micro"] == 5_000_000
    assert doc["orphans"] == [{
        "key": f"orphan:{HOSTILE}", "remote_id": HOSTILE, "batch": "b", "model": KLING,
        "remote_status": "completed", "price_micro": 366_700, "price_usd": 0.3667,
        "billed": True, "in_flight": False, "remote_created_at": "2026-03-01T12:00:00.000Z",
    }]  # fmt: skip


async def test_csv_parses_back_and_adds_up_to_the_json(ledger_path: Path) -> None:
    """One row per figure group; each section sums to the JSON totals; USD is exact text."""
    doc = json.loads(await render(ledger_path, "json"))
    rows = list(csv.DictReader(io.StringIO(await render(ledger_path, "csv"))))
    assert list(rows[0]) == list(reports.CSV_COLUMNS)
    by_section: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_section.setdefault(row["section"], []).append(row)
    (total,) = by_section["total"]
    totals = doc["totals"]
    columns = ("billed_micro", "in_flight_micro", "not_sent_micro", "jobs", "billed_jobs",
               "not_sent_jobs", "free_jobs")  # fmt: skip
    for column in columns:
        assert int(total[column]) == totals[column]
        for section in ("batch", "model", "status"):
            assert sum(int(r[column]) for r in by_section[section]) == totals[column], section
    assert total["billed_usd"] == "0.838460"
    assert (total["not_sent_jobs"], total["not_sent_usd"]) == ("1", "0.366700")
    assert list(reports.CSV_COLUMNS)[-1] == "note"
    assert sum(int(r["billed_micro"]) for r in by_section["day"]) == totals["billed_micro"]
    (orphan,) = by_section["orphan"]
    assert (orphan["name"], orphan["billed_micro"]) == (HOSTILE, "366700")
    assert sum(int(r["free_attempts"]) for r in by_section["status"]) == totals["free_attempts"]


async def test_html_is_self_contained_and_escapes_ledger_strings(ledger_path: Path) -> None:
    """Inline SVG charts, no script, no external resource; ids and models are escaped."""
    page = await render(ledger_path, "html", batch=None)
    assert page.count("<svg") == 2
    assert "<polyline" in page
    assert "<rect" in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<i>odd</i>" not in page
    assert "x/&lt;i&gt;odd&lt;/i&gt;" in page
    for external in ("src=", "href=", "<link", "@import", "url("):
        assert external not in page
    assert "$1.84" in page  # both batches: 0.838460 + 1.0
    assert (
        "not sent<b>$0.37 estimated (1 job pending, waiting for inputs or held back by the "
        "budget)</b>"
    ) in page


async def test_the_table_names_every_section(ledger_path: Path) -> None:
    text = await render(ledger_path, "table")
    for title in ("By batch", "By model", "By state", "By day (UTC)", "Orphans"):
        assert title in text
    assert "$0.84 (3 jobs)" in text
    assert (
        "not sent    $0.37 estimated (1 job pending, waiting for inputs or held back by the budget)"
    ) in text
    assert "free        1 job failed, cancelled or rejected; 2 attempts failed or cancelled" in text
    header = next(line for line in text.splitlines() if line.startswith("batch "))
    assert "not sent" in header
    assert "not sent $" in header
    assert HOSTILE in text


async def test_the_batch_summary_says_what_the_run_cost(ledger_path: Path) -> None:
    """Billed, clips, by model, rates, in flight and orphans, in a few lines."""
    async with Ledger.open(ledger_path, readonly=True) as ledger:
        text = await reports.batch_summary(ledger, "b")
    lines = text.splitlines()
    assert lines[0] == (
        "spend: $0.84 billed for 2 clips (10 s of video): $0.42 a clip, $0.0838 a second"
    )
    assert any(KLING in line and "$0.73" in line for line in lines)  # a clip and the orphan
    assert any(GROK in line and "1 clip " in line and "$0.11" in line for line in lines)
    assert "in flight: 1 job, up to $0.37 more" in lines
    assert (
        "not sent: 1 job (pending, waiting for inputs or held back by the budget), "
        "$0.37 more once sent"
    ) in lines
    assert any(line.startswith("orphans: 1 ") and "$0.37 billed" in line for line in lines)


async def test_one_batch_or_every_batch(ledger_path: Path) -> None:
    """Without a batch the report covers the whole ledger; with one, only that batch."""
    every = json.loads(await render(ledger_path, "json", batch=None))["totals"]
    only_c = json.loads(await render(ledger_path, "json", batch="c"))["totals"]
    assert every["billed_micro"] == 838_460 + 1_000_000
    assert (only_c["billed_micro"], only_c["orphans"]) == (1_000_000, 0)


async def test_unknown_batches_and_formats_are_refused(ledger_path: Path) -> None:
    with pytest.raises(InputError, match="no batch 'nope'"):
        await render(ledger_path, "json", batch="nope")
    with pytest.raises(InputError, match="unknown report format"):
        await render(ledger_path, "pdf")
    async with Ledger.open(ledger_path, readonly=True) as ledger:
        with pytest.raises(InputError, match="unknown export format"):
            await reports.export(ledger, None, fmt="xml")


async def test_exported_jobs_carry_the_request_and_the_result_url(ledger_path: Path) -> None:
    """Every job row with its request and result URL (issue 16 asks for it); no key."""
    async with Ledger.open(ledger_path, readonly=True) as ledger:
        as_csv = await reports.export(ledger, "b", fmt="csv")
        as_json = await reports.export(ledger, "b", fmt="json")
    rows, objects = list(csv.DictReader(io.StringIO(as_csv))), json.loads(as_json)
    assert len(rows) == len(objects) == 6
    for column in ("key", "batch", "entry_id", "model", "state", "remote_id", "remote_status",
                   "price_micro", "seconds", "output_path", "bytes", "sha256", "attempts",
                   "last_error", "request", "created_at", "updated_at"):  # fmt: skip
        assert column in rows[0]
    assert SECRET_URL in [o["result_url"] for o in objects]  # the user's own link, only there
    others = [{k: v for k, v in o.items() if k != "result_url"} for o in objects]
    assert "SECRET" not in json.dumps(others)
    j0 = next(o for o in objects if o["entry_id"] == "j0")
    assert j0["request"] == {"prompt": "j0, slow dolly", "duration": 5}
    assert json.loads(next(r for r in rows if r["entry_id"] == "j0")["request"]) == j0["request"]
    retried = next(o for o in objects if o["entry_id"] == "j1")
    assert (retried["attempts"], retried["remote_id"], retried["state"]) == (1, "r1b", "completed")


async def test_exported_events_are_the_whole_history(ledger_path: Path) -> None:
    """Every event row, oldest first, as CSV and JSON."""
    async with Ledger.open(ledger_path, readonly=True) as ledger:
        as_json = json.loads(await reports.export(ledger, None, events=True, fmt="json"))
        as_csv = await reports.export(ledger, None, events=True, fmt="csv")
        count = len(await ledger.events())
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert len(as_json) == len(rows) == count
    assert [e["seq"] for e in as_json] == sorted(e["seq"] for e in as_json)
    retried = [e["to_state"] for e in as_json if e["remote_id"] in ("r1a", "r1b")]
    assert retried.count("failed") == 1
    assert retried[-1] == "completed"
    assert list(rows[0]) == [c.strip() for c in Ledger.EXPORT_EVENT_COLUMNS.split(",")]


def test_money_text_is_exact() -> None:
    assert report_sections.usd_text(1_101_934) == "1.101934"
    assert report_sections.usd_text(-5) == "-0.000005"
    assert report_sections.dollars(1_234_565_000) == "$1,234.57"  # half up, not to even
    assert report_sections.dollars(5_000) == "$0.01"
    assert report_sections.dollars(None) == "-"
    assert report_sections.rate(73_340) == "$0.0733"


async def test_jobs_dropped_from_the_manifest_before_sending_are_left_out(tmp_path: Path) -> None:
    """A pending job the manifest no longer has is no part of any spend; export still has it."""
    path, specs = tmp_path / "l.db", [spec("b", f"j{i}", KLING, 366_700, i) for i in range(2)]
    async with Ledger.open(path) as ledger:
        await ledger.save_batch(Batch("b", "/m.yaml", "sha", "/out"))
        await ledger.sync_plan("b", specs, {})
        await ledger.sync_plan("b", specs[:1], {})
    assert json.loads(await render(path, "json"))["totals"]["jobs"] == 1
    async with Ledger.open(path, readonly=True) as ledger:
        assert len(json.loads(await reports.export(ledger, "b", fmt="json"))) == 2


async def test_a_pending_job_the_manifest_dropped_after_an_attempt_is_free(tmp_path: Path) -> None:
    """Sent once, refused, then dropped: no run will send it again, so it is free, not unsent."""
    path, specs = tmp_path / "l.db", [spec("b", f"j{i}", KLING, 366_700, i) for i in range(2)]
    refused = (S.SUBMITTING, S.PENDING, {"remote_status": None})
    async with Ledger.open(path) as ledger:
        await ledger.save_batch(Batch("b", "/m.yaml", "sha", "/out"))
        await ledger.sync_plan("b", specs, {})
        await walk(ledger, specs[1].key, INTENT, refused)
        await ledger.sync_plan("b", specs[:1], {})
    totals = json.loads(await render(path, "json"))["totals"]
    assert (totals["jobs"], totals["not_sent_jobs"], totals["not_sent_micro"]) == (2, 1, 366_700)
    assert totals["free_jobs"] == 1


def test_the_spend_chart_of_a_large_batch_stays_small() -> None:
    """Thousands of charges draw at most MAX_STEPS steps, ending at the exact total."""
    spent = [
        Charge(f"2026-03-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z", f"k{i}", "b", KLING,
               1_000, 1_000 * (i + 1))
        for i in range(10_000)
    ]  # fmt: skip
    svg = report_html.spend_chart(spent)
    points = svg.split('points="')[1].split('"')[0].split()
    assert len(points) <= 2 * report_html.MAX_STEPS + 3
    assert points[-1].endswith(",20.0")  # the top: the running total of the last charge
    assert "$10.00" in svg
    assert "Nothing billed yet" in report_html.spend_chart([])
