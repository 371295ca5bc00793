"""Ground truth from the simulator's ``/_sim/`` routes, and its clock mapped onto ours.

The simulator stamps jobs on its virtual clock (``start + real_elapsed × time_scale``); the
ledger stamps ``done_at`` with the wall clock. :class:`ClockMap` samples ``/_sim/clock`` a few
times and keeps the sample with the shortest round trip, so any wall-clock instant converts to
simulated (API) seconds with an error of half that round trip times the scale (well under a
hundredth of an API second here).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp


def epoch_s(iso: str) -> float:
    """``2026-02-13T02:20:58.265Z`` → epoch seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def get_json(url: str, path: str) -> Any:
    """One GET of a ``/_sim/`` route (its own short-lived session: the bench is not measured)."""
    timeout = aiohttp.ClientTimeout(total=120)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(url + path) as response,
    ):
        response.raise_for_status()
        return await response.json()


async def stats(url: str) -> dict[str, Any]:
    """``/_sim/stats`` (requests per route, 429s, per-account usage)."""
    data: dict[str, Any] = await get_json(url, "/_sim/stats")
    data.pop("bodies", None)  # one entry per job: large and not needed
    return data


async def jobs(url: str) -> list[dict[str, Any]]:
    """``/_sim/jobs``: every job with created/started/completed times on the simulated clock."""
    data: list[dict[str, Any]] = await get_json(url, "/_sim/jobs")
    return data


def account(stats_doc: dict[str, Any]) -> dict[str, Any]:
    """The one account of a benchmark simulator (each scenario uses one token)."""
    accounts = list(stats_doc["accounts"].values())
    return accounts[0] if accounts else {}


def status_requests(stats_doc: dict[str, Any]) -> int:
    """``GET /jobs`` (list sweeps) plus ``GET /jobs/{id}`` (per-job polls)."""
    requests: dict[str, int] = stats_doc["requests"]
    return sum(n for route, n in requests.items() if route.split("?")[0].startswith("GET /jobs"))


@dataclass(frozen=True)
class ClockMap:
    """Simulated time = ``sim_s + (wall - wall_s) × scale``."""

    sim_s: float
    wall_s: float
    scale: float

    def to_sim(self, wall_epoch_s: float) -> float:
        return self.sim_s + (wall_epoch_s - self.wall_s) * self.scale

    def to_wall(self, sim_epoch_s: float) -> float:
        return self.wall_s + (sim_epoch_s - self.sim_s) / self.scale


async def clock_map(url: str, samples: int = 5) -> ClockMap:
    """The mapping from the quickest of ``samples`` reads of ``/_sim/clock``."""
    best: tuple[float, ClockMap] | None = None
    async with aiohttp.ClientSession() as http:
        for _ in range(samples):
            before = time.time()
            async with http.get(url + "/_sim/clock") as response:
                data = await response.json()
            after = time.time()
            sample = ClockMap(float(data["now_s"]), (before + after) / 2, float(data["time_scale"]))
            if best is None or after - before < best[0]:
                best = (after - before, sample)
            await asyncio.sleep(0.01)
    assert best is not None
    return best[1]


async def wait_for_created(url: str, count: int, every_s: float = 0.25) -> None:
    """Return once the simulator has created ``count`` jobs (a ``stop`` for run_orchestrator)."""
    while True:
        data = await get_json(url, "/_sim/stats")
        if int(data["jobs_created"]) >= count:
            return
        await asyncio.sleep(every_s)
