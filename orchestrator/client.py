"""Krea's HTTP API as typed calls: one method per endpoint, each answer parsed or made an error.

The client makes exactly one request per call. It does not retry, and it knows nothing of the
ledger: callers decide what a failure means (``retry.classify``). What it does guarantee:

* Every failure is one of our error types with a status and a path, never an aiohttp exception,
  whose ``repr`` can carry the request headers and with them the API key (RELIABILITY P6.6).
* Transport failures say whether the request can have reached Krea (``NotSent`` vs
  ``ConnectionLost``): a POST that may have been received must never be blindly resent.
* Answers are read tolerantly, by ``answers`` (jobs, pages, error bodies, Retry-After, times).
* A server that answers as Krea never does (no such route, nothing but unreadable answers) is
  ``NotKreaApi``: a wrong ``--api-base`` stops a run instead of rejecting its jobs.
* An optional ``pace`` coroutine runs before every API request, so no call path bypasses the
  account's request-rate limit.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from orchestrator import errors
from orchestrator.answers import (
    Asset,
    JobPage,
    RemoteJob,
    body_kind,
    error_for,
    status_phrase,
)
from orchestrator.config import key_source
from orchestrator.errors import ApiError, BadResponse, ConnectionLost, NotSent
from orchestrator.spec import generate_path, is_image_model

USER_AGENT = "orchestrator/0.1 (+https://github.com/krea-orchestrator)"
#: The names requests are counted under (``counts``): one per kind of generate POST.
POST_ROUTE = "POST /generate/video"
POST_ROUTE_IMAGE = "POST /generate/image"
Pace = Callable[[], Awaitable[None]]


class KreaClient:
    """Calls to Krea's API over one aiohttp session that carries the key in its headers."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        pace: Pace | None = None,
        key_source: str = "",
    ) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._pace = pace
        self.key_source = key_source  #: where the key was read from, for a refusal's message
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
        tracing = aiohttp.TraceConfig()
        tracing.on_request_chunk_sent.append(_body_written)
        async with aiohttp.ClientSession(
            headers=headers, timeout=timeout, connector=connector, trace_configs=[tracing]
        ) as session:
            yield cls(session, base_url, pace=pace, key_source=key_source(api_key))

    # -- endpoints ----------------------------------------------------------------------------

    async def create_job(
        self,
        model: str,
        body: dict[str, Any],
        *,
        webhook_url: str | None = None,
        on_written: Callable[[], None] | None = None,
    ) -> RemoteJob:
        """POST /generate/video/{model} (or /generate/image/…, see ``spec.generate_path``). A 2xx
        with an unreadable body raises BadResponse.

        ``on_written`` is called once the request's body has been handed to the socket: a run
        killed after that has sent the POST (the kernel delivers what it was given).
        """
        headers = {"X-Webhook-URL": webhook_url} if webhook_url else None
        path = generate_path(model)
        data = await self._json(
            "POST",
            path,
            POST_ROUTE_IMAGE if is_image_model(model) else POST_ROUTE,
            json_body=body,
            headers=headers,
            on_written=on_written,
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
        on_written: Callable[[], None] | None = None,
    ) -> Any:
        status, response_headers, body = await self._send(
            method, path, route, json_body=json_body, params=params, headers=headers, form=form,
            trace_request_ctx=on_written,
        )  # fmt: skip
        if status in NO_SUCH_ROUTE and route in EVERY_KREA_HAS:
            what = f"HTTP {status} {status_phrase(status)} ({body_kind(response_headers, body)})"
            raise self._not_krea(status, what, method, path)
        if status >= 300:
            raise self._error(status, body, response_headers, path)
        if allow_empty and not body.strip():
            return None
        try:
            data = json.loads(body)
        except ValueError:
            if not self.understood:
                self._garbled += 1
                if self._garbled >= UNREACHABLE_AFTER:
                    what = f"only unreadable answers, the last HTTP {status} with " + body_kind(
                        response_headers, body
                    )
                    raise self._not_krea(status, what, method, path) from None
            raise BadResponse(status, "the answer is not valid JSON", path=path) from None
        self.understood = self.understood or isinstance(data, dict)
        return data

    def _error(self, status: int, body: bytes, headers: dict[str, str], path: str) -> ApiError:
        """The typed error of an error answer; a refused key names where it was read from."""
        error = error_for(status, body, headers, path=path)
        if isinstance(error, errors.Unauthorized):
            return errors.Unauthorized(status, error.reason, path=path, source=self.key_source)
        return error

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


async def _body_written(
    session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestChunkSentParams
) -> None:
    """aiohttp's hook after each chunk of a request body: tell the caller, once."""
    hook = context.trace_request_ctx
    if callable(hook):
        context.trace_request_ctx = None
        hook()


UNREACHABLE_AFTER = 6  #: refused connections (or unreadable answers), with no good one ever
#: Statuses that mean "no such route" (or method) rather than anything about a job.
NO_SUCH_ROUTE = frozenset({404, 405, 501})
#: Routes every Krea server has: "no such route" there means the API base is wrong.
EVERY_KREA_HAS = frozenset({POST_ROUTE, POST_ROUTE_IMAGE, "GET /jobs", "POST /assets"})
