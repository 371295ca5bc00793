"""Webhooks: one POST of the GET-shaped job per terminal status (two in duplicates mode)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from sim_support import Api, Receiver, check_schema


async def test_webhook_on_completion_matches_get(
    simulator: Any, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """A completed job POSTs the same JSON GET /jobs/{id} shows."""
    sim = await simulator(time_scale=0, duration_s=10)
    api = Api(http, sim.url)
    status, created = await api.create(headers={"X-Webhook-URL": receiver.url})
    assert status == 200
    sim.advance(10)
    (payload,) = await receiver.wait_for(1)
    _, job = await api.job(created["job_id"])
    assert payload == job
    assert payload["status"] == "completed"
    check_schema("/jobs/{id}", "get", 200, payload)
    assert sim.jobs()[0]["webhook_url"] == receiver.url


async def test_webhook_on_failure_and_cancel(
    simulator: Any, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """Failed and user-cancelled jobs notify too; nothing fires before a terminal status."""
    sim = await simulator(time_scale=0, duration_s=10, concurrency=1)
    api = Api(http, sim.url)
    hook = {"X-Webhook-URL": receiver.url}
    _, first = await api.create(headers=hook)
    _, second = await api.create(headers=hook)
    sim.configure(provider_error_rate=1.0)
    await api.cancel(second["job_id"])
    (cancelled,) = await receiver.wait_for(1)
    assert cancelled["job_id"] == second["job_id"]
    assert cancelled["status"] == "cancelled"
    sim.advance(10)
    payloads = await receiver.wait_for(2)
    assert payloads[1]["job_id"] == first["job_id"]
    assert payloads[1]["status"] == "completed"
    _, _third = await api.create(headers=hook)
    sim.advance(10)
    payloads = await receiver.wait_for(3)
    assert payloads[2]["error"]["code"] == "provider_error"


async def test_duplicate_deliveries(
    simulator: Any, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """webhook_duplicates=True delivers each notification twice."""
    sim = await simulator(time_scale=0, duration_s=10, webhook_duplicates=True)
    api = Api(http, sim.url)
    await api.create(headers={"X-Webhook-URL": receiver.url})
    sim.advance(10)
    first, second = await receiver.wait_for(2)
    assert first == second
    await sim.drain_webhooks()
    assert sim.stats()["webhooks"]["delivered"] == 2


async def test_webhooks_fire_on_a_running_clock(
    simulator: Any, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """With time_scale > 0 the background waker fires webhooks without any polling."""
    sim = await simulator(time_scale=1000.0, duration_s=20)
    await Api(http, sim.url).create(headers={"X-Webhook-URL": receiver.url})
    (payload,) = await receiver.wait_for(1)
    assert payload["status"] == "completed"


async def test_unreachable_webhook_is_logged_not_fatal(
    simulator: Any, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing receiver only costs a warning; the job still completes."""
    sim = await simulator(time_scale=0, duration_s=10)
    api = Api(http, sim.url)
    job_id = await api.created_id()
    await api.create(headers={"X-Webhook-URL": "http://127.0.0.1:9/hook?key=s3cret"})
    sim.advance(20)
    await sim.drain_webhooks()
    assert sim.stats()["webhooks"]["failed"] == 1
    assert "s3cret" not in caplog.text
    assert (await api.job(job_id))[1]["status"] == "completed"


async def test_bad_webhook_url_is_a_400(simulator: Any, http: aiohttp.ClientSession) -> None:
    """A malformed X-Webhook-URL is refused like any invalid request."""
    sim = await simulator(time_scale=0)
    status, answer = await Api(http, sim.url).create(headers={"X-Webhook-URL": "not a url"})
    assert status == 400
    assert "X-Webhook-URL" in answer["error"]
