"""The ``/_sim/`` routes: introspection and control for tests and benchmarks only.

Krea has nothing like them; they are never faulted, never authenticated and never counted as
API requests, so a test can read the ground truth without disturbing what it measures.

* ``GET /_sim/stats``   counters, faults, bills and per-account usage (``stats.snapshot``)
* ``GET /_sim/jobs``    every job with its kind, request as received, ``inputs_from``, price and
  charge (``?account=&status=``)
* ``POST /_sim/advance`` ``{"seconds": x}`` moves the virtual clock
* ``GET|POST /_sim/config`` reads or changes options live (JSON of option names → values)
* ``GET /_sim/clock``   the simulated time
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from aiohttp import web

from orchestrator.simulator.clock import iso_ms, to_ms
from orchestrator.simulator.gate import SERVICE
from orchestrator.simulator.job import sim_json
from orchestrator.simulator.options import coerce_option
from orchestrator.simulator.responses import error, json_response
from orchestrator.simulator.service import Service
from orchestrator.simulator.stats import snapshot


def add_routes(app: web.Application) -> None:
    """Register the control routes."""
    app.router.add_get("/_sim/stats", _stats)
    app.router.add_get("/_sim/jobs", _jobs)
    app.router.add_post("/_sim/advance", _advance)
    app.router.add_get("/_sim/config", _config)
    app.router.add_post("/_sim/config", _config)
    app.router.add_get("/_sim/clock", _clock)


def all_jobs(
    service: Service, account: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    """Every job (optionally one account's, or one status), oldest first."""
    service.tick()
    return [
        sim_json(job)
        for job in service.lifecycle.jobs.values()
        if (account is None or job.account == account) and (status is None or job.status == status)
    ]


def _clock_json(service: Service) -> dict[str, Any]:
    """The simulated time as ISO text and epoch seconds, and the clock's speed."""
    now = service.tick()
    return {"now": iso_ms(to_ms(now)), "now_s": now, "time_scale": service.clock.scale}


async def _stats(request: web.Request) -> web.Response:
    """Counters, faults, bills and per-account usage."""
    service = request.app[SERVICE]
    service.tick()
    return json_response(snapshot(service))


async def _jobs(request: web.Request) -> web.Response:
    """Every job's ground truth, optionally filtered by account and status."""
    query = request.query
    return json_response(all_jobs(request.app[SERVICE], query.get("account"), query.get("status")))


async def _clock(request: web.Request) -> web.Response:
    """The simulated time."""
    return json_response(_clock_json(request.app[SERVICE]))


async def _advance(request: web.Request) -> web.Response:
    """Move the virtual clock forward by ``{"seconds": x}``."""
    service = request.app[SERVICE]
    body = await _json(request)
    seconds = body.get("seconds") if isinstance(body, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return error(400, 'Send {"seconds": <non-negative number>}.').response()
    service.advance(float(seconds))
    return json_response(_clock_json(service))


async def _config(request: web.Request) -> web.Response:
    """Read the options (GET) or change some of them live (POST)."""
    service = request.app[SERVICE]
    if request.method == "POST":
        body = await _json(request)
        if not isinstance(body, dict):
            return error(400, "Send a JSON object of option names and values.").response()
        try:
            service.configure(**{name: coerce_option(name, value) for name, value in body.items()})
        except (TypeError, ValueError) as problem:
            return error(400, str(problem)).response()
    return json_response(asdict(service.options))


async def _json(request: web.Request) -> Any:
    try:
        return json.loads(await request.read() or b"null")
    except ValueError:
        return None
