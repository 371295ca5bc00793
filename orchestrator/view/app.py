"""The view's web application: routes, the guard every request passes, the ledger's lifetime.

:func:`make_app` opens the ledger once for the server's life (writable: a mark is the one write,
to a table no run touches; it never takes the run's ``LedgerLock``). Every request passes
:func:`_guard` first:

* a ``..`` or ``.`` segment anywhere in the path, raw or percent-decoded, is 404;
* the Host header must name this machine (DNS rebinding: a page of another site resolving to
  127.0.0.1 would otherwise read the ledger), unless the server was bound to other hosts;
* a POST (the only method that changes anything) must come from a page of this server: its
  Origin (or, without one, ``Sec-Fetch-Site``) must match the Host, else 403;
* every answer forbids other sites from framing it and scripts from anywhere but here.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from yarl import URL

from orchestrator import errors
from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from orchestrator.ledger.view_queries import SORTS
from orchestrator.money import reports
from orchestrator.view import files, gallery, pages, review
from orchestrator.view.live import Live, stream
from orchestrator.view.review import RerollArgv, Rerolls

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
LEDGER = web.AppKey("ledger", Ledger)
LIVE = web.AppKey("live", Live)
REROLLS = web.AppKey("rerolls", Rerolls)


@dataclass(frozen=True)
class Options:
    """What a request handler needs to know of how the view was started."""

    allowed_hosts: frozenset[str] | None  #: Host names answered (None: any)
    posters: files.PosterMaker  #: makes a clip's poster (``orchestrator.posters``)


OPTIONS = web.AppKey("options", Options)
STATIC = {"view.css": "text/css", "view.js": "text/javascript"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self'; media-src 'self'; frame-src 'self'; frame-ancestors 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(
    ledger_path: str | Path,
    *,
    reroll_argv: RerollArgv | None = None,
    allowed_hosts: frozenset[str] | None = LOOPBACK,
) -> web.Application:
    """The view of the ledger at ``ledger_path`` (which must exist: the view never makes one).

    ``reroll_argv(batch)`` is the command the "Reroll rejected" button runs (None: the page
    shows the command instead). ``allowed_hosts``: the Host names it answers (None: any).
    """
    path = Path(ledger_path)
    if not path.is_file():
        raise errors.NoLedger(str(path))
    app = web.Application(middlewares=[_guard])
    app[OPTIONS] = Options(allowed_hosts, files.poster_maker())
    app[REROLLS] = Rerolls(reroll_argv, lambda batch: _reroll_hint(batch, path))
    app.cleanup_ctx.append(lambda app: _ledger_open(app, path))
    app.on_shutdown.append(_release_streams)
    _routes(app)
    return app


def _routes(app: web.Application) -> None:
    get, post = web.get, web.post
    app.add_routes([
        get("/", _index), get("/batches/{name}", _gallery), get("/jobs/{key}", _job),
        get("/batches/{name}/report", _report), get("/api/batches/{name}/jobs", _cards),
        get("/clips/{key}", _clip), get("/posters/{key}", _poster),
        post("/api/jobs/{key}/mark", _mark), post("/api/batches/{name}/reroll", _reroll_start),
        get("/api/batches/{name}/reroll", _reroll_status), get("/api/live", _live),
        get("/static/{name}", _static), get("/favicon.ico", _no_content),
    ])  # fmt: skip


async def _ledger_open(app: web.Application, path: Path) -> AsyncIterator[None]:
    async with Ledger.open(path) as ledger:
        app[LEDGER] = ledger
        app[LIVE] = Live(ledger)
        app[LIVE].start()
        try:
            yield
        finally:
            await app[REROLLS].close()
            await app[LIVE].close()


async def _release_streams(app: web.Application) -> None:
    """Open event streams end at shutdown, so Ctrl-C stops the server at once."""
    if LIVE in app:
        await app[LIVE].close()


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _traverses(request.raw_path):
        raise web.HTTPNotFound()
    allowed = request.app[OPTIONS].allowed_hosts
    if allowed is not None and _host_name(request.host) not in allowed:
        raise web.HTTPForbidden(text="unknown Host: open the address `orchestrator view` printed")
    if request.method not in ("GET", "HEAD") and not _same_origin(request):
        raise web.HTTPForbidden(text="cross-origin request refused")
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _traverses(raw_path: str) -> bool:
    """Whether the path has a ``.`` or ``..`` segment, as sent or once or twice decoded."""
    path = raw_path.split("?", 1)[0]
    for _ in range(3):
        if any(part in (".", "..") for part in path.replace("\\", "/").split("/")):
            return True
        path = unquote(path)
    return False


def _host_name(host: str | None) -> str:
    try:
        return (URL(f"http://{host}").host or "").strip("[]").lower() if host else ""
    except ValueError:
        return ""


def _same_origin(request: web.Request) -> bool:
    """Whether a write comes from a page this server served (Origin matches Host)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return request.headers.get("Sec-Fetch-Site") == "same-origin"
    try:
        url = URL(origin)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and url.raw_authority == request.host


def _reroll_hint(batch: str, ledger: Path) -> list[str]:
    return ["orchestrator", "reroll", "--batch", batch, "--ledger", str(ledger)]


# -- pages ----------------------------------------------------------------------------------


async def _index(request: web.Request) -> web.Response:
    lines = await request.app[LIVE].current()
    return _html(pages.batches_page(lines, str(request.app[LEDGER].path)))


async def _gallery(request: web.Request) -> web.Response:
    ledger, name = request.app[LEDGER], request.match_info["name"]
    await _batch(ledger, name)
    line = next(line for line in await request.app[LIVE].current() if line["batch"] == name)
    models, counts = await ledger.view_models(name), await ledger.view_mark_counts(name)
    reroll = await request.app[REROLLS].status(name)
    return _html(pages.gallery_page(line, models, counts, reroll, str(ledger.path)))


async def _job(request: web.Request) -> web.Response:
    ledger = request.app[LEDGER]
    job = await ledger.view_job(request.match_info["key"])
    if job is None:
        raise web.HTTPNotFound(text="no such job")
    group = gallery.group_of(str(job["entry_id"]))
    takes = [
        t for t in await ledger.view_takes(job["batch"], group)
        if gallery.group_of(str(t["entry_id"])) == group
    ]  # fmt: skip
    events = await ledger.events(key=job["key"])
    inputs = [i for k in await ledger.inputs_of(job["key"]) if (i := await ledger.view_job(k))]
    waiting = job["state"] == JobState.WAITING
    blocked = (await _blocked(ledger, job["batch"])).get(job["key"]) if waiting else None
    return _html(pages.job_page(job, events, takes, str(ledger.path), inputs, blocked))


async def _report(request: web.Request) -> web.Response:
    """The batch's HTML report (its spend charts), as ``report --format html`` writes it."""
    ledger, name = request.app[LEDGER], request.match_info["name"]
    await _batch(ledger, name)
    return _html(await reports.render(ledger, name, "html"))


# -- JSON -----------------------------------------------------------------------------------


async def _cards(request: web.Request) -> web.Response:
    ledger, name = request.app[LEDGER], request.match_info["name"]
    await _batch(ledger, name)
    query = gallery.page_query(name, dict(request.query))
    assert query.sort in SORTS
    rows = await ledger.view_page(query)
    waiting = any(row["state"] == JobState.WAITING for row in rows)
    blocked = await _blocked(ledger, name) if waiting else {}
    return web.json_response(gallery.page(rows, query, blocked))


async def _blocked(ledger: Ledger, batch: str) -> dict[str, str]:
    """Why each blocked job of ``batch`` waits, by key (asked only where a waiting job is shown)."""
    return {b.key: b.reason for b in await ledger.blocked(batch)}


async def _clip(request: web.Request) -> web.StreamResponse:
    return await files.clip(request, request.app[LEDGER])


async def _poster(request: web.Request) -> web.StreamResponse:
    return await files.poster(request, request.app[LEDGER], request.app[OPTIONS].posters)


async def _mark(request: web.Request) -> web.Response:
    return await review.set_mark(request, request.app[LEDGER])


async def _live(request: web.Request) -> web.StreamResponse:
    return await stream(request, request.app[LIVE])


async def _reroll_start(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    await _batch(request.app[LEDGER], name)
    return web.json_response(await request.app[REROLLS].start(name), status=202)


async def _reroll_status(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    await _batch(request.app[LEDGER], name)
    try:
        wait_s = float(request.query.get("wait", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="wait is a number of seconds") from None
    wait_s = min(wait_s, review.MAX_WAIT_S) if wait_s > 0 else 0.0  # NaN and negatives: 0
    return web.json_response(await request.app[REROLLS].status(name, wait_s))


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    text = importlib.resources.files("orchestrator.view").joinpath("static", name).read_bytes()
    return web.Response(body=text, content_type=STATIC[name], headers={"Cache-Control": "no-cache"})


async def _batch(ledger: Ledger, name: str) -> dict[str, Any]:
    for batch in await ledger.view_batches():
        if batch["name"] == name:
            return batch
    raise web.HTTPNotFound(text="no such batch")


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})


async def _no_content(request: web.Request) -> web.Response:
    return web.Response(status=204)
