"""Poster frames: the first frame of a verified clip as a small JPEG, made once and only on demand.

A gallery of 10,000 clips needs a picture of each, and decoding video is the slowest thing the
web view does. Why it is built this way:

* **Named by content.** A poster is ``<cache_dir>/<sha256>.jpg``, the sha256 being the one the
  ledger recorded for the verified clip, so it is made once and never stale: a clip with other
  bytes (a new take, a new download) has another name. Nothing records which posters exist; the
  file is the record, and deleting the folder only costs decodes.
* **Lazily, off the loop.** Nothing is made until asked. FFmpeg's decode blocks, so it runs in a
  worker thread (``asyncio.to_thread``), at most :data:`DECODES` at a time, and asking for a
  clip whose poster is being made waits for that decode instead of starting another: a page of
  200 posters costs 200 decodes once, and never stalls polling or the other requests.
* **Never half a JPEG.** The JPEG is written to a temp file beside its name, then ``os.replace``
  puts it there: a reader sees the whole poster or none, and a crash leaves a stray temp file.
* **No Pillow.** PyAV (FFmpeg's binding, with FFmpeg in its wheels) decodes the clip and encodes
  the JPEG with FFmpeg's ``mjpeg`` encoder. It is imported on first use: ``orchestrator
  --help`` and ``status`` do not load FFmpeg.
* **A bad clip is no poster.** A missing, truncated or unreadable clip, or one with no video,
  gives None (logged at debug), never an exception: the gallery shows a blank tile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import weakref
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from av.video.frame import VideoFrame

logger = logging.getLogger(__name__)
#: The widest poster (px); a narrower clip keeps its own width, its aspect always.
MAX_WIDTH = 320
#: Decodes at once, per event loop: enough to keep a page filling, few enough to leave cores free.
DECODES = 2


class Posters:
    """The decodes of one event loop: a bound on how many at once, one per poster in flight."""

    def __init__(self, concurrency: int = DECODES) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._making: dict[Path, asyncio.Future[Path | None]] = {}
        #: Clips decoded (not answered from the cache): what the posters asked for cost.
        self.decoded = 0

    async def poster(self, clip: Path, sha256: str, cache_dir: Path) -> Path | None:
        """The poster of ``clip`` (whose verified sha256 is ``sha256``); None for a bad clip."""
        target = cache_dir / f"{sha256}.jpg"
        if _made(target):
            return target
        making = self._making.get(target)
        if making is None:
            making = asyncio.ensure_future(self._make(clip, target))
            self._making[target] = making
            making.add_done_callback(lambda _: self._making.pop(target, None))
        # shielded: a caller that gives up (a closed page) does not cancel the others' decode
        return await asyncio.shield(making)

    async def _make(self, clip: Path, target: Path) -> Path | None:
        async with self._slots:
            if _made(target):  # made while this one waited for a slot
                return target
            self.decoded += 1
            return await asyncio.to_thread(_make_poster, clip, target)


_SHARED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Posters] = weakref.WeakKeyDictionary()


def shared() -> Posters:
    """The running loop's :class:`Posters` (a semaphore belongs to one loop)."""
    loop = asyncio.get_running_loop()
    posters = _SHARED.get(loop)
    if posters is None:
        posters = _SHARED[loop] = Posters()
    return posters


async def poster(clip: Path, sha256: str, cache_dir: Path) -> Path | None:
    """``cache_dir/<sha256>.jpg``, the first frame of the verified ``clip``, made if missing.

    None when the clip is missing, unreadable or has no video stream. Decodes are shared by
    every caller on the running loop (see :class:`Posters`).
    """
    return await shared().poster(clip, sha256, cache_dir)


def _made(target: Path) -> bool:
    """Whether the poster is there: a stat, cheaper than a hop to a thread."""
    return target.is_file()


def _make_poster(clip: Path, target: Path) -> Path | None:
    """Decode, encode and write the poster (blocks: runs in a thread); None for a bad clip."""
    jpeg = first_frame_jpeg(clip)
    if jpeg is None:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(jpeg)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target


def first_frame_jpeg(clip: Path, max_width: int = MAX_WIDTH) -> bytes | None:
    """The JPEG bytes of ``clip``'s first video frame, at most ``max_width`` wide; None if none."""
    import av  # FFmpeg: loaded by the first poster, not by every command
    import av.logging

    # FFmpeg's own complaints about a bad file become this module's debug lines: PyAV before 13
    # prints them on stderr ("moov atom not found"), where a gallery's bad clip must not shout.
    with av.logging.Capture() as said:
        try:
            return _decoded_jpeg(clip, max_width)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            logger.debug("no poster for %s: %s", clip, exc)
            return None
        finally:
            for _level, source, message in said:
                logger.debug("FFmpeg on %s: %s: %s", clip, source, message.strip())


def _decoded_jpeg(clip: Path, max_width: int) -> bytes | None:
    """:func:`first_frame_jpeg` without the error handling."""
    import av

    with av.open(str(clip)) as container:
        if not container.streams.video:
            logger.debug("no poster for %s: it has no video stream", clip)
            return None
        frame = next(container.decode(container.streams.video[0]), None)
        if frame is None:
            logger.debug("no poster for %s: no frame decodes", clip)
            return None
        return _jpeg(frame, max_width)


def _jpeg(frame: VideoFrame, max_width: int) -> bytes:
    """One frame, scaled to ``max_width`` (aspect kept, never enlarged), as a JPEG."""
    import av

    width = min(frame.width, max_width)
    height = max(1, round(frame.height * width / frame.width))
    small = frame.reformat(width=width, height=height, format="yuvj420p")  # JPEG's full range
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
    encoder.time_base = Fraction(1, 1)  # one picture; the encoder still wants a time base
    packets = [*encoder.encode(small), *encoder.encode(None)]
    return b"".join(bytes(packet) for packet in packets)
