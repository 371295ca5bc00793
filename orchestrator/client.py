"""Krea's HTTP API as typed calls: one method per endpoint, each answer parsed or made an error.

The client makes exactly one request per call. It does not retry, and it knows nothing of the
ledger: callers decide what a failure means (``retry.classify``). What it does guarantee:

* Every failure is one of our error types with a status and a path, never an aiohttp exception,
  whose ``repr`` can carry the request headers and with them the API key (RELIABILITY P6.6).
* Transport failures say whether the request can have reached Krea (``NotSent`` vs
  ``ConnectionLost``): a POST that may have been received must never be blindly resent.
* Answers are parsed tolerantly, as Krea's docs and observed clients disagree: ``next_cursor`` or
  ``nextCursor``; failure details top-level or under ``result.error``; ``result.urls`` as strings,
  ``{url}`` objects or a name→url map; extra fields ignored.
* An optional ``pace`` coroutine runs before every API request, so no call path bypasses the
  account's request-rate limit.
"""

from __future__ import annotations

import asyncio
import json
import math
import mimetypes
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp

from orchestrator import errors
from orchestrator.clock import format_utc, parse_utc
from orchestrator.errors import ApiError, BadResponse, ConnectionLost, NotSent

USER_AGENT = "orchestrator/0.1 (+https://github.com/krea-orchestrator)"
Pace = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class RemoteJob:
    """A job as Krea reports it (Krea's words: ``job_id``, ``status``).

    Timestamps are parsed here, at the boundary, and kept in one form (:func:`normal_utc`):
    the ledger compares them as text, and reconciliation orders jobs by them.
    """

    job_id: str
    status: str
    created_at: str
    completed_at: str | None = None
    urls: tuple[str, ...] = ()
    error_code: str | None = None
    error_message: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> RemoteJob:
        """Parse a job object; raises BadResponse when an id, status or created_at is missing."""
        if not isinstance(data, dict):
            raise BadResponse(200, "a job is not a JSON object")
        job_id, status = data.get("job_id"), data.get("status")
        if not (isinstance(job_id, str) and job_id and isinstance(status, str)):
            raise BadResponse(200, "a job lacks job_id or status")
        created = normal_utc(data.get("created_at"))
        if created is None:
            raise BadResponse(200, f"job {job_id} has no readable created_at")
        raw_result = data.get("result")
        result: dict[str, Any] = raw_result if isinstance(raw_result, dict) else {}
        code, message = _failure(data.get("error"), result.get("error"))
        return cls(
            job_id=job_id,
            status=status,
            created_at=created,
            completed_at=normal_utc(data.get("completed_at")),
            urls=tuple(_urls(result.get("urls"))),
            error_code=code,
            error_message=message,
        )


@dataclass(frozen=True)
class JobPage:
    """One page of ``GET /jobs``: newest first; ``skipped`` counts items too malformed to use."""

    items: tuple[RemoteJob, ...]
    next_cursor: str | None
    skipped: int = 0


@dataclass(frozen=True)
class Asset:
    """An uploaded file; ``url`` is usable as ``start_image`` and friends."""

    asset_id: str | None
    url: str
    size_bytes: int
    mime_type: str


class KreaClient:
    """Calls to Krea's API over one aiohttp session that carries the key in its headers."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, pace: Pace | None = None
    ) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._pace = pace
        self.requests: Counter[str] = Counter()  #: requests sent, by route ("GET /jobs", ...)
        self.answered = False  #: whether the API has answered anything since this client began
        self.understood = False  #: whether any answer was a JSON object, as Krea's all are
        self._refused = 0  #: connection attempts in a row that never reached the API
        self._garbled = 0  #: answers that were not JSON, while none ever was

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        base_url: str,
        api_key: str,
        *,
        pace: Pace | None = None,
        timeout_s: float = 30.0,
        connections: int = 32,
    ) -> AsyncIterator[KreaClient]:
        """A client with its own session; closed on exit."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=timeout_s)
        headers = {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(
            headers=headers, timeout=timeout, connector=connector
        ) as session:
            yield cls(session, base_url, pace=pace)

    # -- endpoints ----------------------------------------------------------------------------

    async def create_job(
        self, model: str, body: dict[str, Any], *, webhook_url: str | None = None
    ) -> RemoteJob:
        """POST /generate/video/{model}. A 2xx with an unreadable body raises BadResponse."""
        headers = {"X-Webhook-URL": webhook_url} if webhook_url else None
        data = await self._json(
            "POST",
            f"/generate/video/{model}",
            "POST /generate/video",
            json_body=body,
            headers=headers,
        )
        return RemoteJob.from_json(data)

    async def get_job(self, job_id: str) -> RemoteJob:
        data = await self._json("GET", f"/jobs/{job_id}", "GET /jobs/{id}")
        return RemoteJob.from_json(data)

    async def list_jobs(
        self,
        *,
        cursor: str | None = None,
        limit: int = 1000,
        status: str | None = None,
        types: str | None = None,
    ) -> JobPage:
        """GET /jobs: one page, newest first; ``cursor`` means "created before"."""
        params = {"limit": str(limit)}
        for name, value in (("cursor", cursor), ("status", status), ("types", types)):
            if value:
                params[name] = value
        data = await self._json("GET", "/jobs", "GET /jobs", params=params)
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise BadResponse(200, "the job list has no items array", path="/jobs")
        items, skipped = [], 0
        for raw in data["items"]:
            try:
                items.append(RemoteJob.from_json(raw))
            except BadResponse:
                skipped += 1
        cursor_value = data.get("next_cursor", data.get("nextCursor"))
        return JobPage(
            tuple(items), cursor_value if isinstance(cursor_value, str) else None, skipped
        )

    async def cancel_job(self, job_id: str) -> RemoteJob | None:
        """DELETE /jobs/{id}: the job, when Krea answers with one (the body is unspecified)."""
        data = await self._json("DELETE", f"/jobs/{job_id}", "DELETE /jobs/{id}", allow_empty=True)
        try:
            return RemoteJob.from_json(data) if data else None
        except BadResponse:
            return None

    async def upload_asset(self, path: Path) -> Asset:
        """POST /assets (multipart). Safe to resend: a duplicate upload costs nothing."""
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        form = aiohttp.FormData()
        content = await asyncio.to_thread(path.read_bytes)  # up to 75 MB: not on the loop
        form.add_field("file", content, filename=path.name, content_type=mime)
        data = await self._json("POST", "/assets", "POST /assets", form=form)
        url = data.get("image_url") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url:
            raise BadResponse(200, "the asset answer has no image_url", path="/assets")
        asset_id = data.get("id")
        return Asset(asset_id if isinstance(asset_id, str) else None, url, len(content), mime)

    # -- plumbing -----------------------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        route: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        form: aiohttp.FormData | None = None,
        allow_empty: bool = False,
    ) -> Any:
        status, response_headers, body = await self._send(
            method, path, route, json_body=json_body, params=params, headers=headers, form=form
        )
        if status in NO_SUCH_ROUTE and route in EVERY_KREA_HAS:
            what = f"HTTP {status} {_phrase(status)} ({_kind(response_headers, body)})"
            raise self._not_krea(status, what, method, path)
        if status >= 300:
            raise _error_for(status, body, response_headers, path=path)
        if allow_empty and not body.strip():
            return None
        try:
            data = json.loads(body)
        except ValueError:
            if not self.understood:
                self._garbled += 1
                if self._garbled >= UNREACHABLE_AFTER:
                    what = f"only unreadable answers, the last HTTP {status} with " + _kind(
                        response_headers, body
                    )
                    raise self._not_krea(status, what, method, path) from None
            raise BadResponse(status, "the answer is not valid JSON", path=path) from None
        self.understood = self.understood or isinstance(data, dict)
        return data

    def _not_krea(self, status: int, what: str, method: str, path: str) -> errors.NotKreaApi:
        url = f"{method} {self.base_url}{path}"
        return errors.NotKreaApi(status, what, url=url, base_url=self.base_url)

    async def _send(
        self, method: str, path: str, route: str, **kwargs: Any
    ) -> tuple[int, dict[str, str], bytes]:
        if self._pace is not None:
            await self._pace()
        self.requests[route] += 1
        url = self.base_url + path
        form, json_body = kwargs.pop("form"), kwargs.pop("json_body")
        body = {"json": json_body} if form is None else {"data": form}
        failure: errors.TransportError
        try:
            async with self._session.request(method, url, **body, **kwargs) as response:
                payload = await response.read()
                self.answered, self._refused = True, 0
                return response.status, dict(response.headers), payload
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            failure = self._not_sent(f"cannot connect ({type(exc).__name__})", path)
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = ConnectionLost(f"no answer ({type(exc).__name__})", path=path)
        # Raised outside the handler, so not even __context__ leads to aiohttp's frames, whose
        # locals hold the request headers and with them the key (`from None` only hides it).
        raise failure

    def _not_sent(self, detail: str, path: str) -> errors.TransportError:
        """NotSent; Unreachable once the API has refused every attempt since the run began."""
        self._refused += 1
        if not self.answered and self._refused >= UNREACHABLE_AFTER:
            return errors.Unreachable(self.base_url, detail, self._refused)
        return NotSent(detail, path=path)


HALF_MILLISECOND = timedelta(microseconds=500)  #: added before truncating: rounds to the nearest
UNREACHABLE_AFTER = 6  #: refused connections (or unreadable answers), with no good one ever
#: Statuses that mean "no such route" (or method) rather than anything about a job.
NO_SUCH_ROUTE = frozenset({404, 405, 501})
#: Routes every Krea server has: "no such route" there means the API base is wrong.
EVERY_KREA_HAS = frozenset({"POST /generate/video", "GET /jobs", "POST /assets"})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _kind(headers: dict[str, str], body: bytes) -> str:
    """What came back, without quoting it: ``text/html, 469 bytes``."""
    content_type = headers.get("Content-Type", "no content type").split(";")[0].strip()
    return f"{content_type}, {len(body):,} bytes"


def _error_for(status: int, body: bytes, headers: dict[str, str], *, path: str = "") -> ApiError:
    """The typed error for an HTTP error answer."""
    data = _loads(body)
    message = _error_message(data, body)
    if status == 429:
        retry_after = parse_retry_after(headers.get("Retry-After"), headers.get("Date"))
        return errors.RateLimited(status, message, path=path, retry_after_s=retry_after)
    if status == 410:
        replacement = data.get("replacement") if isinstance(data, dict) else None
        return errors.ModelRetired(status, message, path=path, replacement=str(replacement or ""))
    kinds: dict[int, type[ApiError]] = {
        400: errors.Rejected,
        422: errors.Rejected,
        401: errors.Unauthorized,
        403: errors.Unauthorized,
        402: errors.InsufficientFunds,
        404: errors.NotFound,
    }
    kind = kinds.get(status, errors.ServerError if status >= 500 else ApiError)
    return kind(status, message, path=path)


def _error_message(data: Any, body: bytes) -> str:
    """Krea's reason, read the way Krea's own client reads it: error, message, then detail lists."""
    if isinstance(data, dict):
        for name in ("message", "error"):
            value = data.get(name)
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
        parts = [str(data[n]) for n in ("error", "message") if isinstance(data.get(n), str)]
        for name in ("detail", "errors", "issues"):
            parts.extend(_detail_items(data.get(name)))
        if parts:
            return "; ".join(dict.fromkeys(parts))[:500]
    text = body.decode("utf-8", "replace").strip()
    return (text[:200] or "(empty answer)").replace("\n", " ")


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), or None if unusable.

    An HTTP-date is measured against the answer's own ``Date`` header when present, so a server
    whose clock runs fast (the simulator) or is skewed still means what it says.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        moment = _http_date(value)
        if moment is None:
            return None
        seconds = (moment - (_http_date(date) or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _http_date(value: str | None) -> datetime | None:
    """An HTTP-date as an aware datetime; one without a zone (``-0000``, or none) is UTC."""
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def normal_utc(value: Any) -> str | None:
    """Krea's timestamp in the ledger's one form (``2026-02-13T02:20:58.265Z``), or None.

    Fixed width, UTC, milliseconds (Krea's own precision; finer digits round to the nearest, as
    SQLite's ``strftime('%f')`` does in the ledger's migration 5), so that text order is time
    order. Anything that is not an ISO-8601 date-time is None: the caller decides whether that
    makes the item unreadable.
    """
    if not isinstance(value, str):
        return None
    try:
        return format_utc(parse_utc(value.strip()) + HALF_MILLISECOND)
    except (ValueError, OverflowError):
        return None


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _detail_items(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        if isinstance(item, dict):
            where = item.get("loc") or item.get("path")
            text = item.get("msg") or item.get("message") or ""
            prefix = (
                ".".join(str(p) for p in where if p != "body") + ": "
                if isinstance(where, list)
                else ""
            )
            out.append(f"{prefix}{text}")
        elif isinstance(item, str):
            out.append(item)
    return out


def _failure(top: Any, nested: Any) -> tuple[str | None, str | None]:
    for candidate in (top, nested):
        if isinstance(candidate, dict):
            code, message = candidate.get("code"), candidate.get("message")
            return (str(code) if code is not None else None, str(message) if message else None)
        if isinstance(candidate, str) and candidate:
            return None, candidate
    return None, None


def _urls(value: Any) -> list[str]:
    if isinstance(value, dict):  # node apps: a name -> url map
        value = list(value.values())
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        url = item.get("url") if isinstance(item, dict) else item
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            out.append(url)
    return out
