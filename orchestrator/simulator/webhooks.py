"""Webhook delivery: POST the job JSON to ``X-Webhook-URL`` when a job reaches a terminal status.

Krea documents neither retries nor signatures, so the simulator sends one attempt per delivery
(two with ``webhook_duplicates``), logs failures and moves on. Deliveries run as tasks on their
own ``ClientSession`` so a slow receiver never delays an API answer; ``close`` waits for the
ones in flight. Only the URL's host and path are logged: a query string may carry a secret.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger("orchestrator.simulator.webhooks")

_TIMEOUT = aiohttp.ClientTimeout(total=10)


class WebhookSender:
    """Fire-and-forget webhook POSTs with delivery counts."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.failed = 0

    def send(self, url: str, payload: dict[str, Any], copies: int = 1) -> None:
        """Schedule ``copies`` deliveries of ``payload`` to ``url``."""
        for _ in range(copies):
            task = asyncio.get_running_loop().create_task(self._deliver(url, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        try:
            async with self._session.post(url, json=payload) as response:
                await response.read()
                ok = response.status < 300
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("webhook to %s failed: %s", _safe(url), type(error).__name__)
            ok = False
        else:
            if not ok:
                log.warning("webhook to %s answered %s", _safe(url), response.status)
        if ok:
            self.delivered += 1
        else:
            self.failed += 1

    async def drain(self) -> None:
        """Wait until every delivery started so far has succeeded or failed."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Let deliveries in flight finish (bounded by their timeout), then close the session."""
        await self.drain()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _safe(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}{parts.path}"
