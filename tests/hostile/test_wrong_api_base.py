"""A mistyped --api-base, or a server that is not Krea's: one clear error, and nothing poisoned.

A 404 on a route every Krea server has says the URL is wrong, not that the job is: the run stops
with the full URL in its message, rejects nothing, and the same command with the right URL then
does every job. A server that is not Krea's (a static file server, a page that answers 200 with
HTML to everything) gets the same treatment instead of an internal error.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.jobs import JobState
from tests.conftest import StartSimulator
from tests.e2e.cli_support import write_manifest
from tests.hostile.support import Finished, cli, lines_until, run_cli
from tests.integration.pipeline_support import ledger_rows

S = JobState
KEY = "sk-test-wrong-base"


def _run(tmp_path: Path, base: str, *extra: str) -> list[str]:
    return [
        "run", str(tmp_path / "jobs.yaml"), "--api-base", base, "--progress", "plain",
        "--ledger", str(tmp_path / "ledger.db"), "--out", str(tmp_path / "out"),
        "--time-scale", "1000", *extra,
    ]  # fmt: skip


async def _cli(tmp_path: Path, base: str, *extra: str) -> Finished:
    return await run_cli(_run(tmp_path, base, *extra), env={**os.environ, "KREA_API_KEY": KEY})


def _one_clear_error(done: Finished, url: str) -> None:
    assert done.code == 4, done.err[-2000:]
    (line,) = [line for line in done.err.splitlines() if line.startswith("Error:")]
    assert url in line, line
    assert "--api-base" in line
    assert "internal error" not in done.err
    assert "Traceback" not in done.err


async def test_a_wrong_prefix_stops_the_run_and_rejects_nothing(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """`--api-base URL/v1`: exit 4 naming the whole URL; the right URL then does every job."""
    sim = await simulator(time_scale=1000.0)
    write_manifest(tmp_path, 2)
    wrong = await _cli(tmp_path, f"{sim.url}/v1")
    _one_clear_error(wrong, f"GET {sim.url}/v1/jobs answered HTTP 404")
    assert {row.state for row in await ledger_rows(tmp_path / "ledger.db", "e2e")} == {S.PENDING}
    right = await _cli(tmp_path, sim.url)
    assert right.code == 0, right.err[-2000:]
    assert "2 of 2 jobs have verified files" in right.out


async def test_a_wrong_prefix_on_a_post_leaves_the_job_pending(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """With a floor already in the ledger the first request is the POST: its 404 rejects nothing."""
    sim = await simulator(time_scale=1000.0)
    write_manifest(tmp_path, 1)
    assert (await _cli(tmp_path, sim.url)).code == 0
    write_manifest(tmp_path, 2)
    wrong = await _cli(tmp_path, f"{sim.url}/v1")
    _one_clear_error(wrong, f"POST {sim.url}/v1/generate/video/kling/kling-2.5 answered HTTP 404")
    states = {row.entry_id: row.state for row in await ledger_rows(tmp_path / "ledger.db", "e2e")}
    assert states == {"clip0000": S.DONE, "clip0001": S.PENDING}
    assert sim.stats()["jobs_created"] == 1
    right = await _cli(tmp_path, sim.url)
    assert right.code == 0, right.err[-2000:]
    assert "2 of 2 jobs have verified files" in right.out


class _Html200(http.server.BaseHTTPRequestHandler):
    """A server that answers every request with a 200 HTML page (a captive portal, a proxy)."""

    def _page(self) -> None:
        body = b"<!doctype html><title>Welcome</title><p>Please sign in."
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _page

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on a port the OS picks, in a thread; its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("handler", "answer"),
    [
        (http.server.SimpleHTTPRequestHandler, "answered HTTP 404 Not Found (text/html"),
        (_Html200, "answered only unreadable answers, the last HTTP 200 with text/html"),
    ],
    ids=["file-server", "html-200"],
)
async def test_a_server_that_is_not_krea_is_a_clear_error(
    tmp_path: Path, handler: type[http.server.BaseHTTPRequestHandler], answer: str
) -> None:
    """`python -m http.server`, or HTML 200s: exit 4 naming URL and answer; no job half-sent."""
    write_manifest(tmp_path, 2)
    with _serving(handler) as base:
        done = await _cli(tmp_path, base)
    _one_clear_error(done, f"GET {base}/jobs {answer}")
    assert {row.state for row in await ledger_rows(tmp_path / "ledger.db", "e2e")} == {S.PENDING}


async def test_cancel_with_a_wrong_prefix_touches_no_job(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """`cancel` against `URL/v1`: exit 4 naming the URL; no job is marked, nothing is deleted."""
    sim = await simulator(time_scale=0.0)  # jobs stay in flight
    write_manifest(tmp_path, 2)
    run = await asyncio.create_subprocess_exec(
        *cli(*_run(tmp_path, sim.url, "--progress", "json")),
        env={**os.environ, "KREA_API_KEY": KEY}, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert run.stderr is not None
    await lines_until(run.stderr, '"new": "submitted"')
    await lines_until(run.stderr, '"new": "submitted"')
    run.send_signal(signal.SIGINT)
    await run.wait()
    wrong = await run_cli(
        ["cancel", "--batch", "e2e", "--ledger", str(tmp_path / "ledger.db"),
         "--api-base", f"{sim.url}/v1"],
        env={**os.environ, "KREA_API_KEY": KEY},
    )  # fmt: skip
    _one_clear_error(wrong, f"GET {sim.url}/v1/jobs answered HTTP 404")
    assert {row.state for row in await ledger_rows(tmp_path / "ledger.db", "e2e")} == {S.SUBMITTED}
    assert "DELETE /jobs/{id}" not in sim.stats()["requests"]
