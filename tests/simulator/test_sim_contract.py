"""Contract: every video and image endpoint accepts, prices and refuses like Krea's spec says."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import aiohttp
import pytest
from sim_support import SPRING, TIMESTAMP, Api, check_schema, minimal_body

from orchestrator.spec import load_spec

ENDPOINTS = sorted(load_spec().endpoints)

#: CU of each endpoint's minimal request (schema defaults), read by hand from the spec's tables.
DEFAULT_CU = {
    "kling/kling-1": "60.1",
    "kling/kling-1.5": "210",
    "kling/kling-1.6": "120",
    "kling/kling-2": "802",
    "kling/kling-2.1": "802",
    "kling/kling-2.5": "200",
    "kling/kling-2.6": "200",
    "kling/kling-3.0": "481",
    "kling/kling-o1": "321",
    "minimax/hailuo": "246",
    "minimax/hailuo-02": "155",
    "minimax/hailuo-2.3": "160",
    "minimax/hailuo-2.3-fast": "109",
    "alibaba/wan-2.1": "270",
    "alibaba/wan-2.2": "287",
    "alibaba/wan-2.5": "430",
    "google/veo-2": "1432",
    "google/veo-3": "916",
    "google/veo-3-fast": "458",
    "google/veo-3.1": "916",
    "google/veo-3.1-fast": "367",
    "google/veo-3.1-lite": "137",
    "bytedance/seedance-1.0-pro": "207",
    "bytedance/seedance-1.0-pro-fast": "84",
    "lightricks/ltx-video-2.3-22b": "103",
    "luma/ray-2": "229",
    "runway/gen-3": "143",
    "runway/gen-4-video": "143",
    "runway/gen-4.5": "344",
    "xai/grok-video": "241",
    "runway/aleph": "500",  # no table: unpriced_cu
    # Image endpoints: "~3" is 3 CU; Resolution/Mode fall back to the schema default.
    "image/bfl/flux-1-dev": "3",
    "image/bfl/flux-1-kontext-dev": "6",
    "image/google/nano-banana-pro": "60.1",
    "image/google/nano-banana-2": "34.4",
    "image/google/nano-banana": "22.3",
    "image/bfl/flux-1.1-pro": "22.9",
    "image/bfl/flux-1.1-pro-ultra": "34.4",
    "image/ideogram/ideogram-2-turbo": "14.3",
    "image/ideogram/ideogram-3": "34.4",
    "image/google/imagen-3": "22.9",  # the "Model" column (Standard) is ignored
    "image/google/imagen-4": "22.9",
    "image/google/imagen-4-fast": "11.5",
    "image/google/imagen-4-ultra": "34.4",
    "image/runway/gen-4-image": "44",
    "image/openai/gpt-image": "179",
    "image/openai/gpt-image-2": "127",
    "image/luma/uni-1": "23.1",
    "image/bytedance/seedream-4": "17.2",
    "image/bytedance/seedream-5-lite": "20.0",
    "image/qwen/2512": "9",
    "image/z-image/z-image": "1",
    "image/bytedance/seededit": "500",  # no table: unpriced_cu
}

#: Non-default requests: (model, extra fields, expected CU).
VARIANTS = [
    ("kling/kling-2.5", {"duration": 10}, "401"),
    ("kling/kling-3.0", {"mode": "4k", "generate_audio": True, "duration": 15}, "3608"),
    ("kling/kling-3.0", {"mode": "pro", "generate_audio": True, "duration": 10}, "1924"),
    ("kling/kling-o1", {"video_reference": {"url": "https://e.com/v.mp4", "tag": "ref"}}, "481"),
    ("lightricks/ltx-video-2.3-22b", {"has_lora": True, "duration": 20}, "459"),
    ("google/veo-3.1-fast", {"resolution": "4K", "generate_audio": True}, "1375"),
    ("google/veo-3", {"duration": 4}, "500"),  # table lists 5-8 s only: unpriced
    ("bytedance/seedance-1.0-pro", {"duration": 7}, "500"),  # no 7 s row: unpriced
    ("minimax/hailuo-02", {"resolution": "512p", "duration": 10}, "85.9"),
    ("xai/grok-video", {"resolution": "480p", "duration": 1}, "28.6"),
    ("image/google/nano-banana-pro", {"resolution": "2K"}, "60.1"),
    ("image/google/nano-banana-pro", {"resolution": "4K"}, "120"),
    ("image/google/nano-banana-2", {"resolution": "2K"}, "57.8"),
    ("image/google/nano-banana-2", {"resolution": "4K"}, "86.5"),
    ("image/luma/uni-1", {"style_images": []}, "23.1"),
    (
        "image/luma/uni-1",
        {"style_images": [{"strength": 1, "url": "https://e.com/s.png"}] * 9},
        "38.6",
    ),
    ("image/luma/uni-1", {"mode": "max"}, "57.3"),
    (
        "image/luma/uni-1",
        {"mode": "max", "style_images": [{"strength": 0.5, "url": "https://e.com/s.png"}] * 3},
        "62.4",
    ),
    ("image/ideogram/ideogram-3", {"character_reference_images": ["https://e.com/c.png"]}, "85.9"),
    ("image/ideogram/ideogram-3", {"character_reference_images": []}, "34.4"),
    ("image/bytedance/seededit", {"seed": 7}, "500"),
]


def micro(cu: str) -> int:
    return int((Decimal(cu) * Decimal("1833.5")).to_integral_value(rounding=ROUND_HALF_UP))


def test_expected_table_covers_every_endpoint() -> None:
    """The hand-written price list names exactly the spec's 31 video and 22 image endpoints."""
    assert sorted(DEFAULT_CU) == ENDPOINTS
    kinds = [load_spec().endpoints[model].kind for model in ENDPOINTS]
    assert (kinds.count("video"), kinds.count("image")) == (31, 22)


async def _run_to_completion(sim: Any, api: Api, model: str, body: dict[str, Any]) -> Any:
    status, created = await api.create(model, body)
    assert status == 200, created
    sim.advance(20)
    return created


@pytest.mark.parametrize("model", ENDPOINTS)
async def test_minimal_request_accepted_priced_and_shaped(
    simulator: Any, http: aiohttp.ClientSession, model: str
) -> None:
    """A minimal valid body is accepted, walks to completed and is charged its table price."""
    sim = await simulator(time_scale=0, duration_s=10, start_time=SPRING, pending_shape="spec")
    api = Api(http, sim.url)
    endpoint = load_spec().endpoints[model]
    status, created = await api.create(model, minimal_body(endpoint))
    assert status == 200, created
    check_schema(endpoint.path, "post", 200, created)
    assert created["type"] == endpoint.kind
    assert TIMESTAMP.match(created["created_at"])
    status, pending = await api.job(created["job_id"])
    check_schema("/jobs/{id}", "get", 200, pending)
    sim.advance(10)
    status, done = await api.job(created["job_id"])
    assert done["status"] == "completed"
    assert TIMESTAMP.match(done["completed_at"])
    check_schema("/jobs/{id}", "get", 200, done)
    status, listed = await api.list()
    check_schema("/jobs", "get", 200, listed)
    (record,) = sim.jobs()
    assert record["kind"] == endpoint.kind
    assert record["charged_micro"] == record["price_micro"] == micro(DEFAULT_CU[model])
    assert sim.stats()["billed_micro"] == micro(DEFAULT_CU[model])
    assert sim.stats()["requests"] == {
        f"POST /generate/{endpoint.kind}/{{provider}}/{{model}}": 1,
        "GET /jobs/{id}": 2,
        "GET /jobs": 1,
    }


@pytest.mark.parametrize(("model", "extra", "cu"), VARIANTS)
async def test_request_variants_priced_from_their_row(
    simulator: Any, http: aiohttp.ClientSession, model: str, extra: dict[str, Any], cu: str
) -> None:
    """Mode, audio, duration, resolution, references, LoRA (and for images: reference and
    character-reference images) select the table row; no row or no table is unpriced_cu."""
    sim = await simulator(time_scale=0, duration_s=10, start_time=SPRING)
    body = {**minimal_body(load_spec().endpoints[model]), **extra}
    await _run_to_completion(sim, Api(http, sim.url), model, body)
    (record,) = sim.jobs()
    assert record["status"] == "completed"
    assert record["charged_micro"] == micro(cu)


@pytest.mark.parametrize("model", ENDPOINTS)
async def test_unknown_key_refused_naming_it(
    simulator: Any, http: aiohttp.ClientSession, model: str
) -> None:
    """An unknown key is a 400 naming the key, or a 422 with detail[] in that mode."""
    sim = await simulator(time_scale=0, start_time=SPRING)
    api = Api(http, sim.url)
    endpoint = load_spec().endpoints[model]
    body = {**minimal_body(endpoint), "frobnicate": 1}
    status, answer = await api.create(model, body)
    assert status == 400
    assert "frobnicate" in answer["error"]
    check_schema(endpoint.path, "post", 400, answer)
    sim.configure(validation_status=422)
    status, answer = await api.create(model, body)
    assert status == 422
    assert "frobnicate" in answer["error"]
    assert {"loc": ["body", "frobnicate"]}.items() <= answer["detail"][0].items()
    assert sim.stats()["jobs_created"] == 0


async def test_invalid_value_and_missing_field_name_the_field(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """A wrong enum value, a missing required field and a non-object body are all 400s."""
    sim = await simulator(time_scale=0)
    api = Api(http, sim.url)
    status, answer = await api.create("kling/kling-2.5", {"prompt": "x", "duration": 7})
    assert status == 400
    assert "duration" in answer["error"]
    status, answer = await api.create("alibaba/wan-2.1", {"prompt": "x", "width": 640})
    assert status == 400
    assert "height" in answer["error"]
    url = f"{sim.url}/generate/video/kling/kling-2.5"
    headers = {"Authorization": "Bearer t", "Content-Type": "application/json"}
    async with http.post(url, data=b"[1, 2]", headers=headers) as response:
        assert response.status == 400
        check_schema("/generate/video/kling/kling-2.5", "post", 400, await response.json())
    async with http.post(url, data=b"{not json", headers=headers) as response:
        assert response.status == 400


async def test_error_bodies_validate_against_the_spec(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """401 (spec shape), 402, 404, 429 and list 400 bodies match their documented schemas."""
    sim = await simulator(
        time_scale=0, auth_error_shape="spec", concurrency=1, backlog=0, balance_usd="0.5"
    )
    api = Api(http, sim.url)
    path = "/generate/video/kling/kling-2.5"
    async with http.post(sim.url + path, json={"prompt": "x"}) as response:
        assert response.status == 401
        check_schema(path, "post", 401, await response.json())
    assert (await api.create())[0] == 200
    status, answer = await api.create()
    assert status == 429
    check_schema(path, "post", 429, answer)
    sim.configure(backlog=5)
    status, answer = await api.create()
    assert status == 402
    check_schema(path, "post", 402, answer)
    status, answer = await api.job("00000000-0000-4000-8000-000000000000")
    assert status == 404
    check_schema("/jobs/{id}", "get", 404, answer)
    status, answer = await api.list(limit="0")
    assert status == 400
    check_schema("/jobs", "get", 400, answer)


async def test_null_pending_shape_matches_krea_examples(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """pending_shape=null shows completed_at and result as null until the job ends."""
    sim = await simulator(time_scale=0, pending_shape="null", duration_s=10)
    api = Api(http, sim.url)
    job_id = await api.created_id()
    _, pending = await api.job(job_id)
    assert pending["completed_at"] is None
    assert pending["result"] is None
    sim.advance(10)
    _, done = await api.job(job_id)
    assert done["result"]["urls"]
    assert done["completed_at"]
