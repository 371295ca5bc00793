"""`orchestrator view` on a 100,000-job ledger: the batches page and the first gallery page.

The ledger is the one ``interactive`` builds (a run's leavings, in its mix of states). The view
runs as users run it, one process (``orchestrator view --port 0``); each page is asked for
``repeats`` times and the median kept (the first ask, cold, is kept too). The gallery's first
page is what a browser waits for before it shows a clip: the HTML and its first JSON page of
cards. Memory is the server's peak RSS (``VmHWM``) after every request, from /proc.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import aiohttp

from bench import interactive, workload
from bench.config import Plan
from bench.procs import orchestrator_command
from bench.scenarios import Figures

#: Targets of issue 15: each page under 1 s, the server under 200 MB.
PAGE_S, RSS_MB = 1.0, 200.0


async def _get(session: aiohttp.ClientSession, url: str) -> float:
    """Seconds to read the whole answer of ``url`` (which must be 200)."""
    started = time.perf_counter()
    async with session.get(url) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    return time.perf_counter() - started


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _measure(base: str, batch: str, repeats: int) -> dict[str, list[float]]:
    pages = {
        "batches_page": [f"{base}/"],
        "gallery_first_page": [f"{base}/batches/{batch}", f"{base}/api/batches/{batch}/jobs"],
        "gallery_search": [f"{base}/api/batches/{batch}/jobs?q=harbour&sort=price"],
    }
    times: dict[str, list[float]] = {name: [] for name in pages}
    async with aiohttp.ClientSession() as session:
        for _ in range(repeats + 1):  # the first is the cold one
            for name, urls in pages.items():
                times[name].append(sum([await _get(session, url) for url in urls]))
    return times


async def view(plan: Plan, parent: Path, jobs: int = 100_000) -> Figures:
    """Page times and the server's peak memory on a ledger of ``jobs`` jobs."""
    folder = workload.ensure_dir(parent / f"view-{jobs}")
    _, ledger = await interactive.build(folder, jobs)
    batch = f"interactive{jobs}"
    proc = await asyncio.create_subprocess_exec(
        *orchestrator_command(), "view", "--ledger", str(ledger), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        base = line.rsplit(" at ", 1)[1].strip().rstrip("/")
        times = await _measure(base, batch, plan.interactive_repeats)
        rss = _peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        await proc.wait()
    figures: Figures = {"jobs": jobs, "peak_rss_mb": round(rss, 1), "rss_ok": rss < RSS_MB}
    for name, walls in times.items():
        median = statistics.median(walls[1:])
        rounded = [round(w, 3) for w in walls]
        figures[name] = {"cold_s": rounded[0], "median_s": round(median, 3), "walls_s": rounded,
                         "ok": median < PAGE_S}  # fmt: skip
    return figures
