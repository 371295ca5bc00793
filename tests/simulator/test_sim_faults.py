"""Seeded network faults: 5xx, resets, slow answers, ambiguous POSTs, malformed bodies, cuts."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from sim_support import Api, auth

GENERATE = "/generate/video/kling/kling-2.5"


async def _post(http: aiohttp.ClientSession, base: str, **kwargs: Any) -> tuple[int, bytes, str]:
    async with http.post(base + GENERATE, json={"prompt": "x"}, headers=auth(), **kwargs) as r:
        return r.status, await r.read(), r.content_type


async def test_5xx_answers_before_doing_anything(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """fault_5xx_rate=1: every API route answers 500/502/503 and no job is created."""
    sim = await simulator(time_scale=0, fault_5xx_rate=1.0)
    statuses = {(await _post(http, sim.url))[0] for _ in range(12)}
    assert statuses <= {500, 502, 503}
    assert len(statuses) > 1
    assert (await Api(http, sim.url).list())[0] in (500, 502, 503)
    stats = sim.stats()
    assert stats["jobs_created"] == 0
    assert stats["faults"]["5xx"] == 13


async def test_reset_drops_the_connection_before_doing_anything(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """fault_reset_rate=1: the connection closes with no answer and nothing is created."""
    sim = await simulator(time_scale=0, fault_reset_rate=1.0)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _post(http, sim.url)
    stats = sim.stats()
    assert stats["jobs_created"] == 0
    assert stats["faults"]["reset"] == 1
    assert stats["requests"] == {"POST /generate/video/{provider}/{model}": 1}


async def test_slow_answer_past_client_timeout_still_created_the_job(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """fault_slow_rate=1: the job exists although the client timed out waiting."""
    sim = await simulator(time_scale=0, fault_slow_rate=1.0, slow_delay_s=0.5)
    with pytest.raises(TimeoutError):
        await _post(http, sim.url, timeout=aiohttp.ClientTimeout(total=0.1))
    assert sim.stats()["jobs_created"] == 1


async def test_ambiguous_post_creates_a_billed_job(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """fault_ambiguous_rate=1: the POST fails (5xx or drop) but the job runs and is billed."""
    sim = await simulator(time_scale=0, fault_ambiguous_rate=1.0, duration_s=10)
    outcomes: list[int | str] = []
    for _ in range(8):
        try:
            outcomes.append((await _post(http, sim.url))[0])
        except aiohttp.ServerDisconnectedError:
            outcomes.append("dropped")
    assert "dropped" in outcomes
    assert 200 not in outcomes
    assert {status for status in outcomes if status != "dropped"} <= {500, 502, 503, 504}
    assert len(set(outcomes)) > 1
    sim.advance(100)
    jobs = sim.jobs()
    assert len(jobs) == 8
    assert all(job["charged_micro"] > 0 for job in jobs)


@pytest.mark.parametrize("form", ["truncated", "html", "empty", "weird_status"])
async def test_malformed_200_still_creates_the_job(
    simulator: Any, http: aiohttp.ClientSession, form: str
) -> None:
    """fault_malformed_rate=1: a 200 whose body is not a usable job; the job was created."""
    sim = await simulator(time_scale=0, fault_malformed_rate=1.0, malformed_forms=form)
    status, body, content_type = await _post(http, sim.url)
    assert status == 200
    if form == "truncated":
        with pytest.raises(ValueError, match=r"Expecting|Unterminated"):
            json.loads(body)
    elif form == "html":
        assert content_type == "text/html"
        assert body.startswith(b"<!DOCTYPE html>")
    elif form == "empty":
        assert json.loads(body) == {}
    else:
        assert json.loads(body)["status"] == "weird"
    assert sim.stats()["jobs_created"] == 1


async def test_malformed_leaves_error_answers_alone(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Only answers that would be 200 are mangled; a 400 stays a readable 400."""
    sim = await simulator(time_scale=0, fault_malformed_rate=1.0)
    async with http.post(sim.url + GENERATE, json={"bad": 1}, headers=auth()) as response:
        assert response.status == 400
        assert "error" in await response.json()
    assert "malformed" not in sim.stats()["faults"]


async def test_truncated_download_announces_full_length(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """fault_truncate_rate=1: Content-Length is the full size, fewer bytes arrive, then a drop."""
    sim = await simulator(time_scale=0, duration_s=10, media_bytes=1_000_000)
    api = Api(http, sim.url)
    job_id = await api.created_id()
    sim.advance(10)
    url = (await api.job(job_id))[1]["result"]["urls"][0]
    sim.configure(fault_truncate_rate=1.0)
    received: list[int] = []
    with pytest.raises(aiohttp.ClientPayloadError):
        await _download(http, url, received)
    assert received[0] == 1_000_000
    assert 0 < sum(received[1:]) < 1_000_000
    assert sim.stats()["faults"]["truncate"] == 1


async def _download(http: aiohttp.ClientSession, url: str, sizes: list[int]) -> None:
    """Read ``url`` in chunks, recording Content-Length then each chunk's size."""
    async with http.get(url) as response:
        sizes.append(response.content_length or 0)
        async for chunk in response.content.iter_chunked(1 << 16):
            sizes.append(len(chunk))


async def test_outage_answers_503_everywhere_but_media(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """outage=True: every API route is 503 until turned off; /_sim/ keeps working."""
    sim = await simulator(time_scale=0)
    api = Api(http, sim.url)
    job_id = await api.created_id()
    sim.configure(outage=True)
    assert (await api.job(job_id))[0] == 503
    assert (await api.create())[0] == 503
    async with http.get(f"{sim.url}/_sim/clock") as response:
        assert response.status == 200
    sim.configure(outage=False)
    assert (await api.job(job_id))[0] == 200
    assert sim.stats()["faults"]["outage"] == 2


async def test_faults_are_reproducible_from_the_seed(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Two simulators with one seed fault the same requests; another seed differs."""
    patterns = []
    for seed in (7, 7, 8):
        sim = await simulator(time_scale=0, seed=seed, fault_5xx_rate=0.5)
        api = Api(http, sim.url)
        patterns.append([(await api.list())[0] for _ in range(40)])
    assert patterns[0] == patterns[1] != patterns[2]
    assert {200, 500, 502, 503} >= set(patterns[0]) > {200}


async def test_latency_and_other_faults_leave_sim_routes_alone(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """/_sim/ routes are never faulted or counted, whatever the rates."""
    sim = await simulator(time_scale=0, fault_5xx_rate=1.0, fault_reset_rate=1.0, outage=True)
    for path in ("stats", "jobs", "clock", "config"):
        async with http.get(f"{sim.url}/_sim/{path}") as response:
            assert response.status == 200
    assert sim.stats()["requests"] == {}


async def test_latency_delays_every_api_answer(simulator: Any, http: aiohttp.ClientSession) -> None:
    """latency_s holds every API answer back, so a shorter client timeout fires."""
    sim = await simulator(time_scale=0, latency_s=0.2)
    with pytest.raises(TimeoutError):
        await _post(http, sim.url, timeout=aiohttp.ClientTimeout(total=0.05))
    assert sim.stats()["jobs_created"] == 1


async def test_slow_media_trips_a_read_timeout(simulator: Any, http: aiohttp.ClientSession) -> None:
    """Small, slow media chunks (slowloris) are cut by a client's sock_read timeout."""
    sim = await simulator(time_scale=0, duration_s=10)
    api = Api(http, sim.url)
    job_id = await api.created_id()
    sim.advance(10)
    url = (await api.job(job_id))[1]["result"]["urls"][0]
    sim.configure(media_chunk_bytes=1000, media_chunk_delay_s=0.2)
    with pytest.raises(aiohttp.SocketTimeoutError):
        async with http.get(url, timeout=aiohttp.ClientTimeout(sock_read=0.05)) as response:
            await response.read()
