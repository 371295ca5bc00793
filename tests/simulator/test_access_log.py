"""`orchestrator simulate --access-log`: one stderr line per request, never a token (issue 14).

The simulator runs as a real subprocess, as a user starts it: its banner on stdout gives the URL,
SIGTERM stops it, and everything it wrote to stderr is read once it has exited.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp

TOKEN = "sim-access-log-secret-7f3a"
WRONG_TOKEN = "sim-access-log-wrong-91c2"
#: An access line: method, path, status, duration, e.g. ``GET /jobs 200 0.8ms``.
LINE = re.compile(r"\b(GET|POST|DELETE|PUT|HEAD) (/\S*) (\d{3}) \d+(\.\d+)?ms\b")


async def _run_simulator(*flags: str) -> str:
    """Start ``orchestrator simulate``, send two requests, stop it; return its stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KREA_SIM_")}
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "orchestrator", "simulate", "--port", "0", "--tokens", TOKEN],
        *flags,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = await _banner_url(proc.stdout)
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{url}/jobs", params={"limit": "5"}, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as listed:
                assert listed.status == 200
            async with http.post(
                f"{url}/generate/video/kling/kling-2.5",
                json={"prompt": "a fox"},
                headers={"Authorization": f"Bearer {WRONG_TOKEN}"},
            ) as refused:
                assert refused.status == 401
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 4)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    return err.decode()


async def _banner_url(stdout: asyncio.StreamReader) -> str:
    while line := (await asyncio.wait_for(stdout.readline(), 4)).decode():
        if found := re.search(r"listening on (http://\S+)", line):
            return found.group(1)
    raise AssertionError("the simulator exited without printing its banner")


async def test_access_log_prints_one_line_per_request_without_tokens() -> None:
    """With --access-log: `GET /jobs 200 …ms` and `POST /generate/… 401 …ms`, and no token."""
    err = await _run_simulator("--access-log")
    lines = [m.group(1, 2, 3) for m in LINE.finditer(err)]
    assert lines == [
        ("GET", "/jobs", "200"),
        ("POST", "/generate/video/kling/kling-2.5", "401"),
    ], err
    assert len(err.splitlines()) == 3, err  # the two lines, then "simulator stopped"
    assert TOKEN not in err
    assert WRONG_TOKEN not in err
    assert "Bearer" not in err
    assert "Authorization" not in err


async def test_no_access_log_without_the_flag() -> None:
    """Without --access-log a request leaves nothing on stderr."""
    err = await _run_simulator()
    assert LINE.search(err) is None, err
    assert err.strip() == "simulator stopped", err
