"""The review loop from the page: marks, and `orchestrator reroll` started as a child process.

A mark is one short write to the ledger's ``marks`` table (``ReviewQueries.set_mark``), which
no run touches: it is durable when the answer comes back, and never waits for a run. A reroll
is the real command (``reroll_argv(batch)``), run as a child so its work, its ledger lock and
its output are exactly the command line's; the page shows its exit status and last lines. No
reroll command given: the page shows the command to type instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from orchestrator.clock import now_utc
from orchestrator.ledger import Ledger
from orchestrator.ledger.review_queries import MARKS, Mark

#: ``reroll_argv(batch)``: the argv of the reroll command for a batch.
RerollArgv = Callable[[str], list[str]]
#: Lines of a reroll's output the page shows.
TAIL_LINES = 30
#: The longest a status request waits for a reroll to end (s).
MAX_WAIT_S = 30.0


async def set_mark(request: web.Request, ledger: Ledger) -> web.Response:
    """``POST /api/jobs/{key}/mark`` with ``{"mark": "pick"|"reject"|null}``."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text='the body is JSON: {"mark": ...}') from None
    mark = body.get("mark", "missing") if isinstance(body, dict) else "missing"
    if mark is not None and mark not in MARKS:
        raise web.HTTPBadRequest(text='mark is "pick", "reject" or null')
    key = request.match_info["key"]
    chosen: Mark | None = mark
    if not await ledger.set_mark(key, chosen):
        raise web.HTTPNotFound(text="no such job")
    return web.json_response({"key": key, "mark": mark})


@dataclass
class RerollRun:
    """One reroll child process: its command, output tail and exit code (None: running)."""

    argv: list[str]
    started_at: str = field(default_factory=now_utc)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    exit_code: int | None = None
    process: asyncio.subprocess.Process | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def as_dict(self) -> dict[str, Any]:
        running = self.exit_code is None
        return {"running": running, "exit_code": self.exit_code, "started_at": self.started_at,
                "command": shlex.join(self.argv), "output": list(self.tail)}  # fmt: skip


class Rerolls:
    """The reroll each batch has (had) running; one at a time per batch."""

    def __init__(self, argv: RerollArgv | None, hint: RerollArgv) -> None:
        self.argv = argv
        self._hint = hint
        self._runs: dict[str, RerollRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def command(self, batch: str) -> str:
        """What the page shows when it cannot start a reroll itself."""
        return shlex.join(self._hint(batch))

    async def status(self, batch: str, wait_s: float = 0.0) -> dict[str, Any]:
        """The batch's reroll; with ``wait_s``, once it has ended or that long has passed
        (a long poll: the page learns the end at once without asking every second)."""
        run = self._runs.get(batch)
        if run is not None and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await run.ended.wait()
        base = {"enabled": self.argv is not None, "command": self.command(batch)}
        return base | (run.as_dict() if run else {"running": False, "exit_code": None})

    async def start(self, batch: str) -> dict[str, Any]:
        """Start the reroll of ``batch`` unless one is running (409) or none is configured."""
        if self.argv is None:
            raise web.HTTPConflict(text=f"run it yourself: {self.command(batch)}")
        current = self._runs.get(batch)
        if current is not None and current.exit_code is None:
            raise web.HTTPConflict(text="a reroll of this batch is already running")
        run = RerollRun(self.argv(batch))
        self._runs[batch] = run
        run.process = await asyncio.create_subprocess_exec(
            *run.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        task = asyncio.create_task(_follow(run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await self.status(batch)

    async def close(self) -> None:
        """Stop children still running (SIGTERM: the command stops cleanly, resumable)."""
        for run in self._runs.values():
            if run.process is not None and run.exit_code is None:
                with contextlib.suppress(ProcessLookupError):
                    run.process.terminate()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _follow(run: RerollRun) -> None:
    """Keep the last lines of the child's output, then its exit code."""
    process = run.process
    assert process is not None
    assert process.stdout is not None
    while line := await process.stdout.readline():
        run.tail.append(line.decode(errors="replace").rstrip())
    run.exit_code = await process.wait()
    run.ended.set()
