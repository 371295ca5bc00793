"""The batches page's live numbers: one watcher for the ledger, a server-sent event per change.

Why a watcher: many open pages must not each add up a 100,000-job batch every second. One
task asks SQLite's ``PRAGMA data_version`` (a counter another connection's commit bumps, read
without touching a table) every :data:`POLL_S`; only when a run has committed, or
:data:`IDLE_REFRESH_S` has passed (the pace decays with time alone), does it recompute the
lines, once, for every subscriber. With no page open it does nothing. A page is at most
``POLL_S`` plus one recomputation behind the ledger.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from orchestrator.ledger import Ledger
from orchestrator.view.summary import cells, summaries

#: How often the watcher asks whether the ledger changed (s).
POLL_S = 0.5
#: Lines are recomputed at least this often while a page is open (s).
IDLE_REFRESH_S = 10.0
#: A comment line keeps an idle stream open through proxies (s).
KEEPALIVE_S = 15.0


class Live:
    """The latest batches' lines and a version number that grows with every refresh."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.lines: list[dict[str, Any]] = []
        self.version = 0
        self.closing = False
        self._subscribers = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stamp: tuple[Any, float] | None = None  #: (data_version, loop time) of the lines

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def close(self) -> None:
        """Stop the watcher and release every stream (so the server can shut down at once)."""
        self.closing = True
        async with self._changed:
            self._changed.notify_all()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # a cancel of ours is raised

    @asynccontextmanager
    async def subscribed(self) -> AsyncIterator[None]:
        """While a page listens: the watcher works, and has fresh lines before the first send."""
        self._subscribers += 1
        try:
            if self._subscribers == 1:
                await self.refresh()
            yield
        finally:
            self._subscribers -= 1

    async def current(self) -> list[dict[str, Any]]:
        """The lines, recomputed only if the ledger changed or they are ``IDLE_REFRESH_S`` old:
        going from the batches page to a gallery adds nothing up twice."""
        loop = asyncio.get_running_loop()
        version = await self._ledger.pragma("data_version")
        stamp = self._stamp
        if stamp is None or stamp[0] != version or loop.time() - stamp[1] >= IDLE_REFRESH_S:
            await self.refresh()
        return self.lines

    async def refresh(self) -> None:
        stamp = (await self._ledger.pragma("data_version"), asyncio.get_running_loop().time())
        self.lines = await summaries(self._ledger, datetime.now(UTC))
        self._stamp = stamp
        self.version += 1
        async with self._changed:
            self._changed.notify_all()

    async def changed_since(self, version: int, timeout_s: float) -> bool:
        """Wait until the lines are newer than ``version`` (False: timed out or closing)."""
        async with self._changed:
            with suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._changed.wait_for(lambda: self.version != version or self.closing)
        return self.version != version and not self.closing

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        seen, refreshed = None, loop.time()
        while True:
            await asyncio.sleep(POLL_S)
            if not self._subscribers:
                seen = None  # nobody listens: no reads; the next subscriber refreshes first
                continue
            version = await self._ledger.pragma("data_version")
            if seen is not None and (version != seen or loop.time() - refreshed >= IDLE_REFRESH_S):
                await self.refresh()
                refreshed = loop.time()
            seen = version


def payload(lines: list[dict[str, Any]]) -> bytes:
    """One server-sent event: every batch's line and its cells as text."""
    data = [line | {"cells": cells(line)} for line in lines]
    return f"data: {json.dumps(data)}\n\n".encode()


async def stream(request: web.Request, live: Live) -> web.StreamResponse:
    """``GET /api/live``: the batches' lines now and after every change, until the page closes."""
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    async with live.subscribed():
        version = live.version
        try:
            await response.write(payload(live.lines))
            while not live.closing:
                if await live.changed_since(version, KEEPALIVE_S):
                    version = live.version
                    await response.write(payload(live.lines))
                elif not live.closing:
                    await response.write(b": keep-alive\n\n")
        except ConnectionResetError:  # the page went away
            pass
    return response
