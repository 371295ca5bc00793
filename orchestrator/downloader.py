"""Downloading finished videos: completed → downloading → done, by a fixed pool of workers.

Each worker takes a completed job's key from the poller's queue, marks it ``downloading`` and has
``transfer.fetch`` bring the file through its safe sequence (temp file, length, MP4 boxes, sha256,
fsync, atomic rename); only then is the job ``done`` in the ledger, with its size and sha256.

A media host that refuses a once-good URL (401/403/404/410) means the URL expired: a fresh one
comes from ``GET /jobs/{id}``, a bounded number of times before the job is parked. A full disk
pauses every download with one clear message and resumes once space returns. The API key is
never sent to the media host: downloads use their own session.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp

from orchestrator import errors
from orchestrator.clock import now_utc
from orchestrator.jobs import JobRecord, JobState
from orchestrator.ledger.records import DoneFile
from orchestrator.pipeline import Pipeline
from orchestrator.retry import Action, Backoff, classify_read
from orchestrator.still_names import still_stem
from orchestrator.transfer import DISK_MARGIN, Fetched, fetch, inside, room_for, verified_on_disk

S = JobState
log = logging.getLogger(__name__)


def _transient(exc: errors.OrchestratorError) -> bool:
    """Worth another attempt: anything but an API answer that no retry can change."""
    return not isinstance(exc, errors.ApiError) or classify_read(exc).action is Action.RETRY


def _already_there(target: Path, job: JobRecord) -> Fetched | None:
    """The job's file, if ``target`` already holds it (read in full: blocks, use a thread)."""
    if not job.sha256 or not verified_on_disk(target, job.bytes, job.sha256, full=True):
        return None
    return Fetched(job.bytes or 0, job.sha256, target.stat().st_mtime_ns)


def _remove_if_ours(out_dir: Path, old: DoneFile) -> bool:
    """Remove ``old``'s file if it is still the one recorded (read in full: use a thread)."""
    try:
        path = inside(out_dir, old.output_path or "")
    except errors.DownloadError:
        return False
    if not verified_on_disk(path, old.bytes, old.sha256, full=True):
        return False  # changed or gone since: not ours to remove
    path.unlink(missing_ok=True)
    return True


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
        while item := await self.pipe.completed.get():
            job, key = (item, item.key) if isinstance(item, JobRecord) else (None, item)
            while True:  # again after a full disk: this worker retries once there is room
                await self.disk_ok.wait()
                job = job or await self.pipe.ledger.job(key)
                # A superseded job's clip stays at Krea: its path may now be another job's.
                if job is None or not job.planned or job.state is not S.COMPLETED:
                    break
                if not await self._download(job):
                    break
                job = None  # read it afresh after the pause

    async def _download(self, job: JobRecord) -> bool:
        # Not awaited: the GET of the media changes nothing remote, and this worker's next write
        # (done, parked) is queued behind it, so the two share a commit. A crash before either
        # lands leaves the job completed, which is downloaded again: the same as from downloading.
        started = self.pipe.ledger.transition_soon(
            job.key, S.DOWNLOADING, expect=S.COMPLETED, cause="download started"
        )
        try:
            return await self._download_started(job)
        finally:
            await started  # long since committed; raises if the move itself was refused

    async def _download_started(self, job: JobRecord) -> bool:
        pipe = self.pipe
        try:
            target = inside(pipe.out_dir, job.output_path or f"{job.entry_id}.mp4")
        except errors.DownloadError as exc:
            await self._park(job, job.result_url, exc.message)
            return False
        # Only a job that was done before (its file recorded) can already be there; reading it
        # may take a whole-file hash, so in a thread, and only then.
        on_disk = await asyncio.to_thread(_already_there, target, job) if job.sha256 else None
        if on_disk is not None:
            await self._done(job, on_disk, job.result_url, "already on disk, verified")
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
                fetched = await fetch(self.session, url, target)
                await self._replace_older_stills(job, fetched)
                await self._done(job, fetched, url, "downloaded and verified")
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
                log.warning(f"{job.entry_id}: {exc.message}; retrying", extra={"batch": pipe.batch})
                await pipe.clock.sleep(backoff.next_delay(exc))
        await self._park(job, url, "download failed after repeated attempts; rerun to try again")
        return False

    async def _replace_older_stills(self, job: JobRecord, fetched: Fetched) -> None:
        """A still saved in another format than the one a superseded job saved under its name
        (``x.jpg`` now, ``x.png`` before) replaces that file, as a clip overwrites an old one:
        only a file still as recorded is removed. Before ``done``: a crash in between leaves
        the job to download again, and this to run again."""
        out_dir = self.pipe.out_dir.resolve()
        saved = fetched.path.relative_to(out_dir).as_posix() if fetched.path else None
        stem = still_stem(saved) if saved else None
        if saved is None or stem is None:
            return
        for old in await self.pipe.ledger.superseded_stills(self.pipe.batch, stem, saved):
            if await asyncio.to_thread(_remove_if_ours, out_dir, old):
                log.info(
                    f"{job.entry_id}: {saved} replaces {old.output_path}, the still of an "
                    "earlier version of this entry",
                    extra={"batch": self.pipe.batch},
                )

    async def _fresh_url(self, job: JobRecord) -> str:
        remote = await self.pipe.client.get_job(job.remote_id or "")
        if not remote.urls:
            raise errors.DownloadError("Krea reports no result URL for this job")
        return remote.urls[0]

    async def _done(self, job: JobRecord, fetched: Fetched, url: str | None, cause: str) -> None:
        named = {}  # a still's file is named after its verified format (transfer)
        if fetched.path is not None:
            named["output_path"] = fetched.path.relative_to(self.pipe.out_dir.resolve()).as_posix()
        await self.pipe.ledger.transition(
            job.key,
            S.DONE,
            expect=S.DOWNLOADING,
            cause=cause,
            bytes=fetched.size,
            sha256=fetched.sha256,
            file_mtime_ns=fetched.mtime_ns,
            result_url=url,
            done_at=now_utc(),
            last_error=None,
            **named,
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
        log.error(f"{job.entry_id}: {reason}", extra={"batch": self.pipe.batch})

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
        log.error(
            f"downloads paused: {exc.message}; free some space and they resume",
            extra={"batch": self.pipe.batch},
        )
        needed = exc.needed or DISK_MARGIN
        while not await asyncio.to_thread(room_for, self.pipe.out_dir, needed):
            await self.pipe.clock.sleep(self.pipe.tuning.disk_retry_s)
        log.info("space is back: downloads resume", extra={"batch": self.pipe.batch})
        self.disk_ok.set()
        return True
