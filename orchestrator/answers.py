"""Krea's answers, read tolerantly: jobs, job pages, uploads, error bodies, Retry-After, times.

Krea's docs and observed clients disagree, so every reader here accepts each shape seen:
``next_cursor`` or ``nextCursor``; failure details top-level or under ``result.error``;
``result.urls`` as strings, ``{url}`` objects or a name→url map; error reasons under ``error``,
``message`` or detail lists; Retry-After as seconds or an HTTP-date in any zone (or none);
extra fields ignored. Timestamps are parsed here, where they enter, into the ledger's one form
(:func:`normal_utc`). Pure functions of the answer: ``client`` does the HTTP.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

from orchestrator import errors
from orchestrator.clock import format_utc, parse_utc
from orchestrator.errors import ApiError, BadResponse

HALF_MILLISECOND = timedelta(microseconds=500)  #: added before truncating: rounds to the nearest


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


def status_phrase(status: int) -> str:
    """``Not Found`` for 404; empty for a status HTTP does not name."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def body_kind(headers: dict[str, str], body: bytes) -> str:
    """What came back, without quoting it: ``text/html, 469 bytes``."""
    content_type = headers.get("Content-Type", "no content type").split(";")[0].strip()
    return f"{content_type}, {len(body):,} bytes"


def error_for(status: int, body: bytes, headers: dict[str, str], *, path: str = "") -> ApiError:
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
