"""Downloading finished videos: completed → downloading → done; never a partial file as final.

Every file goes through the same sequence (RELIABILITY P4.1-P4.6):

1. Stream into ``.<name>.part`` beside the target (same filesystem, so the rename is atomic),
   resuming a partial file with ``Range`` + ``If-Range`` (its ETag is in ``.<name>.part.json``);
   a ``200`` to a range request restarts from zero, a ``206`` must start where the file ends.
2. Count the bytes against the announced length, walk the MP4 boxes (``mp4.check_mp4``), hash it.
3. ``fsync`` the file, ``os.replace`` it onto the target, ``fsync`` the directory; only then is the
   job ``done`` in the ledger, with its size and sha256.

A media host that refuses a once-good URL (401/403/404/410) means the URL expired: a fresh one
comes from ``GET /jobs/{id}``. A full disk deletes the temp file (a failed fsync is never retried
on the same file), pauses every download with one clear message, and resumes once space returns.
The API key is never sent to the media host: downloads use their own session.
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
from orchestrator.clock import now_utc
from orchestrator.jobs import JobRecord, JobState
from orchestrator.mp4 import check_mp4
from orchestrator.pipeline import Pipeline
from orchestrator.retry import Action, Backoff, classify_read

S = JobState
FLUSH_BYTES = 1 << 20
DISK_MARGIN = 16 << 20
#: No room for this file: no space, over quota, or past a file size limit (EFBIG, ``ulimit -f``).
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass(frozen=True)
class Fetched:
    size: int
    sha256: str


def part_paths(target: Path) -> tuple[Path, Path]:
    """The temp file and its resume metadata, beside the target."""
    return target.with_name(f".{target.name}.part"), target.with_name(f".{target.name}.part.json")


async def fetch(session: aiohttp.ClientSession, url: str, target: Path) -> Fetched:
    """Download ``url`` to ``target`` through the safe sequence; resumes a previous partial file."""
    part, meta = part_paths(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    offset, etag = _resume_point(part, meta)
    headers = {"Range": f"bytes={offset}-", "If-Range": etag} if offset and etag else {}
    try:
        async with session.get(url, headers=headers) as response:
            total, offset = _plan(response, offset, url)
            if total is None:  # 416 on a file that is already whole
                total = offset
            else:
                _ensure_space(target, total - offset)
                meta.write_text(json.dumps({"etag": response.headers.get("ETag"), "total": total}))
                await _stream(response, part, offset, target, total)
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        got = part.stat().st_size if part.exists() else 0
        raise errors.Truncated(total_or_unknown(meta), got, url=_safe(url)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise errors.DownloadError(
            f"download failed ({type(exc).__name__})", url=_safe(url)
        ) from None
    return await asyncio.to_thread(_finish, part, meta, target, total, url)


def total_or_unknown(meta: Path) -> int:
    try:
        return int(json.loads(meta.read_text())["total"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def _resume_point(part: Path, meta: Path) -> tuple[int, str | None]:
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


async def _stream(
    response: aiohttp.ClientResponse, part: Path, offset: int, target: Path, total: int
) -> None:
    with part.open("r+b" if offset else "wb") as handle:
        handle.truncate(offset)
        handle.seek(offset)
        buffer = bytearray()
        try:
            async for chunk in response.content.iter_chunked(FLUSH_BYTES):
                buffer += chunk
                if len(buffer) >= FLUSH_BYTES:
                    data = bytes(buffer)
                    buffer.clear()
                    await asyncio.to_thread(_write, handle, part, target, data, total)
        finally:
            # also when the transfer is cut or times out: the next attempt resumes after them
            if buffer:
                await asyncio.to_thread(_write, handle, part, target, bytes(buffer), total)


def _write(handle: BinaryIO, part: Path, target: Path, data: bytes, total: int) -> None:
    try:
        handle.write(data)
        handle.flush()
    except OSError as exc:
        _fail_full(exc, part, target, total)
        raise


def _finish(part: Path, meta: Path, target: Path, total: int, url: str) -> Fetched:
    """Blocking tail of a download (run in a thread): verify, fsync, rename, fsync the directory."""
    size = part.stat().st_size
    if size != total:
        raise errors.Truncated(total, size, url=_safe(url))
    try:
        check_mp4(part)
    except errors.NotMp4:
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        raise
    digest = _sha256(part)
    try:
        with part.open("rb+") as handle:
            os.fsync(handle.fileno())
    except OSError as exc:
        _fail_full(exc, part, target, total)
        raise
    os.replace(part, target)
    _fsync_dir(target.parent)
    meta.unlink(missing_ok=True)
    return Fetched(size, digest)


def _fail_full(exc: OSError, part: Path, target: Path, total: int) -> None:
    """On a full disk, drop the temp file (never fsync it again) and raise DiskFull."""
    if exc.errno in FULL:
        part.unlink(missing_ok=True)
        raise errors.DiskFull(str(target), total) from None


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


def _transient(exc: errors.OrchestratorError) -> bool:
    """Worth another attempt: anything but an API answer that no retry can change."""
    return not isinstance(exc, errors.ApiError) or classify_read(exc).action is Action.RETRY


def _sha256(path: Path) -> str:
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
    path: Path, size: int | None, sha256: str | None, *, full: bool = False
) -> bool:
    """True when ``path`` holds the recorded file: same size (and same sha256 when ``full``)."""
    try:
        if size is None or path.stat().st_size != size:
            return False
    except OSError:
        return False
    return not full or (sha256 is not None and _sha256(path) == sha256)


class Downloader:
    """A fixed pool of download workers fed by ``pipe.completed``; a ``None`` key ends a worker."""

    def __init__(self, pipe: Pipeline, session: aiohttp.ClientSession, *, workers: int = 4) -> None:
        self.pipe = pipe
        self.session = session
        self.workers = max(1, workers)
        self.disk_ok = asyncio.Event()
        self.disk_ok.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(self.workers):
                group.create_task(self._work())

    def finish(self) -> None:
        """No more jobs will complete: let each worker end once the queue is empty."""
        for _ in range(self.workers):
            self.pipe.completed.put_nowait("")

    async def _work(self) -> None:
        while key := await self.pipe.completed.get():
            again = True
            while again:  # True after a full disk: this worker retries once there is room
                await self.disk_ok.wait()
                job = await self.pipe.ledger.job(key)
                again = job is not None and job.state is S.COMPLETED and await self._download(job)

    async def _download(self, job: JobRecord) -> bool:
        pipe = self.pipe
        await pipe.ledger.transition(
            job.key, S.DOWNLOADING, expect=S.COMPLETED, cause="download started"
        )
        try:
            target = inside(pipe.out_dir, job.output_path or f"{job.entry_id}.mp4")
        except errors.DownloadError as exc:
            await self._park(job, job.result_url, exc.message)
            return False
        if job.sha256 and verified_on_disk(target, job.bytes, job.sha256, full=True):
            await self._done(
                job,
                Fetched(job.bytes or 0, job.sha256),
                job.result_url,
                "already on disk, verified",
            )
            return False
        return await self._attempts(job, target)

    async def _attempts(self, job: JobRecord, target: Path) -> bool:
        """Up to ``download_attempts`` tries with fresh URLs as needed; True: retry after space."""
        pipe = self.pipe
        url, refreshes = job.result_url, 0
        backoff = Backoff(
            pipe.rng, base_s=pipe.tuning.backoff_base_s, cap_s=pipe.tuning.backoff_cap_s
        )
        for _ in range(pipe.tuning.download_attempts):
            try:
                if url is None:
                    url, refreshes = await self._fresh_url(job), refreshes + 1
                await self._done(
                    job, await fetch(self.session, url, target), url, "downloaded and verified"
                )
                return False
            except errors.UrlExpired as exc:
                if refreshes >= pipe.tuning.max_url_refreshes:
                    reason = f"{exc.message}; {refreshes} fresh URLs all refused"
                    await self._park(job, url, reason)
                    return False
                url = None
            except errors.DiskFull as exc:
                return await self._disk_full(job, url, exc)
            except (errors.DownloadError, errors.TransportError, errors.ApiError) as exc:
                if not _transient(exc):  # a fresh URL's GET can meet any API answer (404, 401)
                    await self._park(job, url, f"no fresh result URL: {exc.message}")
                    return False
                pipe.reporter.note(f"{job.entry_id}: {exc.message}; retrying", level="warning")
                await pipe.clock.sleep(backoff.next_delay(exc))
        await self._park(job, url, "download failed after repeated attempts; rerun to try again")
        return False

    async def _fresh_url(self, job: JobRecord) -> str:
        remote = await self.pipe.client.get_job(job.remote_id or "")
        if not remote.urls:
            raise errors.DownloadError("Krea reports no result URL for this job")
        return remote.urls[0]

    async def _done(self, job: JobRecord, fetched: Fetched, url: str | None, cause: str) -> None:
        await self.pipe.ledger.transition(
            job.key,
            S.DONE,
            expect=S.DOWNLOADING,
            cause=cause,
            bytes=fetched.size,
            sha256=fetched.sha256,
            result_url=url,
            done_at=now_utc(),
            last_error=None,
        )
        self.pipe.reporter.job_changed(job.entry_id, S.COMPLETED, S.DONE)

    async def _park(self, job: JobRecord, url: str | None, reason: str) -> None:
        await self.pipe.ledger.transition(
            job.key,
            S.COMPLETED,
            expect=S.DOWNLOADING,
            cause="download parked",
            detail=reason,
            result_url=url,
            last_error=reason,
        )
        self.pipe.reporter.note(f"{job.entry_id}: {reason}", level="error")

    async def _disk_full(self, job: JobRecord, url: str | None, exc: errors.DiskFull) -> bool:
        """Put the job back and pause all downloads until space returns; True: try it again.

        The job stays with this worker: once the poller has ended, the queue holds the workers'
        stop markers, and a job queued behind them would never be downloaded."""
        await self.pipe.ledger.transition(
            job.key,
            S.COMPLETED,
            expect=S.DOWNLOADING,
            cause="disk full",
            detail=exc.message,
            result_url=url,
            last_error=exc.message,
        )
        if not self.disk_ok.is_set():
            return True  # another worker is already waiting for space (_download_key waits too)
        self.disk_ok.clear()
        self.pipe.reporter.note(
            f"downloads paused: {exc.message}; free some space and they resume", level="error"
        )
        needed = exc.needed or DISK_MARGIN
        while not room_for(self.pipe.out_dir, needed):
            await self.pipe.clock.sleep(self.pipe.tuning.disk_retry_s)
        self.pipe.reporter.note("space is back: downloads resume")
        self.disk_ok.set()
        return True
