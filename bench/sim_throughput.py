"""How many requests per second the Krea simulator serves with 10,000 jobs on one core.

Starts ``orchestrator simulate`` in a subprocess pinned to one CPU (the client gets another when
the machine has two), creates the jobs through the API, moves the virtual clock so a share of
them have completed (their answers then carry media URLs), and hammers ``GET /jobs/{id}`` and
``GET /jobs?limit=100`` with random cursors from concurrent client tasks. Prints requests/s per
phase. The target is >= 1,000 req/s; numbers on a noisy VM are orders of magnitude.

    .venv/bin/python bench/sim_throughput.py [--jobs 10000] [--seconds 5] [--workers 32] [--json]

``python -m bench`` runs it in a child process with ``--json`` (it pins CPUs, which must not
leak into the other scenarios) and reports the two rates as context for the naive client's load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp

TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def start_server() -> tuple[subprocess.Popen[str], str]:
    """The simulator in a child process; returns it and its URL (read from its banner)."""
    code = "from orchestrator.cli.simulate import simulate; simulate()"
    args = ["--port", "0", "--time-scale", "0", "--concurrency", "50", "--backlog", "1000000"]
    args += ["--balance-usd", "100000000", "--seed", "1"]
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    first = child.stdout.readline()
    url = first.split(" on ", 1)[1].split()[0]
    _pin(child.pid, 0)
    _pin(os.getpid(), 1)
    return child, url


def _pin(pid: int, cpu: int) -> None:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) > cpu:
        os.sched_setaffinity(pid, {cpus[cpu]})


async def create_jobs(http: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    """POST ``count`` jobs, 64 at a time; returns their ids."""
    ids: list[str] = []
    body = {"prompt": "benchmark clip"}

    async def one() -> None:
        async with http.post(f"{url}/generate/video/kling/kling-2.5", json=body) as response:
            ids.append((await response.json())["job_id"])

    for start in range(0, count, 64):
        await asyncio.gather(*(one() for _ in range(min(64, count - start))))
    return ids


async def hammer(
    seconds: float, workers: int, request: Callable[[random.Random], Awaitable[None]]
) -> float:
    """Run ``request`` from ``workers`` tasks for ``seconds``; returns requests per second."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(seed: int) -> None:
        nonlocal done
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            await request(rng)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(workers)))
    return done / (time.perf_counter() - started)


async def run(jobs: int, seconds: float, workers: int, quiet: bool = False) -> dict[str, float]:
    """Start the simulator, measure, stop it; returns requests/s by phase."""
    child, url = start_server()
    try:
        connector = aiohttp.TCPConnector(limit=workers)
        async with aiohttp.ClientSession(headers=HEADERS, connector=connector) as http:
            return await measure(http, url, jobs, seconds, workers, say=_quiet if quiet else print)
    finally:
        child.terminate()
        child.wait(10)


def _quiet(*args: object) -> None:
    pass


async def measure(
    http: aiohttp.ClientSession,
    url: str,
    jobs: int,
    seconds: float,
    workers: int,
    say: Callable[..., None] = print,
) -> dict[str, float]:
    started = time.perf_counter()
    ids = await create_jobs(http, url, jobs)
    rates = {"POST /generate": len(ids) / (time.perf_counter() - started)}
    say(f"created {len(ids)} jobs: {rates['POST /generate']:,.0f} POST/s")
    async with http.post(f"{url}/_sim/advance", json={"seconds": 40_000}) as response:
        await response.read()
    async with http.get(f"{url}/_sim/stats") as response:
        say(f"jobs by status after advancing the clock: {(await response.json())['job_statuses']}")
    async with http.get(f"{url}/jobs", params={"limit": "1000"}) as response:
        stamps = [item["created_at"] for item in (await response.json())["items"]]

    async def get_job(rng: random.Random) -> None:
        async with http.get(f"{url}/jobs/{rng.choice(ids)}") as response:
            assert response.status == 200
            await response.read()

    async def list_page(rng: random.Random) -> None:
        params = {"limit": "100", "cursor": rng.choice(stamps)}
        async with http.get(f"{url}/jobs", params=params) as response:
            assert response.status == 200
            await response.read()

    for name, request in (("GET /jobs/{id}", get_job), ("GET /jobs?limit=100", list_page)):
        rate = await hammer(seconds, workers, request)
        rates[name] = rate
        say(f"{name:<22} {rate:>8,.0f} req/s  ({workers} concurrent clients, {jobs} jobs)")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="Print only a JSON object of rates.")
    options = parser.parse_args()
    rates = asyncio.run(run(options.jobs, options.seconds, options.workers, quiet=options.json))
    if options.json:
        print(json.dumps(rates))


if __name__ == "__main__":
    main()
