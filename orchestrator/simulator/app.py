"""Krea's API routes, and the aiohttp application that serves them with the CDN and ``/_sim/``.

Routes only: each handler parses the request, asks ``admission``/``service`` for a decision and
renders it. Authentication, faults and counting happen in ``gate``; media files in ``cdn``.

* ``POST /generate/video/{provider}/{model}`` → 200 pending job (``admission`` has the checks)
* ``POST /generate/image/{provider}/{model}`` → the same for the model ``image/{provider}/{model}``
* ``GET /jobs/{id}`` → the job; 404 when unknown or another token's
* ``GET /jobs?cursor=&limit=&types=&status=`` → ``{items, next_cursor}``, newest first; ``types``
  keeps the listed job types (``video``, ``image``; unknown names match nothing)
* ``DELETE /jobs/{id}`` → 200 with the cancelled job; 409 once it is past ``processing``
* ``POST /assets`` → multipart ``file`` (+ ``description``), ≤ 75 MB, known types only
"""

from __future__ import annotations

from aiohttp import BodyPartReader, web

from orchestrator.simulator import cdn, control
from orchestrator.simulator.admission import admit
from orchestrator.simulator.assets import ALLOWED, MAX_ASSET_BYTES, new_asset
from orchestrator.simulator.clock import iso_ms, parse_iso_us, to_ms
from orchestrator.simulator.gate import ACCOUNT, SERVICE, Dropped, gate
from orchestrator.simulator.job import JOB_TYPES, STATUSES, creation_json
from orchestrator.simulator.responses import Refusal, error, json_response
from orchestrator.simulator.service import Service
from orchestrator.spec import model_of_path

_NOT_FOUND = "The job was not found or you are not authorized to see it."


def build_app(service: Service) -> web.Application:
    """The whole server: API, public media files and the ``/_sim/`` control routes."""
    app = web.Application(middlewares=[gate], client_max_size=MAX_ASSET_BYTES + (1 << 20))
    app[SERVICE] = service
    app.router.add_post("/generate/video/{provider}/{model}", _generate, name="generate")
    app.router.add_post("/generate/image/{provider}/{model}", _generate, name="generate_image")
    app.router.add_get("/jobs", _list_jobs, name="list_jobs", allow_head=False)
    app.router.add_get("/jobs/{id}", _get_job, name="get_job", allow_head=False)
    app.router.add_delete("/jobs/{id}", _delete_job, name="delete_job")
    app.router.add_post("/assets", _upload_asset, name="upload_asset")
    cdn.add_routes(app)
    control.add_routes(app)
    return app


async def _generate(request: web.Request) -> web.StreamResponse:
    """Create a video or image job (the model's name tells which: see ``spec.model_of_path``)."""
    service = request.app[SERVICE]
    model = model_of_path(request.path)
    if model is None:  # only the two generate routes come here
        return error(404, "Not found.").response()
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error(400, "The request body is too large.").response()
    webhook = request.headers.get("X-Webhook-URL")
    outcome = admit(service, request[ACCOUNT], model, raw, webhook)
    if isinstance(outcome, Refusal):
        return outcome.response()
    if await service.join_burst():
        return error(503, "The server could not complete the request.").response()
    if service.faults.roll("ambiguous", service.options.fault_ambiguous_rate):
        if service.faults.pick("ambiguous", ("5xx", "drop")) == "drop":
            raise Dropped
        status = int(service.faults.pick("ambiguous", ("500", "502", "503", "504")))
        return error(status, "The server could not complete the request.").response()
    return json_response(service.drift(creation_json(outcome)))


async def _get_job(request: web.Request) -> web.StreamResponse:
    """The current state of one of the caller's jobs."""
    service = request.app[SERVICE]
    job = service.find(request[ACCOUNT], request.match_info["id"])
    if job is None:
        return error(404, _NOT_FOUND).response()
    return json_response(service.render(job, service.clock.now()))


async def _delete_job(request: web.Request) -> web.StreamResponse:
    """Cancel one of the caller's jobs while it is still cancellable."""
    service = request.app[SERVICE]
    job = service.find(request[ACCOUNT], request.match_info["id"])
    if job is None:
        return error(404, _NOT_FOUND).response()
    now = service.clock.now()
    if not service.lifecycle.cancel(job, now):
        message = f"Job {job.job_id} can no longer be cancelled (status: {job.status})."
        return error(409, message).response()
    return json_response(service.render(job, now))


async def _list_jobs(request: web.Request) -> web.StreamResponse:
    """A page of the caller's jobs, newest first."""
    service = request.app[SERVICE]
    query = _list_query(request)
    if isinstance(query, Refusal):
        return query.response()
    before_ms, limit, status, kinds = query
    account = service.accounts.get(request[ACCOUNT])
    wanted = kinds is None or bool(kinds)  # ``types`` naming no kind we have matches nothing
    items, last = account.page(before_ms, limit, status, kinds) if wanted else ([], None)
    now = service.clock.now()
    return json_response(
        {
            "items": [service.render(job, now) for job in items],
            "next_cursor": last.created_at if last is not None else None,
        }
    )


def _list_query(
    request: web.Request,
) -> tuple[int | None, int, str | None, frozenset[str] | None] | Refusal:
    """(cursor in ms, limit, status, the job types wanted or None for all) or a 400."""
    query = request.query
    try:
        limit = int(query.get("limit", "100"))
    except ValueError:
        return error(400, "limit must be an integer between 1 and 1000.")
    if not 1 <= limit <= 1000:
        return error(400, "limit must be an integer between 1 and 1000.")
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        return error(400, f"status must be one of: {', '.join(STATUSES)}.")
    before_ms = None
    if query.get("cursor"):
        try:
            before_ms = -(-parse_iso_us(query["cursor"]) // 1000)  # "before T": ceil to ms
        except ValueError:
            return error(400, "cursor must be an ISO 8601 timestamp.")
    types = {t.strip() for t in query.get("types", "").split(",") if t.strip()}
    return before_ms, limit, status, frozenset(types) & frozenset(JOB_TYPES) if types else None


async def _upload_asset(request: web.Request) -> web.StreamResponse:
    """Store an uploaded file and answer its public URL."""
    service = request.app[SERVICE]
    if not request.content_type.startswith("multipart/"):
        return error(400, "Send the file as multipart/form-data (field 'file').").response()
    fields = await _read_form(request)
    if isinstance(fields, Refusal):
        return fields.response()
    data, description = fields
    uploaded_at = iso_ms(to_ms(service.clock.now()))
    asset = new_asset(request[ACCOUNT], data, uploaded_at, description)
    if asset is None:
        return error(400, f"Unsupported file type. Allowed: {ALLOWED}.").response()
    service.assets[asset.asset_id] = asset
    url = f"{service.base_url}/asset-files/{asset.asset_id}"
    return json_response(asset.api_json(url))


async def _read_form(request: web.Request) -> tuple[bytes, str | None] | Refusal:
    reader = await request.multipart()
    data: bytes | None = None
    description: str | None = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file":
            data = await _read_limited(part)
            if data is None:
                return error(400, "The file is larger than 75 MB.")
        elif part.name == "description":
            description = (await part.read()).decode("utf-8", "replace")
    if data is None:
        return error(400, "The multipart field 'file' is required.")
    return data, description


async def _read_limited(part: BodyPartReader) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(1 << 16):
        size += len(chunk)
        if size > MAX_ASSET_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
