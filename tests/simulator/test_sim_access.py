"""Auth shapes, token privacy, retired models, alias sunset, assets, and introspection."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import aiohttp
import pytest
from sim_support import OTHER_TOKEN, SPRING, TOKEN, Api, auth, check_schema

from orchestrator.simulator import SimulatorOptions

GENERATE = "/generate/video/kling/kling-2.5"


def tiny_png(width: int = 3, height: int = 2) -> bytes:
    """A valid PNG of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\0" + b"\xff\0\0" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}]
)
async def test_401_live_shape(
    simulator: Any, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    """Missing, empty or non-bearer credentials get the live API's {"message":"Unauthorized"}."""
    sim = await simulator(time_scale=0)
    async with http.get(f"{sim.url}/jobs", headers=headers) as response:
        assert response.status == 401
        assert await response.json() == {"message": "Unauthorized"}


async def test_401_spec_shape_and_allow_list(simulator: Any, http: aiohttp.ClientSession) -> None:
    """With an allow-list other tokens are refused; the spec shape has {error}."""
    sim = await simulator(time_scale=0, tokens=f"{TOKEN}, another", auth_error_shape="spec")
    assert (await Api(http, sim.url).list())[0] == 200
    status, answer = await Api(http, sim.url, OTHER_TOKEN).list()
    assert status == 401
    check_schema("/jobs", "get", 401, answer)


async def test_tokens_never_appear_in_introspection(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Accounts are sha256 prefixes; the token text is nowhere in stats or jobs."""
    sim = await simulator(time_scale=0)
    await Api(http, sim.url).created_id()
    dumped = json.dumps(sim.stats()) + json.dumps(sim.jobs())
    assert TOKEN not in dumped
    assert sim.account_id(TOKEN) in sim.stats()["accounts"]
    assert len(sim.account_id(TOKEN)) == 16


async def test_retired_model_is_410(simulator: Any, http: aiohttp.ClientSession) -> None:
    """A retired model answers Krea's model_unavailable body; an unknown one 404."""
    sim = await simulator(
        time_scale=0, start_time=SPRING, retired_models="kling/kling-1=kling/kling-2.5"
    )
    api = Api(http, sim.url)
    status, answer = await api.create("kling/kling-1")
    assert status == 410
    assert answer["error"] == "model_unavailable"
    assert answer["reason"] == "deprecated"
    assert answer["replacement"] == "video/kling/kling-2.5"
    assert answer["sunset_date"] == "2026-05-01"
    assert answer["migration_url"].startswith("https://")
    status, answer = await api.create("kling/kling-99")
    assert status == 404
    assert "kling-99" in answer["error"]


async def test_camel_case_alias_refused_after_sunset(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """startImage works until 2026-06-19 on the simulated clock, then is an unknown key."""
    sim = await simulator(time_scale=0, start_time="2026-06-19T12:00:00Z")
    api = Api(http, sim.url)
    body = {"prompt": "x", "startImage": "https://example.com/a.png", "aspectRatio": "9:16"}
    assert (await api.create(body=body))[0] == 200
    sim.advance(86_400)
    status, answer = await api.create(body=body)
    assert status == 400
    assert "startImage" in answer["error"]
    assert "aspectRatio" in answer["error"]


async def test_asset_upload_then_used_as_start_image(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """A PNG upload answers its URL and size; the URL serves the bytes and works as start_image."""
    sim = await simulator(time_scale=0)
    png = tiny_png()
    form = aiohttp.FormData()
    form.add_field("file", png, filename="frame.png", content_type="image/png")
    form.add_field("description", "first frame")
    async with http.post(f"{sim.url}/assets", data=form, headers=auth()) as response:
        assert response.status == 200
        asset = await response.json()
    check_schema("/assets", "post", 200, asset)
    assert (asset["width"], asset["height"], asset["size_bytes"]) == (3, 2, len(png))
    assert asset["mime_type"] == "image/png"
    assert asset["description"] == "first frame"
    async with http.get(asset["image_url"]) as response:
        assert await response.read() == png
    status, _ = await Api(http, sim.url).create(
        body={"prompt": "x", "start_image": asset["image_url"]}
    )
    assert status == 200


async def test_asset_of_unknown_type_is_400(simulator: Any, http: aiohttp.ClientSession) -> None:
    """A text file is not an accepted asset type."""
    sim = await simulator(time_scale=0)
    form = aiohttp.FormData()
    form.add_field("file", b"hello, world", filename="notes.txt", content_type="text/plain")
    async with http.post(f"{sim.url}/assets", data=form, headers=auth()) as response:
        assert response.status == 400
        check_schema("/assets", "post", 400, await response.json())


async def test_introspection_counts(simulator: Any, http: aiohttp.ClientSession) -> None:
    """Stats count requests per route template, statuses, created bodies and per-account usage."""
    sim = await simulator(time_scale=0, duration_s=10)
    api = Api(http, sim.url)
    await api.create(body={"prompt": "same"})
    await api.create(body={"prompt": "same"})
    await api.create(body={"prompt": "same", "bogus": True})
    job_id = await api.created_id()
    await api.job(job_id)
    stats = sim.stats()
    assert stats["requests"] == {"POST /generate/video/{provider}/{model}": 4, "GET /jobs/{id}": 1}
    assert stats["statuses"] == {"200": 4, "400": 1}
    assert sorted(stats["bodies"].values()) == [1, 2]
    assert stats["jobs_created"] == 3
    account = stats["accounts"][sim.account_id(TOKEN)]
    assert account["jobs"] == 3
    assert account["running"] == 2
    assert account["backlogged"] == 1
    (record,) = [job for job in sim.jobs() if job["job_id"] == job_id]
    assert record["request"] == {"prompt": "a red fox in fresh snow"}
    assert record["model"] == "kling/kling-2.5"


async def test_control_routes_over_http(simulator: Any, http: aiohttp.ClientSession) -> None:
    """/_sim/advance, /_sim/config, /_sim/clock and /_sim/jobs work over HTTP."""
    sim = await simulator(time_scale=0, duration_s=10)
    await Api(http, sim.url).created_id()
    before = sim.now()
    async with http.post(f"{sim.url}/_sim/advance", json={"seconds": 30}) as response:
        assert (await response.json())["now_s"] == pytest.approx(before + 30)
    async with http.post(f"{sim.url}/_sim/config", json={"concurrency": 5, "outage": True}) as r:
        assert (await r.json())["concurrency"] == 5
        assert sim.options.outage is True
    async with http.post(f"{sim.url}/_sim/config", json={"no_such_option": 1}) as response:
        assert response.status == 400
    async with http.get(f"{sim.url}/_sim/jobs", params={"status": "completed"}) as response:
        assert len(await response.json()) == 1
    async with http.get(f"{sim.url}/_sim/stats") as response:
        assert (await response.json())["jobs_created"] == 1


def test_options_validate() -> None:
    """Bad option values are refused when the options are built or changed."""
    with pytest.raises(ValueError, match="fault_5xx_rate"):
        SimulatorOptions(fault_5xx_rate=1.5)
    with pytest.raises(ValueError, match="validation_status"):
        SimulatorOptions(validation_status=418)
    with pytest.raises(ValueError, match="balance_usd"):
        SimulatorOptions(balance_usd="lots")
    with pytest.raises(TypeError, match="nope"):
        SimulatorOptions().changed(nope=1)


async def test_other_accounts_have_their_own_limits(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Concurrency, backlog and balance are per token."""
    sim = await simulator(time_scale=0, concurrency=1, backlog=0)
    assert (await Api(http, sim.url).create())[0] == 200
    assert (await Api(http, sim.url).create())[0] == 429
    assert (await Api(http, sim.url, OTHER_TOKEN).create())[0] == 200


async def test_unknown_route_and_method_are_json(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Unknown paths answer 404 and wrong methods 405, both as {error}."""
    sim = await simulator(time_scale=0)
    async with http.get(f"{sim.url}/nowhere", headers=auth()) as response:
        assert response.status == 404
        assert "error" in await response.json()
    async with http.put(f"{sim.url}/jobs", headers=auth()) as response:
        assert response.status == 405
        assert "error" in await response.json()
    async with http.post(f"{sim.url}{GENERATE}", data=b"x" * 10, headers=auth()) as response:
        assert response.status == 400
