"""Running the simulator: the async context manager tests use, and the blocking ``serve``.

Besides the aiohttp site, a running simulator owns one background task, the *waker*: it sleeps
until the real moment the next event is due (a lifecycle step or a foreign client's job; never,
with a manual clock) and applies it, so webhooks fire and foreign jobs appear on time even when
nobody is polling. Anything that may move the next event earlier (a new job, a newly seen
account, ``advance``, ``configure``) sets the waker's event so it recomputes. The foreign client
has no task of its own: one sleeper over both kinds of event keeps them in time order.

With ``access_log`` each answered request is one line, ``GET /jobs 200 0.8ms``: method, path
without its query (the CDN's ``sig`` is a secret), status and duration, never a header, so never
a bearer token. They go to the ``orchestrator.simulator.access`` logger at INFO, which
``orchestrator simulate`` prints on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from orchestrator.simulator.accounts import account_of
from orchestrator.simulator.app import build_app
from orchestrator.simulator.control import all_jobs
from orchestrator.simulator.options import SimulatorOptions
from orchestrator.simulator.service import Service
from orchestrator.simulator.stats import snapshot

_MIN_SLEEP_S = 0.0005
#: How long stopping waits for answers in flight (slow faults, slow media) before cutting them.
_SHUTDOWN_S = 2.0
ACCESS_LOGGER = logging.getLogger("orchestrator.simulator.access")


class AccessLine(AbstractAccessLogger):
    """aiohttp's ``access_log_class``: method, path, status, duration in milliseconds."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d %.1fms", request.method, request.path, response.status, time * 1000
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


class RunningSimulator:
    """Handle on a live simulator: its URL, options, clock and ground truth."""

    def __init__(self, service: Service, url: str) -> None:
        self._service = service
        self.url = url

    @property
    def options(self) -> SimulatorOptions:
        return self._service.options

    def configure(self, **changes: Any) -> SimulatorOptions:
        """Change options live (fault rates, concurrency, outage, ...)."""
        return self._service.configure(**changes)

    def advance(self, seconds: float) -> float:
        """Move the simulated clock forward; returns the new simulated time."""
        return self._service.advance(seconds)

    def now(self) -> float:
        """Simulated time, epoch seconds."""
        return self._service.tick()

    def stats(self) -> dict[str, Any]:
        """The ``GET /_sim/stats`` document."""
        self._service.tick()
        return snapshot(self._service)

    def jobs(self) -> list[dict[str, Any]]:
        """The ``GET /_sim/jobs`` list."""
        return all_jobs(self._service)

    async def wait_until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Wait until ``predicate(stats())`` holds, re-checking after every API request answered.

        Event-driven (no polling, no sleeping): tests use it to act at an exact point of a run
        ("after the second POST"), then change options with ``configure``.
        """
        answered = asyncio.Event()
        listeners = self._service.counters.listeners
        listeners.append(answered.set)
        try:
            while not predicate(stats := self.stats()):
                answered.clear()
                await answered.wait()
            return stats
        finally:
            listeners.remove(answered.set)

    async def drain_webhooks(self) -> None:
        """Wait until every webhook delivery started so far has finished (either way)."""
        await self._service.webhooks.drain()

    def account_id(self, token: str) -> str:
        """The account id a token maps to (``sha256(token).hexdigest()[:16]``, or that of the
        first token of its ``shared_tokens`` group)."""
        return account_of(token, self._service.options.token_groups)


@asynccontextmanager
async def running_simulator(**options: Any) -> AsyncIterator[RunningSimulator]:
    """Start a simulator on the running loop; stop it (and its webhooks) on exit."""
    service = Service(SimulatorOptions(**options))
    app = build_app(service)
    runner = web.AppRunner(
        app,
        # None: aiohttp logs no request at all; else one line each, to ACCESS_LOGGER at INFO
        access_log=ACCESS_LOGGER if service.options.access_log else None,
        access_log_class=AccessLine,
        handle_signals=False,
        shutdown_timeout=_SHUTDOWN_S,
    )
    await runner.setup()
    waker: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, service.options.host, service.options.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        service.base_url = f"http://{_url_host(host)}:{port}"
        waker = asyncio.get_running_loop().create_task(_wake_loop(service))
        yield RunningSimulator(service, service.base_url)
    finally:
        if waker is not None:
            waker.cancel()
            # gather: a cancel of this task while it waits is raised, not taken for the waker's
            await asyncio.gather(waker, return_exceptions=True)
        await runner.cleanup()
        await service.webhooks.close()


async def _wake_loop(service: Service) -> None:
    wake = asyncio.Event()
    service.on_change = wake.set
    while True:
        wake.clear()
        service.tick()
        at_s = service.next_event_s()
        delay = None if at_s is None else service.clock.real_delay(at_s)
        if delay is None:
            await wake.wait()
            continue
        # asyncio.timeout, never wait_for: on 3.11 a cancel that comes with the wake-up is lost
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(delay, _MIN_SLEEP_S)):
                await wake.wait()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def serve(options: SimulatorOptions) -> None:
    """Run until interrupted; print the URL and a ready-to-paste curl example first."""
    asyncio.run(_serve(options))


async def _serve(options: SimulatorOptions) -> None:
    _warnings_to_stderr()
    if options.access_log:
        _log_to_stderr()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with running_simulator(**_fields(options)) as sim:
        print(_banner(sim.url, options), flush=True)
        await stop.wait()
    print("simulator stopped", file=sys.stderr)


def _warnings_to_stderr() -> None:
    """Print its warnings (a webhook not delivered) on stderr, bare, as Python's last-resort
    handler did until the package's NullHandler (``orchestrator/__init__``) quietened it."""
    logger = logging.getLogger("orchestrator.simulator")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


def _log_to_stderr() -> None:
    """Print the access lines on stderr, bare, unless the logger already has a handler."""
    if not ACCESS_LOGGER.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        ACCESS_LOGGER.addHandler(handler)
        ACCESS_LOGGER.propagate = False  # a root handler set up elsewhere must not print them twice
    ACCESS_LOGGER.setLevel(logging.INFO)


def _banner(url: str, options: SimulatorOptions) -> str:
    """The startup text: where it listens and a curl command that creates a job."""
    token = "<one of your --tokens>" if options.tokens else "sim-token"
    return (
        f"Krea simulator listening on {url}"
        f" (time scale {options.time_scale}, seed {options.seed})\n"
        f"Try:\n  curl -s -X POST {url}/generate/video/kling/kling-2.5 \\\n"
        f"    -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n"
        """    -d '{"prompt": "a red fox running through fresh snow"}'\n"""
        f"Then: curl -s -H 'Authorization: Bearer {token}' {url}/jobs\n"
        f"Ground truth (tests and benchmarks only): {url}/_sim/stats"
    )


def _fields(options: SimulatorOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}
