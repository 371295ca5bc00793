"""The public file host: result videos, previews and uploaded assets, with HTTP ranges.

Like Krea's CDN these URLs need no token. Videos are served with ``Content-Length``, a strong
``ETag``, ``Accept-Ranges: bytes``; a single ``Range`` gets 206 + ``Content-Range`` (416 when it
selects nothing), and an ``If-Range`` that does not match the current ETag gets the full 200.
With ``url_ttl_s`` an expired or tampered URL gets 403 ``{error}``.

Faults here are download faults: ``fault_truncate_rate`` announces the full length, sends part
of it and drops the connection; ``media_chunk_bytes``/``media_chunk_delay_s`` make slow or
slicing transfers; ``range_mode=ignore`` answers every Range with the whole file; changing
``media_bytes`` live changes every file and its ETag (the "file changed between attempts" case).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from orchestrator.simulator.gate import SERVICE
from orchestrator.simulator.media import (
    MediaFile,
    Unsatisfiable,
    byte_range,
    if_range_allows,
    media_file,
)
from orchestrator.simulator.options import SimulatorOptions
from orchestrator.simulator.responses import error, json_response
from orchestrator.simulator.service import Service


def add_routes(app: web.Application) -> None:
    """Register GET and HEAD for videos, previews and asset files."""
    app.router.add_get("/videos/{job_id}.mp4", _video, name="video")
    app.router.add_get("/previews/{job_id}.mp4", _preview, name="preview")
    app.router.add_get("/asset-files/{asset_id}", _asset_file, name="asset_file")


async def _video(request: web.Request) -> web.StreamResponse:
    """A completed job's MP4."""
    return await _serve_job_media(request, "completed", "")


async def _preview(request: web.Request) -> web.StreamResponse:
    """The preview of a job that has (or had) an intermediate result."""
    return await _serve_job_media(request, "intermediate-complete", "preview:")


async def _asset_file(request: web.Request) -> web.StreamResponse:
    """The bytes of an uploaded asset."""
    asset = request.app[SERVICE].assets.get(request.match_info["asset_id"])
    if asset is None:
        return error(404, "Asset not found.").response()
    return web.Response(body=asset.data, content_type=asset.mime_type)


async def _serve_job_media(request: web.Request, needs: str, prefix: str) -> web.StreamResponse:
    service = request.app[SERVICE]
    job_id = request.match_info["job_id"]
    problem = service.url_problem(
        request.path, request.query.get("expires"), request.query.get("sig")
    )
    if problem is not None:
        return json_response({"error": problem}, 403)
    job = service.lifecycle.jobs.get(job_id)
    available = job is not None and (
        job.status == "completed"
        or (needs == "intermediate-complete" and job.plan.intermediate and job.status == needs)
    )
    if not available:
        return error(404, "File not found.").response()
    media = media_file(prefix + job_id, 0 if prefix else service.options.media_bytes)
    return await _stream(request, service, media)


async def _stream(request: web.Request, service: Service, media: MediaFile) -> web.StreamResponse:
    options = service.options
    headers = {"ETag": media.etag, "Accept-Ranges": "bytes", "Content-Type": "video/mp4"}
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
    media: MediaFile,
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


def _wanted_range(request: web.Request, media: MediaFile, mode: str) -> tuple[int, int] | None:
    if mode == "ignore" or not if_range_allows(request.headers.get("If-Range"), media.etag):
        return None
    return byte_range(request.headers.get("Range"), media.size)


async def _send(
    response: web.StreamResponse,
    media: MediaFile,
    span: tuple[int, int],
    options: SimulatorOptions,
) -> None:
    for chunk in media.chunks(span[0], span[1], options.media_chunk_bytes):
        await response.write(chunk)
        if options.media_chunk_delay_s:
            await asyncio.sleep(options.media_chunk_delay_s)
