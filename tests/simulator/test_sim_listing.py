"""GET /jobs: cursor pagination over thousands of same-instant jobs, filters, bad queries."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from sim_support import OTHER_TOKEN, TIMESTAMP, Api

JOBS = 2500


async def _create_many(api: Api, count: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 100):
        batch = await asyncio.gather(*(api.created_id() for _ in range(min(100, count - start))))
        ids.extend(batch)
    return ids


async def _walk(api: Api, **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        status, page = await api.list(**query)
        assert status == 200, page
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert cursor == page["items"][-1]["created_at"]


@pytest.fixture
async def crowded(simulator: Any, http: aiohttp.ClientSession) -> tuple[Any, Api, list[str]]:
    """2,500 jobs created at one simulated instant; the first two have completed."""
    sim = await simulator(time_scale=0, concurrency=2, backlog=JOBS, duration_s=10)
    api = Api(http, sim.url)
    await _create_many(api, JOBS)
    sim.advance(10.5)
    created = [job["job_id"] for job in sorted(sim.jobs(), key=lambda job: job["created_at"])]
    return sim, api, created


@pytest.mark.parametrize("limit", ["1000", "100", "7"])
async def test_cursor_walk_returns_each_job_once_newest_first(
    crowded: tuple[Any, Api, list[str]], limit: str
) -> None:
    """Walking next_cursor yields every job exactly once, newest first, even at equal instants."""
    _, api, created = crowded
    items = await _walk(api, limit=limit)
    assert [item["job_id"] for item in items] == created[::-1]
    stamps = [item["created_at"] for item in items]
    assert all(TIMESTAMP.match(s) for s in stamps)
    assert len(set(stamps)) == JOBS


async def test_status_and_types_filters(crowded: tuple[Any, Api, list[str]]) -> None:
    """status keeps one status; types keeps video jobs only when 'video' is listed."""
    _, api, created = crowded
    done = await _walk(api, status="completed", limit="1")
    assert [item["job_id"] for item in done] == created[:2][::-1]
    waiting = await _walk(api, status="backlogged", limit="1000")
    assert len(waiting) == JOBS - 4
    assert len(await _walk(api, types="flux,video", limit="1000")) == JOBS
    status, page = await api.list(types="flux,k1")
    assert status == 200
    assert page == {"items": [], "next_cursor": None}


async def test_cursor_is_exclusive_and_default_limit_is_100(
    crowded: tuple[Any, Api, list[str]],
) -> None:
    """cursor=T lists jobs created strictly before T; no limit means 100 items."""
    _, api, _created = crowded
    _, page = await api.list()
    assert len(page["items"]) == 100
    middle = page["items"][50]
    _, after = await api.list(cursor=middle["created_at"], limit="1")
    assert after["items"][0]["job_id"] == page["items"][51]["job_id"]


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "ten"},
        {"cursor": "yesterday"},
        {"status": "done"},
    ],
)
async def test_bad_queries_are_400(
    simulator: Any, http: aiohttp.ClientSession, query: dict[str, str]
) -> None:
    """Out-of-range limits, unparseable cursors and unknown statuses answer 400 {error}."""
    sim = await simulator(time_scale=0)
    status, answer = await Api(http, sim.url).list(**query)
    assert status == 400
    assert isinstance(answer["error"], str)


async def test_accounts_see_only_their_jobs(simulator: Any, http: aiohttp.ClientSession) -> None:
    """Each token lists and reads only its own jobs; another's id is a 404."""
    sim = await simulator(time_scale=0)
    mine, theirs = Api(http, sim.url), Api(http, sim.url, OTHER_TOKEN)
    job_id = await mine.created_id()
    _, page = await theirs.list()
    assert page["items"] == []
    assert (await theirs.job(job_id))[0] == 404
    assert (await mine.job(job_id))[0] == 200
