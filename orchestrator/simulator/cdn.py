"""The public file host: result videos and images, previews and uploaded assets, with ranges.

Like Krea's CDN these URLs need no token. Which path names which job's file, and whether it
exists yet, is ``results``'s decision; the bytes come from ``media`` (MP4) and ``images`` (PNG,
JPEG). Job files are served with ``Content-Length``, a strong
``ETag``, ``Accept-Ranges: bytes``; a single ``Range`` gets 206 + ``Content-Range`` (416 when it
selects nothing), and an ``If-Range`` that does not match the current ETag gets the full 200.
With ``url_ttl_s`` an expired or tampered URL gets 403 ``{error}``.

Faults here are download faults: ``fault_truncate_rate`` announces the full length, sends part
of it and drops the connection; ``media_chunk_bytes``/``media_chunk_delay_s`` make slow or
slicing transfers; ``range_mode=ignore`` answers every Range with the whole file; changing
``media_bytes`` live changes every MP4 and its ETag (the "file changed between attempts" case;
images keep their natural size).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Protocol

from aiohttp import web

from orchestrator.simulator.gate import SERVICE
from orchestrator.simulator.images import image_file
from orchestrator.simulator.media import Unsatisfiable, byte_range, if_range_allows, media_file
from orchestrator.simulator.options import SimulatorOptions
from orchestrator.simulator.responses import error, json_response
from orchestrator.simulator.results import ResultFile, parse_result_path, servable
from orchestrator.simulator.service import Service


class Served(Protocol):
    """What the CDN needs of a file: an MP4 (``media``) or an image (``images``)."""

    @property
    def size(self) -> int: ...
    @property
    def etag(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    def chunks(self, start: int, end: int, chunk_bytes: int) -> Iterator[bytes]: ...


def add_routes(app: web.Application) -> None:
    """Register GET and HEAD for videos, images, previews and asset files."""
    app.router.add_get("/videos/{job_id}.mp4", _job_file, name="video")
    app.router.add_get("/previews/{job_id}.mp4", _job_file, name="preview")
    app.router.add_get("/images/{job_id}.{ext:png|jpg}", _job_file, name="image")
    app.router.add_get("/previews/{job_id}.{ext:png|jpg}", _job_file, name="image_preview")
    app.router.add_get("/asset-files/{asset_id}", _asset_file, name="asset_file")


async def _asset_file(request: web.Request) -> web.StreamResponse:
    """The bytes of an uploaded asset."""
    asset = request.app[SERVICE].assets.get(request.match_info["asset_id"])
    if asset is None:
        return error(404, "Asset not found.").response()
    return web.Response(body=asset.data, content_type=asset.mime_type)


async def _job_file(request: web.Request) -> web.StreamResponse:
    """A job's result (once completed) or preview (from intermediate-complete on)."""
    service = request.app[SERVICE]
    problem = service.url_problem(
        request.path, request.query.get("expires"), request.query.get("sig")
    )
    if problem is not None:
        return json_response({"error": problem}, 403)
    wanted = parse_result_path(request.path)
    if wanted is None or not servable(service.lifecycle.jobs.get(wanted.job_id), wanted):
        return error(404, "File not found.").response()
    return await _stream(request, service, _file(wanted, service.options.media_bytes))


def _file(wanted: ResultFile, media_bytes: int) -> Served:
    key = ("preview:" if wanted.preview else "") + wanted.job_id
    if wanted.ext == "mp4":
        return media_file(key, 0 if wanted.preview else media_bytes)
    return image_file(key, wanted.ext)


async def _stream(request: web.Request, service: Service, media: Served) -> web.StreamResponse:
    options = service.options
    headers = {"ETag": media.etag, "Accept-Ranges": "bytes", "Content-Type": media.content_type}
    try:
        wanted = _wanted_range(request, media, options.range_mode)
    except Unsatisfiable:
        headers["Content-Range"] = f"bytes */{media.size}"
        return web.Response(status=416, headers=headers)
    start, end = wanted if wanted is not None else (0, media.size)
    response = web.StreamResponse(status=200 if wanted is None else 206, headers=headers)
    if wanted is not None:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{media.size}"
    response.content_length = end - start
    await response.prepare(request)
    if request.method != "HEAD":
        await _body(request, response, service, media, (start, end))
    return response


async def _body(
    request: web.Request,
    response: web.StreamResponse,
    service: Service,
    media: Served,
    span: tuple[int, int],
) -> None:
    """Send ``span`` of ``media``, or only part of it then drop the connection (truncate fault)."""
    start, end = span
    options = service.options
    cut = None
    if service.faults.roll("truncate", options.fault_truncate_rate):
        cut = start + int((end - start) * service.faults.fraction("truncate"))
    try:
        await _send(response, media, (start, cut if cut is not None else end), options)
    except ConnectionResetError:
        return  # the client went away (e.g. its read timeout): nothing left to do
    if cut is not None and request.transport is not None:
        request.transport.abort()
        return
    await response.write_eof()


def _wanted_range(request: web.Request, media: Served, mode: str) -> tuple[int, int] | None:
    if mode == "ignore" or not if_range_allows(request.headers.get("If-Range"), media.etag):
        return None
    return byte_range(request.headers.get("Range"), media.size)


async def _send(
    response: web.StreamResponse,
    media: Served,
    span: tuple[int, int],
    options: SimulatorOptions,
) -> None:
    for chunk in media.chunks(span[0], span[1], options.media_chunk_bytes):
        await response.write(chunk)
        if options.media_chunk_delay_s:
            await asyncio.sleep(options.media_chunk_delay_s)
