"""Image endpoints: admitted, faulted, timed, listed and billed like video; shared slots."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import aiohttp
import pytest
from sim_support import SPRING, Api, Receiver, auth, check_schema

IMAGE = "image/google/nano-banana-pro"
IMAGE_ROUTE = "POST /generate/image/{provider}/{model}"
VIDEO_ROUTE = "POST /generate/video/{provider}/{model}"
GENERATE_IMAGE = "/generate/image/google/nano-banana-pro"


def micro(cu: str) -> int:
    return int((Decimal(cu) * Decimal("1833.5")).to_integral_value(rounding=ROUND_HALF_UP))


async def test_image_post_creates_an_image_job(simulator: Any, http: aiohttp.ClientSession) -> None:
    """POST /generate/image/… answers a pending job of type image; introspection has the
    request as received, the kind and no inputs; stats count the image route by its name."""
    sim = await simulator(time_scale=0, start_time=SPRING)
    api = Api(http, sim.url)
    body = {"prompt": "a red fox", "aspectRatio": "16:9", "resolution": "4K"}  # alias kept
    status, created = await api.create(IMAGE, body)
    assert status == 200, created
    check_schema(GENERATE_IMAGE, "post", 200, created)
    assert created["type"] == "image"
    assert created["status"] == "queued"
    (record,) = sim.jobs()
    assert record["kind"] == "image"
    assert record["model"] == IMAGE
    assert record["request"] == body
    assert record["inputs_from"] == {}
    assert (record["price_micro"], record["charged_micro"]) == (micro("120"), 0)
    async with http.get(f"{sim.url}/_sim/jobs") as response:
        (over_http,) = await response.json()
    assert {k: over_http[k] for k in ("kind", "request", "inputs_from")} == {
        "kind": "image",
        "request": body,
        "inputs_from": {},
    }
    stats = sim.stats()
    assert stats["requests"] == {IMAGE_ROUTE: 1}
    assert stats["jobs_created"] == 1


async def test_unknown_and_retired_image_models(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """An unknown image model is a 404 naming it as a video one is; a retired one is a 410."""
    sim = await simulator(
        time_scale=0, retired_models="image/google/nano-banana=image/google/nano-banana-2"
    )
    api = Api(http, sim.url)
    status, answer = await api.create("image/google/nano-banana-9", {"prompt": "xyz"})
    assert (status, answer) == (404, {"error": "Model not found: image/google/nano-banana-9"})
    status, answer = await api.create("kling/kling-9", {"prompt": "xyz"})
    assert (status, answer) == (404, {"error": "Model not found: video/kling/kling-9"})
    status, answer = await api.create("image/google/nano-banana", {"prompt": "xyz"})
    assert status == 410
    assert answer["error"] == "model_unavailable"
    assert answer["replacement"] == "image/google/nano-banana-2"
    assert "image/google/nano-banana was retired" in answer["message"]
    assert sim.stats()["requests"] == {IMAGE_ROUTE: 2, VIDEO_ROUTE: 1}
    assert sim.stats()["jobs_created"] == 0


async def test_invalid_image_bodies_and_auth(simulator: Any, http: aiohttp.ClientSession) -> None:
    """A wrong enum, a missing required field, a non-object body and no token are refused."""
    sim = await simulator(time_scale=0, validation_status=422)
    api = Api(http, sim.url)
    status, answer = await api.create(IMAGE, {"prompt": "xyz", "resolution": "8K"})
    assert status == 422
    assert answer["detail"][0]["loc"] == ["body", "resolution"]
    status, answer = await api.create("image/bytedance/seededit", {"prompt": "xyz"})
    assert status == 422
    assert "image_url" in answer["error"]
    async with http.post(sim.url + GENERATE_IMAGE, data=b"[1]", headers=auth()) as response:
        assert response.status == 400
    async with http.post(sim.url + GENERATE_IMAGE, json={"prompt": "xyz"}) as response:
        assert response.status == 401
    assert sim.stats()["jobs_created"] == 0


async def test_slots_and_backlog_are_shared_with_video_jobs(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """One account's video and image jobs share concurrency and backlog: an image job waits
    for the video job's slot, a third job is a 429; the image job takes image_duration_s."""
    sim = await simulator(time_scale=0, concurrency=1, backlog=1, duration_s=10)
    api = Api(http, sim.url)
    video = await api.created_id()
    status, image = await api.create(IMAGE, {"prompt": "a still"})
    assert (status, image["status"]) == (200, "backlogged")
    status, refused = await api.create(IMAGE, {"prompt": "one more"})
    assert status == 429
    assert refused["error"].startswith("You have reached the maximum number")
    sim.advance(10)
    by_id = {job["job_id"]: job for job in sim.jobs()}
    assert by_id[video]["status"] == "completed"
    assert by_id[image["job_id"]]["started_at"] == by_id[video]["completed_at"]
    sim.advance(7.9)
    assert (await api.job(image["job_id"]))[1]["status"] == "sampling"
    sim.advance(0.1)
    _, done = await api.job(image["job_id"])
    assert done["status"] == "completed"
    assert done["type"] == "image"
    account = sim.stats()["accounts"][sim.account_id(api.token)]
    assert account["max_running_seen"] == 1


async def test_image_duration_option_and_walk(simulator: Any, http: aiohttp.ClientSession) -> None:
    """image_duration_s sets an image job's length (live too), not duration_s; the walk has
    the same stages as a video job's."""
    sim = await simulator(time_scale=0, duration_s=100, image_duration_s=20)
    assert sim.options.image_duration_s == 20
    api = Api(http, sim.url)
    image_id = await api.created_id(IMAGE)
    video_id = await api.created_id()
    seen = []
    for _ in range(21):
        seen.append((await api.job(image_id))[1]["status"])
        sim.advance(1)
    assert list(dict.fromkeys(seen)) == [
        "queued",
        "scheduled",
        "processing",
        "sampling",
        "completed",
    ]
    assert (await api.job(video_id))[1]["status"] == "processing"
    sim.configure(image_duration_s=2.5)
    later = await api.created_id(IMAGE)
    sim.advance(2.5)
    assert (await api.job(later))[1]["status"] == "completed"
    with pytest.raises(ValueError, match="image_duration_s"):
        sim.configure(image_duration_s=0)


async def test_image_job_billed_only_on_completion_and_402(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """The price is reserved while the job runs and charged when it completes; a POST the
    balance cannot cover is a 402 (4K costs 120 CU, 1K 60.1 CU)."""
    sim = await simulator(time_scale=0, balance_usd="0.2")
    api = Api(http, sim.url)
    status, answer = await api.create(IMAGE, {"prompt": "xyz", "resolution": "4K"})
    assert status == 402
    assert "$0.220020" in answer["error"]
    job_id = await api.created_id(IMAGE)
    assert (await api.create(IMAGE, {"prompt": "xyz"}))[0] == 402  # 0.2 - 0.110193 reserved
    assert sim.stats()["billed_micro"] == 0
    sim.advance(8)
    assert (await api.job(job_id))[1]["status"] == "completed"
    assert sim.stats()["billed_micro"] == micro("60.1")
    account = sim.stats()["accounts"][sim.account_id(api.token)]
    assert account["balance_micro"] == 200_000 - micro("60.1")


async def test_failed_and_cancelled_image_jobs_cost_nothing(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Outcome rates apply to image jobs; DELETE cancels one while it is cancellable."""
    sim = await simulator(time_scale=0, provider_error_rate=1.0)
    api = Api(http, sim.url)
    failed = await api.created_id(IMAGE)
    sim.configure(provider_error_rate=0.0)
    cancelled = await api.created_id(IMAGE)
    status, answer = await api.cancel(cancelled)
    assert (status, answer["status"], answer["type"]) == (200, "cancelled", "image")
    sim.advance(8)
    _, job = await api.job(failed)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "provider_error"
    assert sim.stats()["billed_micro"] == 0


async def test_ambiguous_and_5xx_faults_on_image_posts(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """An ambiguous image POST fails yet creates a billed job; a 5xx creates nothing."""
    sim = await simulator(time_scale=0, fault_ambiguous_rate=1.0, concurrency=6)
    api = Api(http, sim.url)
    outcomes: list[int | str] = []
    for _ in range(6):
        try:
            outcomes.append((await api.create(IMAGE, {"prompt": "xyz"}))[0])
        except aiohttp.ServerDisconnectedError:
            outcomes.append("dropped")
    assert 200 not in outcomes
    sim.advance(8.01)  # created_at is 1 ms apart
    assert [job["status"] for job in sim.jobs()] == ["completed"] * 6
    assert sim.stats()["billed_micro"] == 6 * micro("60.1")
    sim.configure(fault_ambiguous_rate=0.0, fault_5xx_rate=1.0)
    assert (await api.create(IMAGE, {"prompt": "xyz"}))[0] in (500, 502, 503)
    assert sim.stats()["jobs_created"] == 6


async def test_malformed_generate_route_covers_image_posts(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """malformed_routes=generate garbles the image POST's 200 too (the job exists), not GETs."""
    sim = await simulator(
        time_scale=0, fault_malformed_rate=1.0, malformed_routes="generate", malformed_forms="empty"
    )
    api = Api(http, sim.url)
    status, answer = await api.create(IMAGE, {"prompt": "xyz"})
    assert (status, answer) == (200, {})
    (record,) = sim.jobs()
    status, job = await api.job(record["job_id"])
    assert (status, job["type"]) == (200, "image")


async def test_image_webhook_matches_get(
    simulator: Any, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    """A completed image job POSTs the same JSON GET shows, its result URL a .png."""
    sim = await simulator(time_scale=0)
    api = Api(http, sim.url)
    status, created = await api.create(
        IMAGE, {"prompt": "xyz"}, headers={"X-Webhook-URL": receiver.url}
    )
    assert status == 200
    sim.advance(8)
    (payload,) = await receiver.wait_for(1)
    assert payload == (await api.job(created["job_id"]))[1]
    assert payload["type"] == "image"
    assert payload["result"]["urls"][0].endswith(f"/images/{created['job_id']}.png")


async def test_listing_shows_both_kinds_and_filters_on_types(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """GET /jobs lists image and video jobs newest first; types=image/video keeps one kind,
    with the cursor walking the filtered list."""
    sim = await simulator(time_scale=0, backlog=20)
    api = Api(http, sim.url)
    order = []
    for index in range(6):
        kind = "image" if index % 2 else "video"
        order.append((await api.created_id(IMAGE if kind == "image" else "kling/kling-2.5"), kind))
    _, page = await api.list()
    assert [(item["job_id"], item["type"]) for item in page["items"]] == order[::-1]
    for kind in ("image", "video"):
        walked, cursor = [], None
        while True:
            _, page = await api.list(
                types=kind, limit="1", **({"cursor": cursor} if cursor else {})
            )
            walked += [item["job_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert walked == [job_id for job_id, k in order[::-1] if k == kind]
    _, page = await api.list(types="flux,image,video")
    assert len(page["items"]) == 6
    _, page = await api.list(types="flux", status="queued")
    assert page == {"items": [], "next_cursor": None}
    _, page = await api.list(types="image", status="backlogged")
    assert [item["job_id"] for item in page["items"]] == [order[5][0], order[3][0]]
