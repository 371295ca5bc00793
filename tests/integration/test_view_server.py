"""`orchestrator view` over HTTP: a real ledger from a simulated run, aiohttp's test client."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from orchestrator import errors
from orchestrator.ledger import Batch, Ledger
from orchestrator.ledger.view_queries import SORTS, PageQuery
from orchestrator.view.app import make_app
from orchestrator.view.review import RerollArgv
from tests.e2e.cli_support import orchestrator
from tests.integration.pipeline_support import Outcome, run_manifest

HOSTILE = "<script>alert('x')</script> & <img src=x onerror=alert(1)>"
MANIFEST = f"""batch: b
defaults:
  model: kling/kling-2.5
  duration: 5
jobs:
  - id: plain
    prompt: a calm lake at dawn
  - id: hostile
    prompt: "{HOSTILE}"
  - id: waves
    prompt: waves on black rocks
    takes: 3
"""


@pytest.fixture
async def made(simulator, tmp_path: Path) -> Outcome:
    """A finished batch of 5 verified clips (one with a hostile prompt), as a run leaves it."""
    sim = await simulator(time_scale=1000)
    outcome = await run_manifest(sim, tmp_path, MANIFEST)
    assert outcome.summary.exit_code == 0
    return outcome


@asynccontextmanager
async def serving(ledger: Path, reroll: RerollArgv | None = None) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_app(ledger, reroll_argv=reroll))) as client:
        yield client


def same_origin(client: TestClient) -> dict[str, str]:
    return {"Origin": str(client.make_url("")).rstrip("/")}


async def cards(client: TestClient, query: str = "") -> list[dict[str, Any]]:
    response = await client.get(f"/api/batches/b/jobs{query}")
    assert response.status == 200, await response.text()
    return list((await response.json())["cards"])


async def key_of(client: TestClient, entry: str) -> str:
    return next(c["key"] for c in await cards(client) if c["id"] == entry)


def table_dump(ledger: Path) -> list[Any]:
    """Every row of jobs, events and marks: what "nothing changed" compares."""
    with sqlite3.connect(ledger) as db:
        return [db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("jobs", "marks")]


async def test_pages_and_cards_show_the_batch(made: Outcome) -> None:
    """Batches, gallery, job and report pages answer; the cards hold every clip, takes grouped."""
    async with serving(made.ledger_path) as client:
        index = await client.get("/")
        assert index.status == 200
        assert 'data-batch="b"' in await index.text()
        assert (await client.get("/batches/b")).status == 200
        shown = await cards(client)
        assert [c["id"] for c in shown] == ["plain", "hostile", "waves_t1", "waves_t2", "waves_t3"]
        assert {c["group"] for c in shown if c["id"].startswith("waves")} == {"waves"}
        assert all(c["state"] == "done" and c["playable"] for c in shown)
        job = await client.get(f"/jobs/{shown[0]['key']}")
        text = await job.text()
        async with Ledger.open(made.ledger_path, readonly=True) as ledger:
            record = await ledger.job(shown[0]["key"])
            events = await ledger.events(key=shown[0]["key"])
        assert record is not None
        assert record.sha256 in text
        assert text.count("<tr>") == len(events) + 1  # every event of its history, and a header
        report = await client.get("/batches/b/report")
        assert report.status == 200
        assert "<svg" in await report.text()
        for missing in ("/batches/nope", "/jobs/nope", "/api/batches/nope/jobs", "/clips/nope"):
            assert (await client.get(missing)).status == 404, missing


async def test_filters_and_search(made: Outcome) -> None:
    """State, model and mark filters and the prompt search narrow the cards."""
    async with serving(made.ledger_path) as client:
        assert [c["id"] for c in await cards(client, "?q=CALM")] == ["plain"]
        assert await cards(client, "?q=%25") == []  # a LIKE wildcard is searched as text
        assert len(await cards(client, "?state=done&model=kling/kling-2.5")) == 5
        assert await cards(client, "?state=failed") == []
        assert (await client.get("/api/batches/b/jobs?state=nonsense")).status == 400
        assert (await client.get("/api/batches/b/jobs?after=garbage")).status == 400


async def test_a_page_refreshes_the_cards_it_names(made: Outcome) -> None:
    """``keys=`` answers those cards alone (how the gallery follows jobs still in flight)."""
    async with serving(made.ledger_path) as client:
        every = await cards(client, "")
        two = [every[1]["key"], every[3]["key"]]
        assert [c["key"] for c in await cards(client, f"?keys={','.join(two)}")] == two
        assert (await client.get("/api/batches/b/jobs?keys=../x")).status == 400
        too_many = ",".join(f"{n:032x}" for n in range(201))
        assert (await client.get(f"/api/batches/b/jobs?keys={too_many}")).status == 400


@pytest.mark.parametrize("sort", list(SORTS))
async def test_keyset_pages_walk_every_job_once(made: Outcome, sort: str) -> None:
    """Pages of 2 in each order cover every job exactly once, in the order of one big page."""
    async with Ledger.open(made.ledger_path) as ledger:
        whole = [r["key"] for r in await ledger.view_page(PageQuery("b", sort=sort, limit=100))]
        walked: list[str] = []
        after = None
        while True:
            rows = await ledger.view_page(PageQuery("b", sort=sort, after=after, limit=2))
            walked += [r["key"] for r in rows]
            if len(rows) < 2:
                break
            after = tuple(rows[-1][column.split(".")[-1]] for column, _ in SORTS[sort])
    assert walked == whole
    assert len(whole) == 5


async def test_marks_survive_a_restart_and_unmark(made: Outcome) -> None:
    """A pick and a reject are in the ledger: a new server shows them; null unmarks."""
    async with serving(made.ledger_path) as client:
        plain, hostile = await key_of(client, "plain"), await key_of(client, "hostile")
        for key, mark in ((plain, "pick"), (hostile, "reject")):
            response = await client.post(
                f"/api/jobs/{key}/mark", json={"mark": mark}, headers=same_origin(client)
            )
            assert response.status == 200
            assert (await response.json())["mark"] == mark
        bad = await client.post(
            f"/api/jobs/{plain}/mark", json={"mark": "love"}, headers=same_origin(client)
        )
        assert bad.status == 400
    async with serving(made.ledger_path) as client:
        marks = {c["id"]: c["mark"] for c in await cards(client)}
        assert marks["plain"] == "pick"
        assert marks["hostile"] == "reject"
        assert [c["id"] for c in await cards(client, "?mark=reject")] == ["hostile"]
        await client.post(
            f"/api/jobs/{hostile}/mark", json={"mark": None}, headers=same_origin(client)
        )
        assert {c["id"]: c["mark"] for c in await cards(client)}["hostile"] is None
        unknown = await client.post(
            "/api/jobs/nope/mark", json={"mark": "pick"}, headers=same_origin(client)
        )
        assert unknown.status == 404


async def test_a_range_request_gets_206_and_those_bytes(made: Outcome) -> None:
    """The browser can seek: bytes 10-99 of the verified file, as 206 Partial Content."""
    async with serving(made.ledger_path) as client:
        key = await key_of(client, "plain")
        response = await client.get(f"/clips/{key}", headers={"Range": "bytes=10-99"})
        assert response.status == 206
        data = (made.out_dir / "b" / "plain.mp4").read_bytes()
        assert await response.read() == data[10:100]
        assert response.headers["Content-Range"] == f"bytes 10-99/{len(data)}"
        assert response.headers["Content-Type"] == "video/mp4"
        poster = await client.get(f"/posters/{key}")
        assert poster.status == 200
        assert poster.headers["Content-Type"] in ("image/jpeg", "image/svg+xml")


@pytest.mark.parametrize(
    "path",
    [
        "/clips/../../etc/passwd",
        "/clips/..%2F..%2Fetc%2Fpasswd",
        "/clips/%2e%2e/%2e%2e/etc/passwd",
        "/clips/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/clips/%252e%252e%252fetc%252fpasswd",
        "/static/..%2f..%2fapp.py",
        "/static/%2e%2e/app.py",
        "/static/app.py",
        "/posters/..%5c..%5cetc%5cpasswd",
        "/batches/b/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
    ],
)
async def test_traversal_in_any_url_is_404(made: Outcome, path: str) -> None:
    """``..`` raw or percent-encoded (even twice) reaches nothing: 404."""
    async with serving(made.ledger_path) as client:
        url = URL(str(client.make_url("")).rstrip("/") + path, encoded=True)
        async with client.session.get(url) as response:
            assert response.status == 404


async def test_a_link_out_of_the_output_folder_is_not_served(made: Outcome) -> None:
    """A clip replaced by a symlink to a file outside the batch's folder gets 404."""
    secret = made.out_dir.parent / "secret.txt"
    secret.write_text("not a clip")
    clip = made.out_dir / "b" / "plain.mp4"
    clip.unlink()
    clip.symlink_to(secret)
    async with serving(made.ledger_path) as client:
        response = await client.get(f"/clips/{await key_of(client, 'plain')}")
        assert response.status == 404


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
)
async def test_a_post_from_another_origin_is_403(made: Outcome, headers: dict[str, str]) -> None:
    """Marks and rerolls come only from the server's own pages; nothing changes otherwise."""
    before = table_dump(made.ledger_path)
    async with serving(made.ledger_path, reroll=lambda b: [sys.executable, "-c", ""]) as client:
        key = await key_of(client, "plain")
        mark = await client.post(f"/api/jobs/{key}/mark", json={"mark": "pick"}, headers=headers)
        assert mark.status == 403
        reroll = await client.post("/api/batches/b/reroll", headers=headers)
        assert reroll.status == 403
        assert (await (await client.get("/api/batches/b/reroll")).json())["running"] is False
    assert table_dump(made.ledger_path) == before


async def test_another_host_name_is_refused(made: Outcome) -> None:
    """DNS rebinding: a page of another site resolved to 127.0.0.1 reads nothing."""
    async with serving(made.ledger_path) as client:
        response = await client.get("/", headers={"Host": "evil.example:8765"})
        assert response.status == 403
        forged = {"Host": "evil.example", "Origin": "http://evil.example"}
        post = await client.post("/api/jobs/x/mark", json={"mark": "pick"}, headers=forged)
        assert post.status == 403


async def test_no_get_changes_anything(made: Outcome) -> None:
    """Every route read with GET (and the POST routes too) leaves the ledger as it was."""
    before = table_dump(made.ledger_path)
    async with serving(made.ledger_path, reroll=lambda b: [sys.executable, "-c", ""]) as client:
        key = await key_of(client, "plain")
        for path in ("/", "/batches/b", f"/jobs/{key}", f"/clips/{key}", f"/posters/{key}",
                     "/batches/b/report", "/api/batches/b/jobs", "/api/batches/b/reroll",
                     "/static/view.js", "/static/view.css"):  # fmt: skip
            assert (await client.get(path)).status == 200, path
        assert (await client.get(f"/api/jobs/{key}/mark?mark=pick")).status == 405
        assert (await (await client.get("/api/batches/b/reroll")).json())["running"] is False
    assert table_dump(made.ledger_path) == before


async def test_hostile_prompt_is_escaped(made: Outcome) -> None:
    """A prompt of HTML is shown as text on the job page, never as markup."""
    async with serving(made.ledger_path) as client:
        page = await (await client.get(f"/jobs/{await key_of(client, 'hostile')}")).text()
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;img" in page


async def test_reroll_runs_the_command_and_reports_its_end(made: Outcome) -> None:
    """The button's POST runs ``reroll_argv(batch)``; its status gives exit code and output."""

    def argv(batch: str) -> list[str]:
        return [sys.executable, "-c", f"print('rerolling {batch}'); raise SystemExit(3)"]

    async with serving(made.ledger_path, reroll=argv) as client:
        started = await client.post("/api/batches/b/reroll", headers=same_origin(client))
        assert started.status == 202
        status = await (await client.get("/api/batches/b/reroll?wait=30")).json()
        assert status["running"] is False
        assert status["exit_code"] == 3
        assert status["output"] == ["rerolling b"]


async def test_without_a_reroll_command_the_page_shows_it(made: Outcome) -> None:
    """No reroll command given: the gallery shows the command to type, the POST says 409."""
    async with serving(made.ledger_path) as client:
        page = await (await client.get("/batches/b")).text()
        assert "orchestrator reroll --batch b --ledger" in page
        refused = await client.post("/api/batches/b/reroll", headers=same_origin(client))
        assert refused.status == 409


async def test_live_stream_follows_another_connections_commit(made: Outcome) -> None:
    """The event stream sends the batches now, and again when another process commits."""
    async with serving(made.ledger_path) as client:
        response = await client.get("/api/live")
        first = json.loads((await _event(response))[len("data: ") :])
        assert [line["batch"] for line in first] == ["b"]
        assert first[0]["states"] == {"done": 5}
        async with Ledger.open(made.ledger_path) as other:
            await other.save_batch(Batch("c", "c.yaml", "0" * 64, str(made.out_dir)))
        second = json.loads((await _event(response))[len("data: ") :])
        assert [line["batch"] for line in second] == ["b", "c"]
        response.close()


async def _event(response: Any) -> str:
    while True:
        line = (await response.content.readline()).decode()
        if line.startswith("data: "):
            return line


async def test_a_missing_ledger_is_an_error_and_not_created(tmp_path: Path) -> None:
    """The view never makes an empty ledger: the app refuses, the command exits 2."""
    missing = tmp_path / "nope.db"
    with pytest.raises(errors.NoLedger):
        make_app(missing)
    proc = await asyncio.create_subprocess_exec(
        *orchestrator("view", "--ledger", str(missing)), stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == errors.EXIT_BAD_INPUT
    assert "no ledger at" in err.decode()
    assert not missing.exists()


async def test_the_command_serves_and_a_busy_port_is_one_clear_error(made: Outcome) -> None:
    """`view --port 0` prints its address; a second view on that port exits 4 with a message."""
    first = await asyncio.create_subprocess_exec(
        *orchestrator("view", "--ledger", str(made.ledger_path), "--port", "0"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert first.stdout is not None
        line = (await first.stdout.readline()).decode()
        assert line.startswith(f"Viewing {made.ledger_path} at http://127.0.0.1:")
        port = line.rsplit(":", 1)[1].strip().rstrip("/")
        second = await asyncio.create_subprocess_exec(
            *orchestrator("view", "--ledger", str(made.ledger_path), "--port", port),
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await second.communicate()
        assert second.returncode == errors.EXIT_CANNOT_RUN
        assert f"port {port} on 127.0.0.1 is in use" in err.decode()
        assert "Traceback" not in err.decode()
    finally:
        first.send_signal(2)
        await first.communicate()
    assert first.returncode == 0
