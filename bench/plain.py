"""The reference for download speed: a plain aiohttp streaming loop, nothing else.

Same URLs, same loopback, same number of concurrent downloads as the orchestrator's workers; each
body is streamed in 1 MiB chunks into a file. No temp file, hash, MP4 check or fsync: it is the
speed the wire and the page cache allow, which the orchestrator's verified downloads are
compared against. A second variant adds an fsync per file, and a third also hashes each body
with sha256 as it streams: the two steps the orchestrator may not skip (durability, and the
digest the ledger records), so the table can say how much of any gap is the disk or the hash
rather than the code around them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import aiohttp

from bench.workload import ensure_dir

CHUNK = 1 << 20


async def _fetch(
    http: aiohttp.ClientSession, url: str, target: Path, fsync: bool, digest: bool
) -> int:
    size, hasher = 0, hashlib.sha256()
    async with http.get(url) as response:
        response.raise_for_status()
        with target.open("wb") as out:
            async for chunk in response.content.iter_chunked(CHUNK):
                out.write(chunk)
                if digest:
                    hasher.update(chunk)
                size += len(chunk)
            if fsync:
                out.flush()
                await asyncio.to_thread(os.fsync, out.fileno())
    return size


async def download_all(
    urls: list[str], folder: Path, workers: int, *, fsync: bool = False, digest: bool = False
) -> tuple[int, float]:
    """Download every URL with ``workers`` streams at once; returns (bytes, real seconds).

    With ``fsync`` each file is flushed to disk before the next starts: the plain loop plus
    the one durability step the orchestrator cannot skip, to show what the disk allows.
    """
    ensure_dir(folder)
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for item in enumerate(urls):
        queue.put_nowait(item)
    sizes: list[int] = []

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            index, url = queue.get_nowait()
            sizes.append(await _fetch(http, url, folder / f"{index}.mp4", fsync, digest))

    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        await asyncio.gather(*(worker(http) for _ in range(workers)))
    return sum(sizes), time.perf_counter() - started
