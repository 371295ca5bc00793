"""Jobs on the account no run can claim, in every report format and in `status`.

Two real ledgers on disk, written through the Ledger API, hold the same jobs: batch ``b`` (a done
job, one in flight, a billed old-style orphan), batch ``c`` (a done job) and batch ``e`` (none).
One of them also holds ``unattributed`` rows: four possible duplicates (one free: Krea failed it;
one with a hostile remote id) and three foreign jobs (one per batch ``b`` and ``c``, one with no
batch). Comparing the two proves the rows are shown and that no other figure moves.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import commands
from orchestrator.jobs import JobSpec, JobState, job_key
from orchestrator.ledger import Batch, Ledger, Unattributed
from orchestrator.money import reports

S = JobState
KLING, GROK, ODD = "kling/kling-2.5", "xai/grok-video", "x/odd"
HOSTILE = "<script>pd1</script>"
TITLE = "Possible duplicates (unattributable: another client was active)"
#: The keys the feature adds to the report's JSON: totals, then the top level.
TOTAL_KEYS = ("possible_duplicates", "possible_duplicate_micro", "possible_duplicate_usd",
              "foreign_jobs")  # fmt: skip
UNATTRIBUTED = [
    Unattributed(HOSTILE, "possible_duplicate", "b", KLING, 366_700, "queued",
                 "2026-03-01T10:00:00.000Z"),
    Unattributed("pd2", "possible_duplicate", "b", GROK, 105_060, "completed",
                 "2026-03-01T11:00:00.000Z", note="entry j1 sent again"),
    Unattributed("pd3", "possible_duplicate", "b", KLING, 366_700, "failed",
                 "2026-03-01T12:00:00.000Z"),
    Unattributed("pd4", "possible_duplicate", "c", ODD, 1_000_000, "processing",
                 "2026-03-01T09:00:00.000Z"),
    Unattributed("f1", "foreign", None, None, 0, "completed", "2026-03-01T08:00:00.000Z"),
    Unattributed("f2", "foreign", "b", GROK, 0, "queued", "2026-03-01T08:30:00.000Z"),
    Unattributed("f3", "foreign", "c", None, 0, "failed", "2026-03-01T08:45:00.000Z"),
]  # fmt: skip
#: The possible duplicates of batch b as the JSON report lists them, oldest first.
B_DUPLICATES = [
    {"remote_id": HOSTILE, "batch": "b", "model": KLING, "remote_status": "queued",
     "price_if_ours_micro": 366_700, "price_if_ours_usd": 0.3667, "free": False,
     "created_at": "2026-03-01T10:00:00.000Z", "note": None},
    {"remote_id": "pd2", "batch": "b", "model": GROK, "remote_status": "completed",
     "price_if_ours_micro": 105_060, "price_if_ours_usd": 0.10506, "free": False,
     "created_at": "2026-03-01T11:00:00.000Z", "note": "entry j1 sent again"},
    {"remote_id": "pd3", "batch": "b", "model": KLING, "remote_status": "failed",
     "price_if_ours_micro": 366_700, "price_if_ours_usd": 0.3667, "free": True,
     "created_at": "2026-03-01T12:00:00.000Z", "note": None},
]  # fmt: skip
B_UP_TO = 366_700 + 105_060  # pd3 is free: Krea failed it, so it costs nothing even if ours


def spec(batch: str, entry_id: str, model: str, price: int, seq: int) -> JobSpec:
    request = {"prompt": f"{entry_id}, slow dolly", "duration": 5}
    key = job_key(batch, entry_id, model, request)
    return JobSpec(key, batch, entry_id, model, request, price, f"{batch}/{entry_id}.mp4", seq)


async def send(ledger: Ledger, key: str, remote_id: str, *, done: bool) -> None:
    """Walk a job through real transitions: sent, and (when ``done``) completed and downloaded."""
    await ledger.transition(key, S.SUBMITTING, expect=S.PENDING, cause="t", attempts=1)
    status = "completed" if done else "processing"
    await ledger.transition(
        key, S.SUBMITTED, expect=S.SUBMITTING, cause="t", remote_id=remote_id, remote_status=status
    )
    if done:
        await ledger.transition(key, S.COMPLETED, expect=S.SUBMITTED, cause="t")
        await ledger.transition(key, S.DOWNLOADING, expect=S.COMPLETED, cause="t")
        await ledger.transition(key, S.DONE, expect=S.DOWNLOADING, cause="t", bytes=1, sha256="a")


async def build(path: Path, unattributed: list[Unattributed]) -> Path:
    """The ledger of the module docstring, with ``unattributed`` recorded."""
    b = [spec("b", f"j{i}", KLING, 366_700, i) for i in range(2)]
    c = [spec("c", "k0", ODD, 1_000_000, 0)]
    async with Ledger.open(path) as ledger:
        for name in ("b", "c", "e"):
            await ledger.save_batch(Batch(name, f"/{name}.yaml", "sha", "/out"))
        await ledger.sync_plan("b", b, {s.key: 5.0 for s in b})
        await ledger.sync_plan("c", c, {})
        await send(ledger, b[0].key, "r0", done=True)
        await send(ledger, b[1].key, "r1", done=False)
        await send(ledger, c[0].key, "rc", done=True)
        await ledger.add_orphan(
            "b", "old-orphan", remote_status="completed", price_micro=105_060,
            created_at="2026-03-01T07:00:00.000Z", model=GROK, cause="t",
        )  # fmt: skip
        await ledger.add_unattributed(unattributed)
    return path


@pytest.fixture
async def shared(tmp_path: Path) -> Path:
    """The ledger with the unattributed rows."""
    return await build(tmp_path / "shared.db", UNATTRIBUTED)


@pytest.fixture
async def plain(tmp_path: Path) -> Path:
    """The same jobs, and no unattributed rows."""
    return await build(tmp_path / "plain.db", [])


async def render(path: Path, fmt: str, batch: str | None = "b") -> str:
    async with Ledger.open(path, readonly=True) as ledger:
        return await reports.render(ledger, batch, fmt)


async def summary(path: Path, batch: str) -> list[str]:
    async with Ledger.open(path, readonly=True) as ledger:
        return (await reports.batch_summary(ledger, batch)).splitlines()


def without_unattributed(document: dict[str, Any]) -> dict[str, Any]:
    """The report less what this feature adds, and less what differs between two files."""
    totals = {k: v for k, v in document["totals"].items() if k not in TOTAL_KEYS}
    skip = ("generated_at", "ledger", "possible_duplicates")
    return {**{k: v for k, v in document.items() if k not in skip}, "totals": totals}


async def test_json_itemises_a_batchs_possible_duplicates_and_counts_foreign_jobs(
    shared: Path,
) -> None:
    """Each possible duplicate exactly; the "up to" total leaves the free one out."""
    doc = json.loads(await render(shared, "json"))
    assert doc["possible_duplicates"] == B_DUPLICATES
    totals = doc["totals"]
    assert {k: totals[k] for k in TOTAL_KEYS} == {
        "possible_duplicates": 3,
        "possible_duplicate_micro": B_UP_TO,
        "possible_duplicate_usd": 0.47176,
        "foreign_jobs": 2,  # f2 (seen by b's run) and f1 (no batch); not f3 (c's)
    }
    assert totals["billed_micro"] == 366_700 + 105_060  # the done job and the billed orphan
    assert (totals["orphans"], totals["orphan_billed_micro"]) == (1, 105_060)


@pytest.mark.parametrize(
    ("batch", "remote_ids", "up_to_micro", "foreign"),
    [
        (None, ["pd4", HOSTILE, "pd2", "pd3"], 1_000_000 + B_UP_TO, 3),
        ("c", ["pd4"], 1_000_000, 2),
        ("e", [], 0, 1),
    ],
)
async def test_each_batch_holds_its_own_duplicates_and_the_foreign_jobs_of_no_batch(
    shared: Path, batch: str | None, remote_ids: list[str], up_to_micro: int, foreign: int
) -> None:
    """Every batch: all of them; one batch: its duplicates, foreign jobs of it or of none."""
    doc = json.loads(await render(shared, "json", batch))
    assert [d["remote_id"] for d in doc["possible_duplicates"]] == remote_ids
    totals = doc["totals"]
    assert (totals["possible_duplicates"], totals["possible_duplicate_micro"]) == (
        len(remote_ids), up_to_micro,
    )  # fmt: skip
    assert totals["foreign_jobs"] == foreign


@pytest.mark.parametrize("batch", [None, "b", "c", "e"])
async def test_no_other_figure_moves(shared: Path, plain: Path, batch: str | None) -> None:
    """Billed, in flight, orphan spend, every group and day: the same with or without them."""
    with_rows = json.loads(await render(shared, "json", batch))
    without = json.loads(await render(plain, "json", batch))
    assert without_unattributed(with_rows) == without_unattributed(without)
    assert with_rows["totals"]["billed_micro"] == without["totals"]["billed_micro"]
    for group in with_rows["by_batch"] + with_rows["by_model"] + with_rows["by_status"]:
        assert not set(TOTAL_KEYS) & set(group)


async def test_csv_rows_add_up_to_the_up_to_total_and_leave_billed_alone(
    shared: Path, plain: Path
) -> None:
    """One row per possible duplicate; only the new columns differ from the plain ledger's."""
    rows = list(csv.DictReader(io.StringIO(await render(shared, "csv"))))
    (total,) = [r for r in rows if r["section"] == "total"]
    assert {k: total[k] for k in TOTAL_KEYS} == {
        "possible_duplicates": "3", "possible_duplicate_micro": str(B_UP_TO),
        "possible_duplicate_usd": "0.471760", "foreign_jobs": "2",
    }  # fmt: skip
    duplicates = [r for r in rows if r["section"] == "possible_duplicate"]
    assert [r["name"] for r in duplicates] == [HOSTILE, "pd2", "pd3"]
    assert [r["possible_duplicate_micro"] for r in duplicates] == ["366700", "105060", "0"]
    assert sum(int(r["possible_duplicate_micro"]) for r in duplicates) == B_UP_TO
    assert {(r["billed_micro"], r["in_flight_micro"], r["jobs"]) for r in duplicates} == {
        ("", "", "")
    }
    assert duplicates[2]["note"] == (
        "price if ours 0.366700; free: Krea failed or cancelled it; batch b; model "
        f"{KLING}; Krea status when seen failed; created 2026-03-01T12:00:00.000Z"
    )
    plain_rows = list(csv.DictReader(io.StringIO(await render(plain, "csv"))))
    others = [r for r in rows if r["section"] != "possible_duplicate"]
    strip = [{k: v for k, v in r.items() if k not in TOTAL_KEYS} for r in others]
    assert strip == [{k: v for k, v in r.items() if k not in TOTAL_KEYS} for r in plain_rows]


async def test_the_table_has_the_section_the_total_and_the_foreign_count(
    shared: Path, plain: Path
) -> None:
    """Headline lines, then the itemised section ending in its "up to" total."""
    text = await render(shared, "table")
    lines = text.splitlines()
    assert (
        "duplicates  up to $0.47 if ours (3 possible duplicates: another client was active; "
        "not in billed)"
    ) in lines
    assert (
        "foreign     2 jobs on the account made by another client; never touched, not counted"
    ) in lines
    section = text.split(TITLE + "\n", 1)[1].splitlines()
    cells = [re.split(r"\s{2,}", line) for line in section]
    assert cells[0] == ["remote id", "batch", "model", "Krea status when seen", "price if ours",
                        "created at"]  # fmt: skip
    assert cells[2:] == [
        [HOSTILE, "b", KLING, "queued", "$0.37", "2026-03-01T10:00:00.000Z"],
        ["pd2", "b", GROK, "completed", "$0.11", "2026-03-01T11:00:00.000Z"],
        ["pd3", "b", KLING, "failed", "free (failed)", "2026-03-01T12:00:00.000Z"],
        ["total", "up to $0.47"],
    ]
    assert "$0.47 (2 jobs)" in text  # billed: the done job and the orphan, as before
    bare = await render(plain, "table")
    assert TITLE not in bare
    assert not [line for line in bare.splitlines() if line.startswith(("duplicates", "foreign"))]


async def test_html_shows_them_escaped(shared: Path) -> None:
    """The page has the cards and the section; the hostile remote id is escaped."""
    page = await render(shared, "html")
    assert f"<h2>{TITLE}</h2>" in page
    assert (
        "duplicates<b>up to $0.47 if ours (3 possible duplicates: another client was active; "
        "not in billed)</b>"
    ) in page
    assert (
        "foreign<b>2 jobs on the account made by another client; never touched, not counted</b>"
    ) in page
    assert "<td>&lt;script&gt;pd1&lt;/script&gt;</td>" in page
    assert "<script" not in page.lower()
    assert "<td>free (failed)</td>" in page
    assert "<td>up to $0.47</td>" in page


async def test_the_end_of_run_summary_says_them_only_when_there_are_some(
    shared: Path, plain: Path
) -> None:
    """Two lines after the spend lines, each only when non-zero; the spend lines unchanged."""
    lines, bare = await summary(shared, "b"), await summary(plain, "b")
    assert lines == [
        *bare,
        "possible duplicates: 3 remote jobs a lost POST of ours may have made (unattributable: "
        "another client was active), up to $0.47 if ours; not in billed",
        "foreign activity: 2 jobs on the account made by another client; never touched, "
        "not counted",
    ]
    assert not [line for line in bare if line.startswith(("possible duplicates", "foreign"))]
    only_foreign = await summary(shared, "e")
    assert only_foreign[1:] == [
        "foreign activity: 1 job on the account made by another client; never touched, not counted"
    ]


async def test_status_counts_them_per_batch(shared: Path) -> None:
    """JSON and table: possible duplicates by batch, foreign jobs of the batch or of none."""
    data = json.loads(await commands.status(shared, None, "json"))
    counts = {d["batch"]: (d["orphans"], d["possible_duplicates"], d["foreign"]) for d in data}
    assert counts == {"b": (1, 3, 2), "c": (0, 1, 2), "e": (0, 0, 1)}
    assert data[0]["states"] == {"submitted": 1, "done": 1}  # the orphan is no job of b's
    text = await commands.status(shared, None, "table")
    header, _, *rows = [re.split(r"\s{2,}", line) for line in text.splitlines()]
    assert header == ["batch", "submitted", "done", "orphans", "possible dups", "foreign",
                      "superseded", "oldest in flight"]  # fmt: skip
    assert rows == [
        ["b", "1", "1", "1", "3", "2", "0", "-"],
        ["c", "0", "1", "0", "1", "2", "0", "-"],
        ["e", "0", "0", "0", "0", "1", "0", "-"],
    ]
    assert max(len(line) for line in text.splitlines()) <= 100
    [only_c] = json.loads(await commands.status(shared, "c", "json"))
    assert (only_c["possible_duplicates"], only_c["foreign"]) == (1, 2)


async def test_a_ledger_older_than_the_table_reads_as_having_none(shared: Path) -> None:
    """Readers never migrate: a ledger without the table reports none, rather than failing."""
    with sqlite3.connect(shared) as db:
        db.execute("DROP TABLE unattributed")
    doc = json.loads(await render(shared, "json", None))
    assert ({k: doc["totals"][k] for k in TOTAL_KEYS}, doc["possible_duplicates"]) == (
        dict.fromkeys(TOTAL_KEYS, 0), [],
    )  # fmt: skip
    data = json.loads(await commands.status(shared, "b", "json"))
    assert (data[0]["possible_duplicates"], data[0]["foreign"]) == (0, 0)


async def test_a_possible_duplicate_of_no_batch_is_in_no_batchs_share(tmp_path: Path) -> None:
    """Only foreign jobs of no batch go to every batch; such a duplicate shows ledger-wide."""
    lone = Unattributed("pd0", "possible_duplicate", None, None, 366_700, None, "2026-03-01Z")
    path = await build(tmp_path / "lone.db", [lone])
    ledger_wide = json.loads(await render(path, "json", None))
    assert [d["remote_id"] for d in ledger_wide["possible_duplicates"]] == ["pd0"]
    assert ledger_wide["totals"]["possible_duplicate_micro"] == 366_700
    assert json.loads(await render(path, "json", "e"))["possible_duplicates"] == []
    [e] = json.loads(await commands.status(path, "e", "json"))
    assert (e["possible_duplicates"], e["foreign"]) == (0, 0)
    table = await render(path, "table", None)
    assert ["pd0", "-", "-", "-", "$0.37", "2026-03-01Z"] in [
        re.split(r"\s{2,}", line) for line in table.splitlines()
    ]
