"""Krea's answers that are not jobs: error bodies, 401 in both shapes, 429 with Retry-After.

A ``Refusal`` is a decision ("answer this status with this body"), made by the modules that
decide (``admission``, ``gate``) and turned into HTTP only by ``json_response``. Keeping the
wording here means every 4xx the simulator can send is visible in one screen.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from orchestrator.simulator.options import SimulatorOptions

CONCURRENCY_MESSAGE = "You have reached the maximum number of concurrent jobs."
RATE_MESSAGE = "Too many requests. Please slow down."
_JSON = "application/json"


@dataclass(frozen=True)
class Refusal:
    """An error answer: status, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        return json_response(self.body, self.status, self.headers)


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A compact JSON answer."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return web.Response(text=text, status=status, content_type=_JSON, headers=headers)


def error(status: int, message: str) -> Refusal:
    """Krea's generic error shape ``{"error": message}``."""
    return Refusal(status, {"error": message})


def unauthorized(options: SimulatorOptions) -> Refusal:
    """401 as the live API answers it, or as the spec documents it."""
    if options.auth_error_shape == "live":
        return Refusal(401, {"message": "Unauthorized"})
    return error(401, "Unauthorized: missing or invalid API token.")


def too_many(options: SimulatorOptions, now_s: float, message: str) -> Refusal:
    """429, with ``Retry-After`` when configured (in simulated seconds, rounded up)."""
    headers: dict[str, str] = {}
    if options.retry_after_s is not None:
        headers["Retry-After"] = _retry_after(options, now_s, options.retry_after_s)
    return Refusal(429, {"error": message}, headers)


def _retry_after(options: SimulatorOptions, now_s: float, delay_s: float) -> str:
    if options.retry_after_form == "http-date":
        when = datetime.fromtimestamp(math.ceil(now_s + delay_s), UTC)
        return format_datetime(when, usegmt=True)
    if options.retry_after_form == "invalid":
        return "soon"
    return str(math.ceil(delay_s))


def usd(micro: int) -> str:
    """``$1.234567`` for micro-dollars (sign kept)."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), 1_000_000)
    return f"{sign}${whole}.{frac:06d}"
