"""The middleware every request passes: counting, outage, network faults, auth, rate limit.

Order for an API route (anything but ``/_sim/`` and the public media files):

1. due lifecycle events are applied (the lazy half of the clock);
2. ``outage`` → 503; a ``5xx`` fault → 500/502/503; a ``reset`` fault → the connection is
   dropped. All three happen before the request is looked at, so nothing is created;
3. ``Authorization: Bearer <token>`` → 401 in the configured shape when missing, empty or not
   allowed; the account is ``sha256(token)[:16]``, or that of the first token of the token's
   ``shared_tokens`` group (the token itself is never kept in stats). From this request on the
   account exists (``Service.see``), and so does its foreign client;
4. the per-account request-rate limit → 429 (at most ``ceil(rate_limit_rps)`` requests in any
   sliding second of real time; refused requests do not count);
5. the route handler; then the ``malformed`` fault may replace a 200 JSON answer (on the routes
   ``malformed_routes`` names, or all; ``generate`` names the video and the image POST), the
   ``slow`` fault holds the answer ``slow_delay_s``, and ``latency_s`` is added.

Unknown paths and methods answer Krea-style JSON (404/405 ``{error}``) instead of aiohttp's text.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from orchestrator.simulator.accounts import account_of
from orchestrator.simulator.responses import (
    RATE_MESSAGE,
    Refusal,
    error,
    json_response,
    too_many,
    unauthorized,
)
from orchestrator.simulator.service import Service

SERVICE = web.AppKey("service", Service)
#: The authenticated account id of an API request.
ACCOUNT = web.RequestKey("account", str)
#: Routes of the public file host: no auth, no API faults (media has its own).
PUBLIC_ROUTES = frozenset({"video", "preview", "image", "image_preview", "asset_file"})
#: Route name -> the name ``malformed_routes`` knows it by: "generate" covers both kinds of POST.
ROUTE_FAMILY = {"generate_image": "generate"}
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HTML = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>502 Bad Gateway</h1><p>cloudflare</p></body></html>"
)


class Dropped(Exception):
    """Raised by a handler to close the connection without an answer."""


@web.middleware
async def gate(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Apply faults, auth and counting around every non-``/_sim/`` route."""
    if request.path.startswith("/_sim/"):
        return await handler(request)
    service = request.app[SERVICE]
    service.tick()
    route = request.match_info.route
    key = f"{request.method} {route.resource.canonical if route.resource else '(unmatched)'}"
    if route.name in PUBLIC_ROUTES:
        response = await handler(request)
        service.counters.served(key, response.status)
        return response
    try:
        response = await _api(request, handler, service)
    except Dropped:
        service.counters.served(key, None)
        return _drop(request)
    service.counters.served(key, response.status)
    return response


async def _api(request: web.Request, handler: _Handler, service: Service) -> web.StreamResponse:
    refusal = _before(request, service)
    if refusal is not None:
        response: web.StreamResponse = refusal.response()
    else:
        response = await _handle(request, handler)
    options = service.options
    malformed = service.faults.draw("malformed", options.fault_malformed_rate)
    routes = options.malformed_route_names
    name = request.match_info.route.name or ""
    if routes and ROUTE_FAMILY.get(name, name) not in routes:
        malformed = False
    if malformed and response.status == 200:
        service.faults.count("malformed")
        response = _malformed(response, service)
    if service.faults.roll("slow", options.fault_slow_rate):
        await asyncio.sleep(options.slow_delay_s)
    if options.latency_s:
        await asyncio.sleep(options.latency_s)
    return response


def _before(request: web.Request, service: Service) -> Refusal | None:
    options = service.options
    if options.outage:
        service.faults.count("outage")
        return error(503, "Service temporarily unavailable.")
    if service.faults.roll("5xx", options.fault_5xx_rate):
        status = int(service.faults.pick("5xx", ("500", "502", "503")))
        return error(status, "Internal server error.")
    if service.faults.roll("reset", options.fault_reset_rate):
        raise Dropped
    account = _authenticate(request, service)
    if account is None:
        return unauthorized(options)
    request[ACCOUNT] = account
    service.see(account)
    if _rate_limited(service, account):
        return too_many(options, service.clock.now(), RATE_MESSAGE)
    return None


async def _handle(request: web.Request, handler: _Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        exc = request.match_info.http_exception
        message = "Not found." if exc.status == 404 else f"Method {request.method} not allowed."
        return error(exc.status, message).response()
    return await handler(request)


def _authenticate(request: web.Request, service: Service) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    allowed = service.options.allowed_tokens
    if allowed is not None and token not in allowed:
        return None
    return account_of(token, service.options.token_groups)


def _rate_limited(service: Service, ident: str) -> bool:
    limit = service.options.rate_limit_rps
    if limit is None:
        return False
    window = service.accounts.get(ident).requests
    now = time.monotonic()
    while window and window[0] <= now - 1.0:
        window.popleft()
    if len(window) >= limit:
        return True
    window.append(now)
    return False


def _malformed(response: web.StreamResponse, service: Service) -> web.StreamResponse:
    form = service.faults.pick("malformed", service.options.malformed_choices)
    body = response.body if isinstance(response, web.Response) else None
    raw = body if isinstance(body, bytes) else b"{}"
    if form == "html":
        return web.Response(text=_HTML, content_type="text/html")
    if form == "truncated":
        return web.Response(body=raw[: max(1, len(raw) // 2)], content_type="application/json")
    if form == "weird_status":
        return json_response(_each_job(json.loads(raw), lambda job: {**job, "status": "weird"}))
    if form == "missing_fields":
        return json_response(_each_job(json.loads(raw), _without_fields))
    if form == "bad_timestamp":
        return json_response(_first_job(json.loads(raw), _bad_timestamp))
    return json_response({})


def _first_job(value: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """``value`` with ``change`` applied to the job it is, or to the first job of a list page."""
    if isinstance(value, dict) and isinstance(value.get("items"), list) and value["items"]:
        return {**value, "items": [change(value["items"][0]), *value["items"][1:]]}
    return _each_job(value, change)


def _bad_timestamp(job: dict[str, Any]) -> dict[str, Any]:
    return {**job, "created_at": "13/02/2026 02:20"}


def _each_job(value: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """``value`` with ``change`` applied to the job it is, or to each job of a list page."""
    if isinstance(value, dict) and "status" in value:
        return change(value)
    if isinstance(value, dict) and isinstance(value.get("items"), list):
        return {**value, "items": [_each_job(item, change) for item in value["items"]]}
    return value


def _without_fields(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k not in ("created_at", "status")}


def _drop(request: web.Request) -> web.Response:
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)
