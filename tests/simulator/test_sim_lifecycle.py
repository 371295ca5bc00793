"""Lifecycle: backlog order, capacity and rate 429s, 402, cancel, failures, previews."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from sim_support import OTHER_TOKEN, Api

PRICE_KLING_25 = 366_700  # 200 CU x 1833.5


async def test_backlog_starts_in_submission_order(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """With concurrency 2, five jobs: two run, three wait backlogged and start in order."""
    sim = await simulator(time_scale=0, concurrency=2, duration_s=100)
    api = Api(http, sim.url)
    created = [await api.create() for _ in range(5)]
    assert [answer["status"] for _, answer in created] == ["queued"] * 2 + ["backlogged"] * 3
    sim.advance(100.01)  # created_at is strictly increasing: job 2 starts 1 ms after job 1
    by_id = {job["job_id"]: job for job in sim.jobs()}
    jobs = [by_id[answer["job_id"]] for _, answer in created]
    assert [job["status"] for job in jobs][:2] == ["completed", "completed"]
    assert jobs[2]["started_at"] == jobs[0]["completed_at"]
    assert jobs[4]["status"] == "backlogged"
    sim.advance(200)
    starts = [job["started_at"] for job in sim.jobs()]
    assert starts == sorted(starts)
    account = sim.stats()["accounts"][sim.account_id(api.token)]
    assert account["max_running_seen"] == 2
    assert account["max_unfinished_seen"] == 5
    assert account["running_seconds"] == pytest.approx(500.0)
    assert account["span_seconds"] == pytest.approx(300.0, abs=0.01)


async def test_walk_passes_every_stage(simulator: Any, http: aiohttp.ClientSession) -> None:
    """A running job is seen queued, scheduled, processing, sampling, then completed."""
    sim = await simulator(time_scale=0, duration_s=100)
    api = Api(http, sim.url)
    job_id = await api.created_id()
    seen = []
    for _ in range(21):
        seen.append((await api.job(job_id))[1]["status"])
        sim.advance(5)
    ordered = list(dict.fromkeys(seen))
    assert ordered == ["queued", "scheduled", "processing", "sampling", "completed"]


async def test_capacity_429_with_and_without_retry_after(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Concurrency + backlog full answers 429 (no job); Retry-After only when configured."""
    sim = await simulator(time_scale=0, concurrency=1, backlog=1)
    api = Api(http, sim.url)
    assert (await api.create())[0] == (await api.create())[0] == 200
    url = f"{sim.url}/generate/video/kling/kling-2.5"
    headers = {"Authorization": f"Bearer {api.token}"}
    async with http.post(url, json={"prompt": "x"}, headers=headers) as response:
        assert response.status == 429
        assert "Retry-After" not in response.headers
        assert (await response.json())["error"].startswith("You have reached the maximum number")
    sim.configure(retry_after_s=2.5)
    async with http.post(url, json={"prompt": "x"}, headers=headers) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "3"
    sim.configure(retry_after_form="http-date")
    async with http.post(url, json={"prompt": "x"}, headers=headers) as response:
        assert response.headers["Retry-After"].endswith(" GMT")
    stats = sim.stats()
    assert stats["jobs_created"] == 2
    assert stats["rate_limited"] == 3


async def test_request_rate_limit(simulator: Any, http: aiohttp.ClientSession) -> None:
    """More than rate_limit_rps requests within a second get 429, per account."""
    sim = await simulator(time_scale=0, rate_limit_rps=3, retry_after_s=1)
    api, other = Api(http, sim.url), Api(http, sim.url, OTHER_TOKEN)
    statuses = [(await api.list())[0] for _ in range(5)]
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3:] == [429, 429]
    assert (await other.list())[0] == 200
    assert sim.stats()["rate_limited"] == 2


async def test_402_reserving_in_flight_jobs(simulator: Any, http: aiohttp.ClientSession) -> None:
    """Reserve mode refuses once unfinished prices would exceed the balance; in-flight finish."""
    sim = await simulator(time_scale=0, balance_usd="1.00", duration_s=10)
    api = Api(http, sim.url)
    assert [(await api.create())[0] for _ in range(3)] == [200, 200, 402]
    status, answer = await api.create()
    assert status == 402
    assert answer["error"].startswith("Insufficient balance")
    sim.advance(10.01)
    assert [job["status"] for job in sim.jobs()] == ["completed", "completed"]
    account = sim.stats()["accounts"][sim.account_id(api.token)]
    assert account["balance_micro"] == 1_000_000 - 2 * PRICE_KLING_25
    assert (await api.create())[0] == 402
    sim.configure(balance_usd="2")  # a top-up
    assert (await api.create())[0] == 200


async def test_402_without_reservation_lets_balance_go_negative(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Non-reserving mode accepts while balance >= price; in-flight jobs still complete."""
    sim = await simulator(time_scale=0, balance_usd="1.00", reserve_in_flight=False, duration_s=10)
    api = Api(http, sim.url)
    assert [(await api.create())[0] for _ in range(4)] == [200] * 4
    sim.advance(25)
    assert all(job["charged_micro"] == PRICE_KLING_25 for job in sim.jobs())
    account = sim.stats()["accounts"][sim.account_id(api.token)]
    assert account["balance_micro"] == 1_000_000 - 4 * PRICE_KLING_25 < 0
    assert (await api.create())[0] == 402


async def test_cancel_rules(simulator: Any, http: aiohttp.ClientSession) -> None:
    """Queued and backlogged jobs cancel for free; finished ones 409; others' jobs 404."""
    sim = await simulator(time_scale=0, concurrency=1, duration_s=100)
    api = Api(http, sim.url)
    running, waiting, third = [await api.created_id() for _ in range(3)]
    assert (await Api(http, sim.url, OTHER_TOKEN).cancel(running))[0] == 404
    status, answer = await api.cancel(waiting)
    assert status == 200
    assert answer["status"] == "cancelled"
    assert answer["completed_at"]
    sim.advance(1)
    status, answer = await api.cancel(running)
    assert status == 200
    assert answer["status"] == "cancelled"
    (third_job,) = [job for job in sim.jobs() if job["job_id"] == third]
    assert third_job["started_at"] == answer["completed_at"]  # the freed slot went to the next
    sim.advance(100)
    status, answer = await api.cancel(third)
    assert status == 409
    assert "completed" in answer["error"]
    assert (await api.cancel("not-a-job"))[0] == 404
    charged = {job["job_id"]: job["charged_micro"] for job in sim.jobs()}
    assert charged == {running: 0, waiting: 0, third: PRICE_KLING_25}


async def test_cancel_refused_while_sampling(simulator: Any, http: aiohttp.ClientSession) -> None:
    """From sampling on a job can no longer be cancelled: 409, nothing changes."""
    sim = await simulator(time_scale=0, duration_s=100)
    api = Api(http, sim.url)
    job_id = await api.created_id()
    sim.advance(80)
    status, answer = await api.cancel(job_id)
    assert status == 409
    assert "sampling" in answer["error"]
    sim.advance(20)
    assert (await api.job(job_id))[1]["status"] == "completed"


@pytest.mark.parametrize(
    ("option", "status", "code"),
    [
        ("moderation_rate", "failed", "moderation"),
        ("provider_error_rate", "failed", "provider_error"),
        ("system_cancel_rate", "cancelled", "system_cancelled"),
    ],
)
async def test_failures_carry_both_error_fields(
    simulator: Any, http: aiohttp.ClientSession, option: str, status: str, code: str
) -> None:
    """Failed and system-cancelled jobs show error at the top level and in result.error."""
    sim = await simulator(time_scale=0, duration_s=100, **{option: 1.0})
    api = Api(http, sim.url)
    job_id = await api.created_id()
    sim.advance(100)
    _, job = await api.job(job_id)
    assert job["status"] == status
    assert job["error"]["code"] == code
    assert job["result"]["error"] == job["error"]
    assert "urls" not in job["result"]
    assert sim.jobs()[0]["charged_micro"] == 0


async def test_timeout_stays_processing_until_job_timeout(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """A timing-out job stays processing until job_timeout_s after its start, then fails."""
    sim = await simulator(time_scale=0, timeout_rate=1.0, job_timeout_s=7200, duration_s=60)
    api = Api(http, sim.url)
    job_id = await api.created_id()
    sim.advance(7199)
    assert (await api.job(job_id))[1]["status"] == "processing"
    sim.advance(1)
    _, job = await api.job(job_id)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "timeout"


async def test_intermediate_complete_shows_a_preview(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """An intermediate-complete job has a downloadable preview URL and is not yet finished."""
    sim = await simulator(time_scale=0, intermediate_rate=1.0, duration_s=100)
    api = Api(http, sim.url)
    job_id = await api.created_id()
    sim.advance(95)
    _, job = await api.job(job_id)
    assert job["status"] == "intermediate-complete"
    assert "completed_at" not in job
    (preview,) = job["result"]["urls"]
    async with http.get(preview) as response:
        assert response.status == 200
        assert (await response.read())[4:8] == b"ftyp"
    sim.advance(5)
    _, job = await api.job(job_id)
    assert job["status"] == "completed"
    assert job["result"]["urls"] != [preview]


async def test_concurrency_raised_live_starts_backlog(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Raising concurrency starts waiting jobs at once."""
    sim = await simulator(time_scale=0, concurrency=1)
    api = Api(http, sim.url)
    for _ in range(3):
        await api.created_id()
    sim.configure(concurrency=3)
    assert [job["status"] for job in sim.jobs()] == ["queued"] * 3


async def test_time_scale_runs_the_clock(simulator: Any) -> None:
    """With time_scale > 0 simulated time moves faster than real time; advance adds to it."""
    sim = await simulator(time_scale=1000.0)
    before = sim.now()
    sim.advance(50)
    assert sim.now() - before >= 50
    sim.configure(time_scale=0)
    frozen = sim.now()
    assert sim.now() == frozen
