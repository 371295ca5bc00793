"""Serving clips and their posters: only files the ledger records, inside their batch's folder.

A URL names a job by its key; the path comes from the ledger (``out_dir`` / ``output_path``),
never from the URL. It is resolved (symlinks followed) and must still lie inside the batch's
resolved ``out_dir``: a link planted in the output folder cannot reach anything outside it.
Only a verified clip (state ``done``) is served; ``web.FileResponse`` answers Range requests,
so the browser can seek. Posters come from ``orchestrator.posters`` (first frame, cached in
``<out_dir>/.posters``); a job without a clip, or whose poster cannot be made, gets a neutral
placeholder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from orchestrator import posters
from orchestrator.ledger import Ledger
from orchestrator.ledger.view_queries import ClipFile
from orchestrator.still_names import STILL_TYPES

#: ``poster(clip, sha256, cache_dir)``: the first frame as an image file, or None.
PosterMaker = Callable[[Path, str, Path], Awaitable[Path | None]]
#: Where posters are cached, under a batch's output folder.
POSTER_DIR = ".posters"
PLACEHOLDER = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="180" viewBox="0 0 320 180">'
    '<rect width="320" height="180" fill="#1d2127"/>'
    '<path d="M142 66v48l40-24z" fill="#3a414b"/></svg>'
)


def inside(root: Path, relative: str) -> Path | None:
    """``root / relative``, resolved, if it is a file inside resolved ``root``; else None."""
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base) or target == base or not target.is_file():
        return None
    return target


async def verified_clip(ledger: Ledger, key: str) -> tuple[ClipFile, Path] | None:
    """The ledger's record of a done job's file and where it is on disk; None otherwise."""
    found = await ledger.view_file(key)
    if found is None or found.state != "done":
        return None
    path = await asyncio.to_thread(inside, Path(found.out_dir), found.output_path)
    return None if path is None else (found, path)


async def clip(request: web.Request, ledger: Ledger) -> web.StreamResponse:
    """``GET /clips/{key}``: the MP4 (or a still), with Range support; 404 for anything else."""
    found = await verified_clip(ledger, request.match_info["key"])
    if found is None:
        raise web.HTTPNotFound(text="no verified clip for that job")
    return _media(found[1])


def _media(path: Path) -> web.FileResponse:
    """A verified file, as the type its name says (a clip, or a still named by its format)."""
    kind = STILL_TYPES.get(path.suffix.casefold(), "video/mp4")
    return web.FileResponse(
        path, headers={"Content-Type": kind, "Cache-Control": "private, max-age=60"}
    )


async def poster(request: web.Request, ledger: Ledger, make: PosterMaker) -> web.StreamResponse:
    """``GET /posters/{key}``: the clip's first frame, or the placeholder."""
    found = await verified_clip(ledger, request.match_info["key"])
    if found is not None and found[1].suffix.casefold() in STILL_TYPES:  # a still is its own
        return _media(found[1])
    if found is not None and found[0].sha256:
        record, path = found
        image = await make(path, record.sha256 or "", Path(record.out_dir) / POSTER_DIR)
        if image is not None:
            return web.FileResponse(image, headers={"Cache-Control": "private, max-age=86400"})
    return web.Response(
        text=PLACEHOLDER, content_type="image/svg+xml", headers={"Cache-Control": "no-store"}
    )


def poster_maker() -> PosterMaker:
    """The poster maker the server uses (a seam: tests may give their own)."""
    return posters.poster
