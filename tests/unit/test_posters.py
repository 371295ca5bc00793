"""Posters: a clip's first frame as a small JPEG, made once, shared, None for a bad clip."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

from orchestrator import posters
from orchestrator.posters import MAX_WIDTH, Posters
from orchestrator.simulator.media import media_bytes_for


def _clip(tmp_path: Path, job_id: str = "job-1") -> tuple[Path, str]:
    """A clip as the simulator serves it (160x90 H.264), and its sha256."""
    data = media_bytes_for(job_id)
    path = tmp_path / "clips" / f"{job_id}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _wide_clip(path: Path, width: int = 640, height: int = 360) -> Path:
    """A short MPEG-4 clip wider than a poster, encoded here with FFmpeg."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        for index in range(3):
            frame = av.VideoFrame(width, height, "yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _size_of_jpeg(path: Path) -> tuple[int, int]:
    """(width, height) of a JPEG, decoded back with FFmpeg."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    return frame.width, frame.height


async def test_a_poster_is_a_small_jpeg_of_the_first_frame(tmp_path: Path) -> None:
    """The poster is a JPEG named by the clip's sha256 that decodes back, at most 320 px wide."""
    clip, sha256 = _clip(tmp_path)
    made = await posters.poster(clip, sha256, tmp_path / "posters")
    assert made == tmp_path / "posters" / f"{sha256}.jpg"
    assert made.read_bytes()[:2] == b"\xff\xd8"
    assert _size_of_jpeg(made) == (160, 90)  # the clip's own size: never enlarged


async def test_a_wide_clip_is_scaled_to_320_px_keeping_its_aspect(tmp_path: Path) -> None:
    """A 640x360 clip gives a 320x180 poster."""
    clip = _wide_clip(tmp_path / "wide.mp4")
    made = await Posters().poster(clip, "wide", tmp_path / "posters")
    assert made is not None
    assert _size_of_jpeg(made) == (MAX_WIDTH, 180)


async def test_a_poster_is_made_once_and_then_read_from_the_cache(tmp_path: Path) -> None:
    """The second request decodes nothing and leaves the file as it was."""
    clip, sha256 = _clip(tmp_path)
    makers = Posters()
    first = await makers.poster(clip, sha256, tmp_path / "posters")
    assert first is not None
    before = first.stat()
    again = await makers.poster(clip, sha256, tmp_path / "posters")
    assert again == first
    assert makers.decoded == 1
    after = first.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


async def test_concurrent_requests_for_one_clip_share_one_decode(tmp_path: Path) -> None:
    """Ten requests at once for the same clip decode it once; each gets the poster."""
    clip, sha256 = _clip(tmp_path)
    makers = Posters()
    made = await asyncio.gather(
        *(makers.poster(clip, sha256, tmp_path / "posters") for _ in range(10))
    )
    assert set(made) == {tmp_path / "posters" / f"{sha256}.jpg"}
    assert makers.decoded == 1


async def test_many_clips_each_get_their_poster_through_the_bounded_pool(tmp_path: Path) -> None:
    """Twelve different clips through two decode slots: twelve posters, no temp file left."""
    clips = [_clip(tmp_path, f"job-{n}") for n in range(12)]
    makers = Posters(concurrency=2)
    made = await asyncio.gather(
        *(makers.poster(clip, sha, tmp_path / "posters") for clip, sha in clips)
    )
    assert all(path is not None and path.is_file() for path in made)
    assert makers.decoded == 12
    assert sorted(p.name for p in (tmp_path / "posters").iterdir()) == sorted(
        f"{sha}.jpg" for _, sha in clips
    )


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(media_bytes_for("job-1")[:2000], id="truncated"),
        pytest.param(b"<html>not found</html>" * 50, id="garbage"),
        pytest.param(b"", id="empty"),
        pytest.param(None, id="missing"),
    ],
)
async def test_a_bad_clip_gives_no_poster_and_no_file(
    tmp_path: Path, content: bytes | None
) -> None:
    """A truncated, garbage, empty or missing clip gives None, never an exception or a file."""
    clip = tmp_path / "bad.mp4"
    if content is not None:
        clip.write_bytes(content)
    assert await posters.poster(clip, "bad", tmp_path / "posters") is None
    cache = tmp_path / "posters"
    assert not cache.exists() or not list(cache.iterdir())


async def test_a_file_without_video_gives_no_poster(tmp_path: Path) -> None:
    """An MP4 holding only sound has no first frame to show."""
    path = tmp_path / "sound.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))  # silence (new samples are left unset)
        frame.sample_rate, frame.pts = 44100, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert await Posters().poster(path, "sound", tmp_path / "posters") is None


def test_importing_the_module_does_not_load_ffmpeg() -> None:
    """PyAV is loaded by the first poster, so commands that import the module do not pay for it."""
    code = "import sys, orchestrator.posters; print('av' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
