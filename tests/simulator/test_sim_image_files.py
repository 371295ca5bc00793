"""Image results: a real PNG (or baseline JPEG) per job on the CDN, with ranges and expiry."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from typing import Any

import aiohttp
import av
import pytest
from sim_support import Api

from orchestrator.simulator import image_bytes_for
from orchestrator.simulator.images import HEIGHT, WIDTH, colour_of

IMAGE = "image/google/nano-banana-pro"
UNI = "image/luma/uni-1"


async def _completed(sim: Any, api: Api, model: str = IMAGE, **body: Any) -> tuple[str, str]:
    job_id = await api.created_id(model, **body)
    sim.advance(8.01)  # 8 s image jobs; a job created at the same instant starts 1 ms later
    _, job = await api.job(job_id)
    assert job["status"] == "completed", job
    (url,) = job["result"]["urls"]
    return job_id, url


async def _get(http: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, Any, bytes]:
    async with http.get(url, headers=headers) as response:
        return response.status, response.headers, await response.read()


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk; asserts the signature, the CRCs and that they tile."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, position = [], 8
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        payload = data[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length : position + 12 + length])
        assert crc == zlib.crc32(kind + payload), kind
        chunks.append((kind, payload))
        position += 12 + length
    assert position == len(data)
    return chunks


def decoded(data: bytes) -> tuple[str, int, int, tuple[int, int, int]]:
    """(codec, width, height, RGB of the centre pixel) as FFmpeg (through PyAV) decodes it."""
    with av.open(io.BytesIO(data)) as container:
        (frame,) = list(container.decode(video=0))
        codec = container.streams.video[0].codec_context.name
    rgb = frame.to_rgb()
    plane = rgb.planes[0]
    offset = plane.line_size * (frame.height // 2) + 3 * (frame.width // 2)
    pixel = bytes(plane)[offset : offset + 3]
    return codec, frame.width, frame.height, (pixel[0], pixel[1], pixel[2])


@pytest.fixture
async def done(simulator: Any, http: aiohttp.ClientSession) -> tuple[Any, Api, str, str]:
    """A simulator with one completed image job: (sim, api, job id, result URL)."""
    sim = await simulator(time_scale=0)
    api = Api(http, sim.url)
    job_id, url = await _completed(sim, api)
    return sim, api, job_id, url


async def test_each_image_job_serves_its_own_valid_png(
    done: tuple[Any, Api, str, str], http: aiohttp.ClientSession
) -> None:
    """The URL ends .png; the body is a valid PNG (CRCs, IHDR, IDAT) equal to the reference,
    decodes to WIDTH x HEIGHT in the job's colour, and differs per job."""
    sim, api, job_id, url = done
    assert url == f"{sim.url}/images/{job_id}.png"
    status, headers, body = await _get(http, url)
    assert status == 200
    assert headers["Content-Type"] == "image/png"
    assert int(headers["Content-Length"]) == len(body)
    assert body == image_bytes_for(job_id, "png")
    chunks = png_chunks(body)
    assert [kind for kind, _ in chunks] == [b"IHDR", b"tEXt", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (WIDTH, HEIGHT, 8, 2, 0, 0, 0)
    assert len(zlib.decompress(chunks[2][1])) == HEIGHT * (1 + 3 * WIDTH)
    assert job_id.encode() in chunks[1][1]
    assert decoded(body) == ("png", WIDTH, HEIGHT, colour_of(job_id))
    _, other_url = await _completed(sim, api)
    other = (await _get(http, other_url))[2]
    assert hashlib.sha256(other).digest() != hashlib.sha256(body).digest()


async def test_output_format_jpeg_serves_a_baseline_jpeg(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """luma/uni-1 with output_format jpeg gets a .jpg URL and a decodable baseline JPEG;
    png or no format gets a PNG."""
    sim = await simulator(time_scale=0)
    api = Api(http, sim.url)
    job_id, url = await _completed(sim, api, UNI, output_format="jpeg")
    assert url == f"{sim.url}/images/{job_id}.jpg"
    status, headers, body = await _get(http, url)
    assert status == 200
    assert headers["Content-Type"] == "image/jpeg"
    assert int(headers["Content-Length"]) == len(body) == len(image_bytes_for(job_id, "jpg"))
    assert body[:4] == b"\xff\xd8\xff\xe0"
    assert body[6:11] == b"JFIF\x00"
    assert b"\xff\xc0" in body  # SOF0: baseline
    assert body.endswith(b"\xff\xd9")
    codec, width, height, pixel = decoded(body)
    assert (codec, width, height) == ("mjpeg", WIDTH, HEIGHT)
    assert all(abs(a - b) <= 2 for a, b in zip(pixel, colour_of(job_id), strict=True))
    for fmt in ({"output_format": "png"}, {}):
        png_id, png_url = await _completed(sim, api, UNI, **fmt)
        assert png_url.endswith(f"/images/{png_id}.png")
        assert decoded((await _get(http, png_url))[2])[0] == "png"


async def test_image_ranges_head_and_if_range(
    done: tuple[Any, Api, str, str], http: aiohttp.ClientSession
) -> None:
    """Range gives 206 with Content-Range; HEAD has the length and no body; If-Range works."""
    _, _, job_id, url = done
    full = image_bytes_for(job_id, "png")
    status, headers, body = await _get(http, url, Range="bytes=8-40")
    assert (status, body) == (206, full[8:41])
    assert headers["Content-Range"] == f"bytes 8-40/{len(full)}"
    status, _, body = await _get(http, url, Range="bytes=-12")
    assert (status, body) == (206, full[-12:])
    status, headers, _ = await _get(http, url, Range=f"bytes={len(full)}-")
    assert status == 416
    async with http.head(url) as response:
        etag = response.headers["ETag"]
        assert response.content_length == len(full)
        assert response.headers["Accept-Ranges"] == "bytes"
        assert await response.read() == b""
    assert (await _get(http, url, Range="bytes=4-", **{"If-Range": etag}))[0] == 206
    status, _, body = await _get(http, url, Range="bytes=4-", **{"If-Range": '"stale"'})
    assert (status, body) == (200, full)


async def test_wrong_or_unfinished_image_paths_are_404(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """No file before completion; the other extension, the video path and a video job's id
    under /images/ are all 404."""
    sim = await simulator(time_scale=0, duration_s=10)
    api = Api(http, sim.url)
    pending = await api.created_id(IMAGE)
    assert (await _get(http, f"{sim.url}/images/{pending}.png"))[0] == 404
    job_id, _ = await _completed(sim, api)
    video = await api.created_id()
    sim.advance(10)
    for path in (
        f"/images/{job_id}.jpg",
        f"/videos/{job_id}.mp4",
        f"/images/{video}.png",
        f"/previews/{job_id}.mp4",
        "/images/nothing.png",
    ):
        assert (await _get(http, sim.url + path))[0] == 404, path
    assert (await _get(http, f"{sim.url}/images/{job_id}.png"))[0] == 200
    assert (await _get(http, f"{sim.url}/videos/{video}.mp4"))[0] == 200


async def test_image_preview_then_final_file(simulator: Any, http: aiohttp.ClientSession) -> None:
    """With intermediate_rate=1 an image job shows a .png preview (its own picture) during
    intermediate-complete, then the final .png."""
    sim = await simulator(time_scale=0, intermediate_rate=1.0)
    api = Api(http, sim.url)
    job_id = await api.created_id(IMAGE)
    sim.advance(7.5)  # intermediate-complete from 90 % of 8 s
    _, job = await api.job(job_id)
    assert job["status"] == "intermediate-complete"
    (preview,) = job["result"]["urls"]
    assert preview == f"{sim.url}/previews/{job_id}.png"
    status, headers, body = await _get(http, preview)
    assert (status, headers["Content-Type"]) == (200, "image/png")
    assert body == image_bytes_for(f"preview:{job_id}", "png")
    sim.advance(0.5)
    _, job = await api.job(job_id)
    assert job["result"]["urls"] == [f"{sim.url}/images/{job_id}.png"]


async def test_image_urls_expire_like_video_urls(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """With url_ttl_s an image URL is signed, refused 403 after the TTL, fresh from GET."""
    sim = await simulator(time_scale=0, url_ttl_s=60)
    api = Api(http, sim.url)
    job_id, url = await _completed(sim, api)
    assert "sig=" in url
    assert (await _get(http, url))[0] == 200
    sim.advance(61)
    status, _, body = await _get(http, url)
    assert (status, b"expired" in body) == (403, True)
    fresh = (await api.job(job_id))[1]["result"]["urls"][0]
    assert (await _get(http, fresh))[0] == 200
    assert (await _get(http, fresh.split("?")[0]))[0] == 403


async def test_image_downloads_are_counted_and_can_be_cut(
    done: tuple[Any, Api, str, str], http: aiohttp.ClientSession
) -> None:
    """Image GETs are counted under their route; the truncate fault cuts them like videos."""
    sim, _, _, url = done
    assert (await _get(http, url))[0] == 200
    assert sim.stats()["requests"]["GET /images/{job_id}.{ext}"] == 1
    sim.configure(fault_truncate_rate=1.0)
    with pytest.raises(aiohttp.ClientPayloadError):
        await _get(http, url)
