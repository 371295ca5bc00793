"""Webhook mode: Krea POSTs a job's JSON to ``X-Webhook-URL`` when it finishes: a hint only.

Krea signs nothing and documents no retry policy, and says deliveries may be duplicated
(krea-api.md §7). So a delivery changes nothing by itself: a job id we have in flight is handed to
the poller, which confirms it with ``GET /jobs/{id}`` before any state changes. Bodies over 64 KiB
are refused by aiohttp before they are read; malformed bodies get 400; unknown or foreign job ids
get 202 and are ignored; duplicates are harmless because confirmation is idempotent.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from aiohttp import web

from orchestrator.errors import ConfigError
from orchestrator.jobs import JobState

if TYPE_CHECKING:
    from orchestrator.pipeline import Pipeline
    from orchestrator.poller import Poller

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024


@asynccontextmanager
async def webhook_receiver(
    listen: str | None, routes: Mapping[str, tuple[Pipeline, Poller]]
) -> AsyncIterator[None]:
    """Serve the receiver on ``host:port`` while the block runs (nothing if ``listen`` is None).

    ``routes``: batch -> its pipeline and poller (one run may carry several batches).
    """
    if not listen:
        yield
        return
    host, port = _address(listen)
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/{tail:.*}", _handler(routes))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise _cannot_listen(listen, exc) from None
    try:
        yield
    finally:
        await runner.cleanup()


def check_listen(listen: str) -> None:
    """Refuse an address the receiver could not listen on, before a run writes anything.

    Binds a socket as the receiver will (``SO_REUSEADDR`` on POSIX, as asyncio's servers) and
    closes it at once: it never listens, so the port is free again for the receiver.
    """
    host, port = _address(listen)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen for webhooks on {listen}: {exc.strerror}") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            if os.name == "posix":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise _cannot_listen(listen, exc) from None


def _address(listen: str) -> tuple[str, int]:
    """``host:port`` as (host, port); an empty host is 127.0.0.1."""
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"--webhook-listen must be host:port, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _cannot_listen(listen: str, exc: OSError) -> ConfigError:
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            f"cannot listen for webhooks on {listen}: the address is already in use (another "
            "process listens there); stop it, or choose another port with --webhook-listen"
        )
    reason = exc.strerror or str(exc)
    return ConfigError(f"cannot listen for webhooks on {listen}: {reason}")


def _handler(
    routes: Mapping[str, tuple[Pipeline, Poller]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    home = next(iter(routes.values()))[0]

    async def receive(request: web.Request) -> web.Response:
        try:
            payload = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "not JSON"}, status=400)
        job_id = payload.get("job_id") if isinstance(payload, dict) else None
        if not isinstance(job_id, str) or not job_id:
            return web.json_response({"error": "no job_id"}, status=400)
        row = await home.ledger.job_by_remote_id(job_id)
        if (
            row is None
            or row.batch not in routes
            or row.state not in (JobState.SUBMITTED, JobState.ORPHAN)
        ):
            log.debug(
                f"webhook for a job not in flight here ignored: {job_id}",
                extra={"batch": home.batch},
            )
            return web.Response(status=202)
        routes[row.batch][1].hint(job_id)
        return web.Response(status=204)

    return receive
