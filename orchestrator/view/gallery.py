"""A page of a batch's clips as JSON: the request's filters read, the cards made, the next cursor.

The gallery asks for :data:`PAGE_SIZE` cards at a time and gets back an opaque ``next`` cursor
(the last card's sort values, base64 JSON) to ask for the following page, so scrolling a
100,000-job batch reads it one page at a time (``ViewQueries.view_page`` explains the keyset).
A card carries what a person judges a clip by: id, model, length, price, state, the reason a
job failed (Krea's words) or why a waiting one is blocked (an input failed), or, in flight,
Krea's status and when it was sent. Takes of one entry (``<id>_t<n>``) and the new takes
rerolls made (``<id>~r<n>``) share a ``group`` so the page can set them side by side.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from aiohttp import web

from orchestrator.jobs import IN_FLIGHT, JobState
from orchestrator.ledger.view_queries import SORTS, PageQuery
from orchestrator.spec import is_image_model
from orchestrator.view.summary import STATES, usd

PAGE_SIZE = 60
#: The most cards a page may ask to refresh at once (``keys=``: those still in flight).
MAX_KEYS = 200
_KEY = re.compile(r"[0-9a-f]{1,64}")
MARK_FILTERS = ("pick", "reject", "none")
#: The states whose card shows Krea's reason (or ours) for the job's end.
ENDED = frozenset({"failed", "rejected", "cancelled", "ambiguous"})
_TAKE = re.compile(r"(?:~r\d+)?$")
_TAKE_OF_ENTRY = re.compile(r"_t\d+$")
_SENT = frozenset({*IN_FLIGHT, JobState.COMPLETED, JobState.DOWNLOADING})


def group_of(entry_id: str) -> str:
    """The entry a job is a take of: ``waves_t2`` and ``waves_t1~r3`` are both ``waves``."""
    return _TAKE_OF_ENTRY.sub("", _TAKE.sub("", entry_id, count=1), count=1)


def page_query(batch: str, params: dict[str, str]) -> PageQuery:
    """The query string of ``/api/batches/{name}/jobs`` as a :class:`PageQuery` (400 if bad)."""
    sort, keys = params.get("sort") or "manifest", _keys(params.get("keys"))
    if sort not in SORTS:
        raise web.HTTPBadRequest(text=f"sort is one of {', '.join(SORTS)}")
    return PageQuery(
        batch,
        states=_listed(params.get("state"), STATES, "state"),
        models=tuple(m for m in (params.get("model") or "").split(",") if m),
        marks=_listed(params.get("mark"), MARK_FILTERS, "mark"),
        search=(params.get("q") or "").strip()[:200],
        sort=sort,
        after=_cursor(params.get("after"), len(SORTS[sort])),
        limit=max(PAGE_SIZE, len(keys)),
        keys=keys,
    )


def page(
    rows: list[dict[str, Any]], query: PageQuery, blocked: dict[str, str] | None = None
) -> dict[str, Any]:
    """The JSON answer: the cards and the cursor of the next page (null at the end).
    ``blocked``: why each blocked job waits, by key (``Ledger.blocked``)."""
    more = len(rows) == query.limit
    last = rows[-1] if rows else None
    following = None
    if more and last is not None:
        values = [last[column.split(".")[-1]] for column, _ in SORTS[query.sort]]
        following = base64.urlsafe_b64encode(json.dumps(values).encode()).decode()
    return {"cards": [card(row, blocked or {}) for row in rows], "next": following}


def card(row: dict[str, Any], blocked: dict[str, str] | None = None) -> dict[str, Any]:
    """One clip as the gallery shows it (text only: the page sets it with textContent); a
    waiting job in ``blocked`` (key -> reason) shows why it will not be sent as things stand."""
    state = str(row["state"])
    reason = (row["last_error"] or row["detail"] or row["cause"]) if state in ENDED else None
    why = (blocked or {}).get(row["key"]) if state == JobState.WAITING else None
    reason = f"blocked: {why}" if why else reason
    return {
        "key": row["key"],
        "id": row["entry_id"],
        "group": group_of(str(row["entry_id"])),
        "model": row["model"],
        "state": state,
        "price": usd(row["price_micro"]),
        "seconds": row["seconds"],
        "prompt": row["prompt"] or "",
        "mark": row["mark"],
        "reason": reason,
        "remote_status": row["remote_status"] if JobState(state) in _SENT else None,
        "sent_at": row["intent_at"] if JobState(state) in _SENT else None,
        "playable": state == "done" and not is_image_model(str(row["model"])),  # a still: shown
        "reroll_of": row["reroll_of"],
    }


def _keys(value: str | None) -> tuple[str, ...]:
    """``keys=k1,k2``: the cards a page refreshes (job keys, at most :data:`MAX_KEYS`)."""
    keys = tuple(k for k in (value or "").split(",") if k)
    if len(keys) > MAX_KEYS or not all(_KEY.fullmatch(k) for k in keys):
        raise web.HTTPBadRequest(text=f"keys is up to {MAX_KEYS} job keys, comma-separated")
    return keys


def _listed(value: str | None, allowed: tuple[str, ...], name: str) -> tuple[str, ...]:
    """A comma-separated filter, each value checked against ``allowed``."""
    chosen = tuple(v for v in (value or "").split(",") if v)
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        raise web.HTTPBadRequest(text=f"unknown {name} {unknown[0]!r}")
    return chosen


def _cursor(value: str | None, width: int) -> tuple[Any, ...] | None:
    """The sort values a ``next`` cursor carries; 400 for anything that is not one."""
    if not value:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(value.encode()))
    except (ValueError, binascii.Error, UnicodeError):
        raise web.HTTPBadRequest(text="bad cursor") from None
    scalar = (str, int, float)
    if not isinstance(values, list) or len(values) != width:
        raise web.HTTPBadRequest(text="bad cursor")
    if not all(isinstance(v, scalar) and not isinstance(v, bool) for v in values):
        raise web.HTTPBadRequest(text="bad cursor")
    return tuple(values)
