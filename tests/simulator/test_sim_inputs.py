"""Result URLs of the simulator's own jobs as inputs: accepted and traced, or refused 400."""

from __future__ import annotations

from typing import Any

import aiohttp
from sim_support import SPRING, Api, auth, check_schema

IMAGE = "image/google/nano-banana-pro"
VIDEO = "kling/kling-2.5"


async def _completed(sim: Any, api: Api, model: str = IMAGE) -> tuple[str, str]:
    """A job of ``model`` run to completion: (job id, its result URL)."""
    job_id = await api.created_id(model)
    sim.advance(10.01)  # image 8 s, video duration_s=10; jobs created together start 1 ms apart
    _, job = await api.job(job_id)
    assert job["status"] == "completed", job
    return job_id, job["result"]["urls"][0]


def _record(sim: Any, job_id: str) -> dict[str, Any]:
    (record,) = [job for job in sim.jobs() if job["job_id"] == job_id]
    return record


async def test_a_frames_result_url_as_start_image_is_traced(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """A video request carrying an image job's result URL is accepted; the job records the
    body as received and which job its start_image came from (also over /_sim/jobs)."""
    sim = await simulator(time_scale=0, duration_s=10)
    api = Api(http, sim.url)
    frame, url = await _completed(sim, api)
    body = {"prompt": "the fox runs", "start_image": url}
    status, created = await api.create(VIDEO, body)
    assert status == 200, created
    record = _record(sim, created["job_id"])
    assert record["request"] == body
    assert record["inputs_from"] == {"start_image": frame}
    assert record["kind"] == "video"
    assert _record(sim, frame)["inputs_from"] == {}
    async with http.get(f"{sim.url}/_sim/jobs") as response:
        listed = {job["job_id"]: job for job in await response.json()}
    assert listed[created["job_id"]]["inputs_from"] == {"start_image": frame}
    assert listed[created["job_id"]]["request"] == body


async def test_nested_fields_and_video_results_are_traced_by_path(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Own URLs at any depth are keyed by field path; outside URLs and assets are not traced;
    a clip's URL works as start_video; another account's result URL works too (public CDN)."""
    sim = await simulator(time_scale=0, duration_s=10)
    api, other = Api(http, sim.url), Api(http, sim.url, "sim-test-token-charlie")
    first, first_url = await _completed(sim, api)
    second, second_url = await _completed(sim, other)
    clip, clip_url = await _completed(sim, api, VIDEO)
    form = aiohttp.FormData()
    form.add_field("file", b"\x89PNG\r\n\x1a\n" + b"\x00" * 32, filename="a.png")
    async with http.post(f"{sim.url}/assets", data=form, headers=auth()) as response:
        asset_url = (await response.json())["image_url"]
    body = {
        "prompt": "a collage",
        "image_urls": [first_url, "https://example.com/x.png", second_url, asset_url],
        "style_images": [{"strength": 1, "url": first_url}],
    }
    status, created = await api.create(IMAGE, body)
    assert status == 200, created
    assert _record(sim, created["job_id"])["inputs_from"] == {
        "image_urls[0]": first,
        "image_urls[2]": second,
        "style_images[0].url": first,
    }
    status, created = await api.create(VIDEO, {"prompt": "continue", "start_video": clip_url})
    assert status == 200, created
    assert _record(sim, created["job_id"])["inputs_from"] == {"start_video": clip}


async def test_camel_case_alias_is_traced_under_its_field(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """Before the alias sunset ``startImage`` is start_image: traced under the field's name,
    while the recorded request keeps what was sent."""
    sim = await simulator(time_scale=0, start_time=SPRING)
    api = Api(http, sim.url)
    frame, url = await _completed(sim, api)
    status, created = await api.create(VIDEO, {"prompt": "go", "startImage": url})
    assert status == 200, created
    record = _record(sim, created["job_id"])
    assert record["inputs_from"] == {"start_image": frame}
    assert record["request"] == {"prompt": "go", "startImage": url}


async def test_bad_or_expired_signatures_are_400_naming_the_field(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """With url_ttl_s, a tampered, unsigned or expired own URL cannot be fetched: 400 {error}
    naming the field, no job; a freshly issued URL is accepted."""
    sim = await simulator(time_scale=0, url_ttl_s=60)
    api = Api(http, sim.url)
    frame, url = await _completed(sim, api)
    jobs_before = sim.stats()["jobs_created"]
    tampered = url.replace("sig=", "sig=0")
    cases = [
        ({"start_image": tampered}, "start_image", "Invalid signature"),
        ({"end_image": url.split("?")[0]}, "end_image", "requires a signature"),
    ]
    for fields, name, reason in cases:
        status, answer = await api.create(VIDEO, {"prompt": "go", **fields})
        assert status == 400, answer
        assert answer["error"].startswith(f"Could not download the file given in {name}:")
        assert reason in answer["error"]
        check_schema("/generate/video/kling/kling-2.5", "post", 400, answer)
    sim.advance(61)
    body = {"prompt": "xyz", "image_urls": ["https://example.com/a.png", url]}
    status, answer = await api.create(IMAGE, body)
    assert status == 400
    assert "image_urls[1]" in answer["error"]
    assert "expired" in answer["error"]
    assert sim.stats()["jobs_created"] == jobs_before
    fresh = (await api.job(frame))[1]["result"]["urls"][0]
    status, created = await api.create(VIDEO, {"prompt": "go", "start_image": fresh})
    assert status == 200, created
    assert _record(sim, created["job_id"])["inputs_from"] == {"start_image": frame}


async def test_urls_of_files_that_do_not_exist_are_400(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """An own URL naming an unfinished job, an unknown job or the wrong extension is refused
    as Krea would fail to fetch it."""
    sim = await simulator(time_scale=0)
    api = Api(http, sim.url)
    pending = await api.created_id(IMAGE)
    for url in (
        f"{sim.url}/images/{pending}.png",
        f"{sim.url}/images/00000000-0000-4000-8000-000000000000.png",
        f"{sim.url}/videos/{pending}.mp4",
    ):
        status, answer = await api.create(VIDEO, {"prompt": "go", "start_image": url})
        assert status == 400, url
        assert "start_image" in answer["error"]
    sim.advance(8)
    status, _ = await api.create(
        VIDEO, {"prompt": "go", "start_image": f"{sim.url}/images/{pending}.png"}
    )
    assert status == 200


async def test_input_check_comes_after_validation_and_before_capacity(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """A body that is invalid is refused for that first; a bad own URL is a 400 even when the
    account is full (it would otherwise be a 429)."""
    sim = await simulator(time_scale=0, concurrency=1, backlog=0)
    api = Api(http, sim.url)
    assert (await api.create(IMAGE, {"prompt": "xyz"}))[0] == 200
    bad = f"{sim.url}/images/00000000-0000-4000-8000-000000000000.png"
    status, answer = await api.create(VIDEO, {"prompt": "go", "start_image": bad, "bogus": 1})
    assert status == 400
    assert "bogus" in answer["error"]
    assert "Could not download" not in answer["error"]
    status, answer = await api.create(VIDEO, {"prompt": "go", "start_image": bad})
    assert status == 400
    assert "start_image" in answer["error"]
    assert (await api.create(VIDEO, {"prompt": "go"}))[0] == 429
