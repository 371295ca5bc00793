"""The naive client from Krea's docs: POST a job, then ``GET /jobs/{id}`` every 5 seconds.

It is given the same advantages as the orchestrator so that only the way of noticing finished
jobs differs: the same account, the same request bodies, and a cap of ``in_flight`` unfinished
jobs (the account's concurrency + backlog), so it never provokes a 429 by overfilling Krea. A
429 (which should not happen) is counted and the POST retried after one poll interval. Each
finished video is streamed to a file, and the wall time it landed is kept for the latency figure.

Times are in API seconds, divided by the simulator's time scale before sleeping, exactly as the
orchestrator's ``--time-scale`` does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.workload import MODEL, request_body

POLL_S = 5.0
TERMINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass
class NaiveResult:
    """What the naive client saw."""

    done: list[tuple[str, float]] = field(default_factory=list)  #: (job_id, wall epoch s)
    noticed: list[tuple[str, float]] = field(default_factory=list)  #: poll that saw it finished
    polls: int = 0
    rate_limited: int = 0
    failed: int = 0
    poll_gaps_api_s: list[float] = field(default_factory=list)  #: achieved interval per poll


class NaiveClient:
    """Runs ``jobs`` jobs through the per-job polling pattern."""

    def __init__(self, url: str, token: str, scale: float, out_dir: Path, in_flight: int) -> None:
        self.url = url
        self.scale = scale
        self.out_dir = out_dir
        self.slots = asyncio.Semaphore(in_flight)
        self.result = NaiveResult()
        self._headers = {"Authorization": f"Bearer {token}"}

    async def run(self, jobs: int) -> NaiveResult:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        connector = aiohttp.TCPConnector(limit=200)
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await asyncio.gather(*(self._one(http, index) for index in range(jobs)))
        return self.result

    async def _sleep(self, api_s: float) -> None:
        await asyncio.sleep(api_s / self.scale)

    async def _one(self, http: aiohttp.ClientSession, index: int) -> None:
        async with self.slots:
            job_id = await self._post(http, index)
            status, url = await self._poll(http, job_id)
        if status == "completed" and url:
            await self._download(http, job_id, url)
        else:
            self.result.failed += 1

    async def _post(self, http: aiohttp.ClientSession, index: int) -> str:
        while True:
            async with http.post(
                f"{self.url}/generate/video/{MODEL}",
                json=request_body(index),
                headers=self._headers,
            ) as response:
                if response.status != 429:
                    response.raise_for_status()
                    return str((await response.json())["job_id"])
            self.result.rate_limited += 1
            await self._sleep(POLL_S)

    async def _poll(self, http: aiohttp.ClientSession, job_id: str) -> tuple[str, str | None]:
        """GET the job every POLL_S until it is finished; returns its status and first URL."""
        last = time.monotonic()
        while True:
            await self._sleep(POLL_S)
            async with http.get(f"{self.url}/jobs/{job_id}", headers=self._headers) as response:
                data = await response.json() if response.status == 200 else {}
            now = time.monotonic()
            self.result.polls += 1
            self.result.poll_gaps_api_s.append((now - last) * self.scale)
            last = now
            if response.status == 429:
                self.result.rate_limited += 1
            status = str(data.get("status", ""))
            if status in TERMINAL:
                self.result.noticed.append((job_id, time.time()))
                urls = (data.get("result") or {}).get("urls") or []
                return status, (str(urls[0]) if urls else None)

    async def _download(self, http: aiohttp.ClientSession, job_id: str, url: str) -> None:
        async with http.get(url) as response:
            response.raise_for_status()
            with (self.out_dir / f"{job_id}.mp4").open("wb") as out:
                async for chunk in response.content.iter_chunked(1 << 20):
                    out.write(chunk)
        self.result.done.append((job_id, time.time()))
