"""Media: per-job playable MP4s, Range/If-Range/HEAD, padding to a size, URL expiry."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import av
import pytest
from sim_support import Api, mp4_boxes

from orchestrator.simulator import media_bytes_for, media_sha256_for


async def _completed_url(sim: Any, api: Api) -> tuple[str, str]:
    job_id = await api.created_id()
    sim.advance(10)
    _, job = await api.job(job_id)
    return job_id, job["result"]["urls"][0]


async def _get(http: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, Any, bytes]:
    async with http.get(url, headers=headers) as response:
        return response.status, response.headers, await response.read()


@pytest.fixture
async def done(simulator: Any, http: aiohttp.ClientSession) -> tuple[Any, Api, str, str]:
    """A simulator with one completed job: (sim, api, job id, media URL)."""
    sim = await simulator(time_scale=0, duration_s=10)
    api = Api(http, sim.url)
    job_id, url = await _completed_url(sim, api)
    return sim, api, job_id, url


async def test_each_job_serves_its_own_valid_mp4(
    done: tuple[Any, Api, str, str], http: aiohttp.ClientSession
) -> None:
    """The body equals the pure reference, differs per job and tiles into ftyp..free boxes."""
    sim, api, job_id, url = done
    status, headers, body = await _get(http, url)
    assert status == 200
    assert headers["Content-Type"] == "video/mp4"
    assert body == media_bytes_for(job_id)
    assert hashlib.sha256(body).hexdigest() == media_sha256_for(job_id)
    assert [kind for kind, _ in mp4_boxes(body)] == [b"ftyp", b"moov", b"free", b"mdat", b"free"]
    assert job_id.encode() in body
    _other_id, other_url = await _completed_url(sim, api)
    other = (await _get(http, other_url))[2]
    assert hashlib.sha256(other).digest() != hashlib.sha256(body).digest()


@pytest.mark.parametrize("size", [0, 20_000, 3_000_000])
async def test_every_served_file_plays(
    done: tuple[Any, Api, str, str], tmp_path: Any, size: int
) -> None:
    """A real decoder (FFmpeg through PyAV) decodes every frame of the file, padded or not."""
    _, _, job_id, _ = done
    path = tmp_path / "clip.mp4"
    path.write_bytes(media_bytes_for(job_id, size))
    with av.open(str(path)) as container:
        (stream,) = container.streams.video
        frames = sum(1 for _ in container.decode(stream))
    assert stream.codec_context.name == "h264"
    assert frames > 0


async def test_media_bytes_pads_to_exact_size(simulator: Any, http: aiohttp.ClientSession) -> None:
    """With media_bytes, every file has exactly that size and the reference sha256."""
    sim = await simulator(time_scale=0, duration_s=10, media_bytes=3_000_000)
    job_id, url = await _completed_url(sim, Api(http, sim.url))
    digest, size = hashlib.sha256(), 0
    async with http.get(url) as response:
        assert response.content_length == 3_000_000
        async for chunk in response.content.iter_chunked(1 << 16):
            digest.update(chunk)
            size += len(chunk)
    assert size == 3_000_000
    assert digest.hexdigest() == media_sha256_for(job_id, 3_000_000)
    assert mp4_boxes(media_bytes_for(job_id, 3_000_000))[-1] == (b"free", 3_000_000 - 4972)


async def test_ranges(done: tuple[Any, Api, str, str], http: aiohttp.ClientSession) -> None:
    """Range gives 206 with Content-Range; suffix ranges work; past the end is 416."""
    _, _, job_id, url = done
    full = media_bytes_for(job_id)
    status, headers, body = await _get(http, url, Range="bytes=100-199")
    assert status == 206
    assert body == full[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(full)}"
    status, _, body = await _get(http, url, Range="bytes=5000-")
    assert status == 206
    assert body == full[5000:]
    status, _, body = await _get(http, url, Range="bytes=-10")
    assert status == 206
    assert body == full[-10:]
    status, headers, _ = await _get(http, url, Range=f"bytes={len(full)}-")
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{len(full)}"


async def test_if_range_and_head(
    done: tuple[Any, Api, str, str], http: aiohttp.ClientSession
) -> None:
    """A matching If-Range keeps the 206, a stale one gets the whole 200; HEAD has no body."""
    _, _, job_id, url = done
    async with http.head(url) as response:
        etag = response.headers["ETag"]
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.content_length == len(media_bytes_for(job_id))
        assert await response.read() == b""
    assert etag.startswith('"')
    assert not etag.startswith("W/")
    status, _, _ = await _get(http, url, Range="bytes=10-", **{"If-Range": etag})
    assert status == 206
    status, _, body = await _get(http, url, Range="bytes=10-", **{"If-Range": '"stale"'})
    assert status == 200
    assert body == media_bytes_for(job_id)


async def test_range_mode_ignore(
    done: tuple[Any, Api, str, str], http: aiohttp.ClientSession
) -> None:
    """range_mode=ignore answers every Range with the full 200."""
    sim, _, job_id, url = done
    sim.configure(range_mode="ignore")
    status, _, body = await _get(http, url, Range="bytes=10-20")
    assert status == 200
    assert body == media_bytes_for(job_id)


async def test_urls_expire_and_fresh_ones_work(simulator: Any, http: aiohttp.ClientSession) -> None:
    """With url_ttl_s a URL is refused 403 after the TTL; GET /jobs issues a working one."""
    sim = await simulator(time_scale=0, duration_s=10, url_ttl_s=60)
    api = Api(http, sim.url)
    job_id, url = await _completed_url(sim, api)
    assert (await _get(http, url))[0] == 200
    sim.advance(61)
    status, _, body = await _get(http, url)
    assert status == 403
    assert b"expired" in body
    _, job = await api.job(job_id)
    fresh = job["result"]["urls"][0]
    assert fresh != url
    assert (await _get(http, fresh))[0] == 200
    assert (await _get(http, fresh.replace("sig=", "sig=0")))[0] == 403
    assert (await _get(http, fresh.split("?")[0]))[0] == 403


async def test_unknown_or_unfinished_media_is_404(
    simulator: Any, http: aiohttp.ClientSession
) -> None:
    """A job that has not completed has no file yet."""
    sim = await simulator(time_scale=0)
    job_id = await Api(http, sim.url).created_id()
    assert (await _get(http, f"{sim.url}/videos/{job_id}.mp4"))[0] == 404
    assert (await _get(http, f"{sim.url}/videos/nothing.mp4"))[0] == 404
