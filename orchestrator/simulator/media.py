"""Result videos: a real, playable MP4 per job, any size, any byte range, never held in memory.

Every job's file is the packaged sample clip (``ftyp moov free mdat``, 4,972 bytes) with one more
top-level ``free`` box appended. Appending keeps every offset inside ``moov`` valid, so the file
still plays (checked with ffprobe), and the ``free`` box carries the job id and padding derived
from the job id, so every job's bytes and sha256 differ. With ``media_bytes`` set, the padding
brings the file to exactly that size (a 64-bit box header is used past 4 GiB).

Bytes are computed on the fly from a 64 KiB block derived from the key, so any range of a 50 MB
file costs only the bytes sent. ``media_bytes_for``/``media_sha256_for`` are the pure reference
that tests compare downloads against.

Also here: ``Range``/``If-Range`` interpretation (one range per request; a multi-range request
gets the whole file, as RFC 9110 allows).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

BLOCK_BYTES = 65536
#: Padding of a natural-size file.
NATURAL_PADDING = 4096
_MAX_32 = 0xFFFFFFFF


@cache
def sample_clip() -> bytes:
    """The packaged 4,972-byte H.264 sample."""
    return resources.files("orchestrator").joinpath("data/sample.mp4").read_bytes()


@lru_cache(maxsize=256)
def _block(key: str) -> bytes:
    return hashlib.shake_256(b"krea-simulator padding\n" + key.encode()).digest(BLOCK_BYTES)


@dataclass(frozen=True)
class MediaFile:
    """The virtual file for ``key`` (a job id, or ``preview:<job id>``) at a given size."""

    key: str
    size: int
    prefix: bytes  #: sample clip + free box header + marker; padding follows

    @property
    def content_type(self) -> str:
        return "video/mp4"

    @property
    def etag(self) -> str:
        """A strong validator: the content is a pure function of (key, size)."""
        return '"' + hashlib.sha256(f"{self.key}:{self.size}".encode()).hexdigest()[:32] + '"'

    def chunks(self, start: int, end: int, chunk_bytes: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` in pieces of at most ``chunk_bytes``."""
        position = start
        while position < end:
            stop = min(end, position + chunk_bytes)
            yield self.read(position, stop)
            position = stop

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the file."""
        end = min(end, self.size)
        head = self.prefix[start:end] if start < len(self.prefix) else b""
        pad_start = max(start, len(self.prefix)) - len(self.prefix)
        pad_end = end - len(self.prefix)
        return head + _padding(self.key, pad_start, pad_end) if pad_end > pad_start else head


@lru_cache(maxsize=1024)  # a download is many Range requests for one file
def media_file(key: str, size: int = 0) -> MediaFile:
    """The file for ``key``; ``size`` 0 means the natural size."""
    sample = sample_clip()
    marker = f"krea-simulator media {key}\n".encode()
    total = size or len(sample) + 8 + len(marker) + NATURAL_PADDING
    box_size = total - len(sample)
    header = (
        struct.pack(">I4s", box_size, b"free")
        if box_size <= _MAX_32
        else struct.pack(">I4sQ", 1, b"free", box_size)
    )
    prefix = sample + header + marker
    if total < len(prefix):
        raise ValueError(f"{total} bytes is too small for a padded MP4 ({len(prefix)} needed)")
    return MediaFile(key=key, size=total, prefix=prefix)


def media_bytes_for(job_id: str, size: int = 0) -> bytes:
    """The whole file a completed job serves (for tests; use ``media_sha256_for`` when large)."""
    media = media_file(job_id, size)
    return media.read(0, media.size)


def media_sha256_for(job_id: str, size: int = 0) -> str:
    """The sha256 of a job's file, computed in chunks."""
    media = media_file(job_id, size)
    digest = hashlib.sha256()
    for chunk in media.chunks(0, media.size, 1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _padding(key: str, start: int, end: int) -> bytes:
    block = _block(key)
    parts = []
    position = start
    while position < end:
        offset = position % BLOCK_BYTES
        take = min(end - position, BLOCK_BYTES - offset)
        parts.append(block[offset : offset + take])
        position += take
    return b"".join(parts)


# -- Range ------------------------------------------------------------------------------------
class Unsatisfiable(Exception):
    """The requested range lies outside the file (answer 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` for a single ``bytes=`` range; None means send the whole file.

    Raises ``Unsatisfiable`` for a syntactically valid range that selects nothing.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # unknown unit or multi-range: ignore the header, as RFC 9110 allows
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if not first:  # suffix range: the last N bytes
        length = int(last)
        if length == 0:
            raise Unsatisfiable
        return max(0, size - length), size
    start = int(first)
    if not last.isdigit() and last:
        return None
    if start >= size:
        raise Unsatisfiable
    end = min(size, int(last) + 1) if last else size
    return (start, end) if end > start else None


def if_range_allows(if_range: str | None, etag: str) -> bool:
    """True when a Range may be honoured: no ``If-Range``, or one naming the current ETag.

    A date (we send no Last-Modified) or another ETag means "the file changed": send it all.
    """
    return if_range is None or if_range.strip() == etag
