"""One verified file from one URL: never a partial file under its final name.

Every file goes through the same sequence (RELIABILITY P4.1-P4.6):

1. Stream into ``.<name>.part`` beside the target (same filesystem, so the rename is atomic),
   resuming a partial file with ``Range`` + ``If-Range`` (its ETag is in ``.<name>.part.json``);
   a ``200`` to a range request restarts from zero, a ``206`` must start where the file ends.
2. Count the bytes against the announced length, walk the MP4 boxes (``mp4.check_boxes``), or
   for a still the image's structure (``image_file.check_handle``), and hash the bytes as they
   are written (a 32 MiB file is not read back just to hash it).
3. ``fsync`` the file, ``os.replace`` it onto the target, ``fsync`` the directory; only then does
   the caller record the job as ``done``, with the size, sha256 and path returned here. A
   still's target ends with ``.{ext}`` (``still_names``): its file is named after the format
   its bytes were verified to be (``x.png``, ``x.jpg``, ``x.webp``).

Blocking file work (every open, write, hash, fsync and disk-space probe) runs in threads, never on
the event loop, where a 2 GB re-hash would stall polling and the progress panel; only a stat or a
mkdir, cheaper than a hop, runs on the loop. It is batched so a small file costs one hop (space
check, open, write, check, fsync, rename, directory fsync together): hops to a thread and back,
with the GIL hand-offs they bring, were most of the CPU a small download cost. Files up to
:data:`SMALL_FILE` stay in memory until that hop and record no resume point unless the transfer
is cut (a crash mid-way costs at most that much again); larger ones are written as they arrive
with their resume point first.
Either way a cut or a timeout keeps what arrived, and the next attempt asks only for the rest.

A full disk (or a file size limit) deletes the temp file, never retrying an fsync that failed on
it, and raises :class:`~orchestrator.errors.DiskFull`. The media host never sees the API key:
callers pass a session of their own.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp

from orchestrator import errors
from orchestrator.image_file import EXTENSIONS, check_handle
from orchestrator.mp4 import check_boxes
from orchestrator.still_names import final_path, is_still

FLUSH_BYTES = 1 << 20  #: bytes gathered before a write to the temp file
SMALL_FILE = 1 << 20  #: files up to this size are written in one go, not resumed
DISK_MARGIN = 16 << 20
#: No room for this file: no space, over quota, or past a file size limit (EFBIG, ``ulimit -f``).
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass(frozen=True)
class Fetched:
    """A verified file: its size, sha256, and modification time once under its final name."""

    size: int
    sha256: str
    mtime_ns: int | None = None
    path: Path | None = None  #: its final name, when it differs from the target's (a still)


def part_paths(target: Path) -> tuple[Path, Path]:
    """The temp file and its resume metadata, beside the target."""
    return target.with_name(f".{target.name}.part"), target.with_name(f".{target.name}.part.json")


async def fetch(session: aiohttp.ClientSession, url: str, target: Path) -> Fetched:
    """Download ``url`` to ``target`` through the safe sequence; resumes a previous partial file."""
    part, meta = part_paths(target)
    offset, etag = _resume_point(part, meta)  # a stat or two: cheaper than a hop to a thread
    headers = {"Range": f"bytes={offset}-", "If-Range": etag} if offset and etag else {}
    writer: _PartWriter | None = None
    try:
        async with session.get(url, headers=headers) as response:
            total, offset = _plan(response, offset, url)
            etag = response.headers.get("ETag")
            writer = _PartWriter(part, target, offset, offset if total is None else total, etag)
            tail = bytearray()
            if total is not None:  # None: a 416 for a file that is already whole
                if total > SMALL_FILE:  # a small one is checked in finish's hop, not one more
                    await asyncio.to_thread(writer.prepare)
                tail = await _stream(response, writer)
    except aiohttp.ClientConnectorError as exc:  # before ClientOSError: nothing was received
        _close(writer)
        raise errors.DownloadError(
            f"cannot connect to the media host ({exc.os_error.strerror or 'refused'})",
            url=_safe(url),
        ) from None
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        _close(writer)
        got = await asyncio.to_thread(_size_of, part)
        raise errors.Truncated(writer.total if writer else -1, got, url=_safe(url)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        _close(writer)
        raise errors.DownloadError(
            f"download failed ({type(exc).__name__})", url=_safe(url)
        ) from None
    except BaseException:
        _close(writer)
        raise
    return await asyncio.to_thread(writer.finish, tail, url)


class _PartWriter:
    """The temp file of one attempt, hashed as it is written. Its methods block: use a thread."""

    def __init__(self, part: Path, target: Path, offset: int, total: int, etag: str | None) -> None:
        self.part, self.target, self.offset, self.total, self.etag = (
            part,
            target,
            offset,
            total,
            etag,
        )
        self.meta = part_paths(target)[1]
        self._handle: BinaryIO | None = None
        self._digest = hashlib.sha256()

    def write(self, data: bytes | bytearray) -> None:
        write_chunk(self._open(), self.part, self.target, data, self.total)
        self._digest.update(data)

    def prepare(self) -> None:
        """Before a large body: room for the rest, and a resume point (a crash mid-way resumes
        instead of restarting)."""
        _ensure_space(self.target, self.total - self.offset)
        self.save_resume_point()

    def save_resume_point(self) -> None:
        """Record the ETag and length, so a later attempt can ask for the rest with ``Range``."""
        self.meta.write_text(json.dumps({"etag": self.etag, "total": self.total}))

    def keep(self, data: bytes | bytearray) -> None:
        """After a cut: write what arrived and the resume point, for the next attempt."""
        self.write(data)
        self.save_resume_point()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def finish(self, tail: bytes | bytearray, url: str) -> Fetched:
        """Write the tail, verify, fsync, rename, fsync the directory."""
        if self.total <= SMALL_FILE:
            _ensure_space(self.target, self.total - self.offset)  # prepare did a large one's
        try:
            if tail:
                self.write(tail)
            handle = self._open()
            handle.flush()
            size = handle.seek(0, os.SEEK_END)
            if size != self.total:
                raise errors.Truncated(self.total, size, url=_safe(url))
            try:
                target = self._verified(handle, size)
            except (errors.NotMp4, errors.NotImage):
                self.close()
                self.part.unlink(missing_ok=True)
                self.meta.unlink(missing_ok=True)
                raise
            self._fsync(handle)
        finally:
            self.close()
        os.replace(self.part, target)
        _fsync_dir(target.parent)
        self.meta.unlink(missing_ok=True)
        renamed = None if target == self.target else target
        return Fetched(size, self._digest.hexdigest(), target.stat().st_mtime_ns, renamed)

    def _verified(self, handle: BinaryIO, size: int) -> Path:
        """Check the whole file is what it should be; the name it goes under."""
        if not is_still(self.target.name):
            check_boxes(handle, size, name=self.part.name)
            return self.target
        extension = EXTENSIONS[check_handle(handle, size, name=self.part.name)]
        return self.target.with_name(final_path(self.target.name, extension))

    def _open(self) -> BinaryIO:
        if self._handle is None:
            handle = self.part.open("r+b" if self.offset else "w+b")
            handle.truncate(self.offset)
            while handle.tell() < self.offset:  # the bytes a previous attempt left: hash them
                self._digest.update(handle.read(min(FLUSH_BYTES, self.offset - handle.tell())))
            handle.seek(self.offset)
            self._handle = handle
        return self._handle

    def _fsync(self, handle: BinaryIO) -> None:
        try:
            os.fsync(handle.fileno())
        except OSError as exc:
            self.close()
            _fail_full(exc, self.part, self.target, self.total)
            raise


async def _stream(response: aiohttp.ClientResponse, writer: _PartWriter) -> bytearray:
    """Write the body as it comes, ``FLUSH_BYTES`` at a time; returns the unwritten tail.

    One write (with its hashing) runs in a thread while the next chunk is read from the socket:
    at most one at a time, so the file is written in order.
    """
    buffer = bytearray()
    writing: asyncio.Future[None] | None = None
    try:
        async for chunk in response.content.iter_chunked(FLUSH_BYTES):
            buffer += chunk
            if len(buffer) >= FLUSH_BYTES:
                data, buffer = buffer, bytearray()
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(writer.write, data))
        if writing is not None:
            await writing
    except errors.DiskFull:
        raise
    except BaseException:
        # cut, timed out or stopped: keep what came, the next attempt resumes after it
        if writing is not None and not writing.done():
            await asyncio.wait([writing])
        if buffer and (writing is None or _succeeded(writing)):
            await asyncio.to_thread(writer.keep, buffer)
        raise
    return buffer


def _succeeded(future: asyncio.Future[None]) -> bool:
    return not future.cancelled() and future.exception() is None


def write_chunk(
    handle: BinaryIO, part: Path, target: Path, data: bytes | bytearray, total: int
) -> None:
    """Write and flush ``data``; on a full disk drop the temp file and raise DiskFull."""
    try:
        handle.write(data)
        handle.flush()
    except OSError as exc:
        _fail_full(exc, part, target, total)
        raise


def _fail_full(exc: OSError, part: Path, target: Path, total: int) -> None:
    """On a full disk, drop the temp file (never fsync it again) and raise DiskFull."""
    if exc.errno in FULL:
        part.unlink(missing_ok=True)
        raise errors.DiskFull(str(target), total) from None


def _close(writer: _PartWriter | None) -> None:
    if writer is not None:
        writer.close()


def _resume_point(part: Path, meta: Path) -> tuple[int, str | None]:
    """Where a previous attempt stopped (offset, ETag); makes the folder if need be."""
    part.parent.mkdir(parents=True, exist_ok=True)
    if not part.exists():
        return 0, None
    try:
        etag = json.loads(meta.read_text()).get("etag")
    except (OSError, ValueError, AttributeError):
        etag = None
    if not etag:  # without a validator a resumed file could mix two versions: start over
        part.unlink()
        return 0, None
    return part.stat().st_size, str(etag)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _plan(response: aiohttp.ClientResponse, offset: int, url: str) -> tuple[int | None, int]:
    """(total size, offset to write at) from the answer; raises for answers we cannot use."""
    status = response.status
    if status in (401, 403, 404, 410):
        raise errors.UrlExpired(f"the media host answered {status}", url=_safe(url))
    if status == 206:
        start, total = _content_range(response.headers.get("Content-Range", ""))
        if start != offset or total is None:
            raise errors.DownloadError(
                "a partial answer does not continue the file", url=_safe(url)
            )
        return total, offset
    if status == 416:
        _, total = _content_range(response.headers.get("Content-Range", ""))
        if total is not None and total == offset:
            return None, offset
        raise errors.DownloadError("the server cannot resume this file", url=_safe(url))
    if status != 200:
        raise errors.DownloadError(f"the media host answered {status}", url=_safe(url))
    if response.content_length is None:
        raise errors.DownloadError("the media host gave no length", url=_safe(url))
    return response.content_length, 0


def _content_range(value: str) -> tuple[int | None, int | None]:
    """``bytes 100-199/2000`` → (100, 2000); ``bytes */2000`` → (None, 2000)."""
    try:
        _, spec = value.split(" ", 1)
        span, total = spec.split("/", 1)
        start = None if span == "*" else int(span.split("-", 1)[0])
        return start, (None if total == "*" else int(total))
    except ValueError:
        return None, None


def _ensure_space(target: Path, needed: int) -> None:
    if shutil.disk_usage(target.parent).free < needed + DISK_MARGIN:
        raise errors.DiskFull(str(target), needed + DISK_MARGIN)


def room_for(directory: Path, size: int) -> bool:
    """Whether a ``size``-byte file fits: free space, and a sparse probe of that length (free
    space cannot show EFBIG; the probe costs no space and fails as the real writes would)."""
    if shutil.disk_usage(directory).free < size:
        return False
    try:
        with tempfile.TemporaryFile(dir=directory) as probe:
            probe.truncate(size)
    except OSError as exc:
        if exc.errno in FULL:
            return False
        raise
    return True


def sha256_of(path: Path) -> str:
    """The sha256 of a file, read in chunks (a clip may be gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(FLUSH_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe(url: str) -> str:
    """A URL without its query string (signatures) for messages."""
    return url.split("?", 1)[0]


def inside(out_dir: Path, relative: str) -> Path:
    """``out_dir / relative``, refused if symlinks would take the write outside ``out_dir``."""
    root = out_dir.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise errors.DownloadError(f"refusing to write {relative}: it resolves outside {root}")
    return target


def verified_on_disk(
    path: Path,
    size: int | None,
    sha256: str | None,
    *,
    full: bool = False,
    mtime_ns: int | None = None,
) -> bool:
    """True when ``path`` holds the recorded file.

    The quick check (rsync's and make's): same size and, when recorded, same modification time;
    a file whose time changed is read to compare its sha256, as is every file when ``full``.
    """
    try:
        stat = path.stat()
    except OSError:
        return False
    if size is None or stat.st_size != size:
        return False
    if not full and (mtime_ns is None or stat.st_mtime_ns == mtime_ns):
        return True
    return sha256 is not None and sha256_of(path) == sha256
