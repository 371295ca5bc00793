"""Running the view until Ctrl-C: bind, say where, wait, shut down cleanly.

The server binds 127.0.0.1 unless told otherwise; any other host is said out loud (the page
shows prompts, clips and spend, and takes marks, from anyone who can reach it) and then
answers every Host name. A port already in use is one clear error, not a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from orchestrator import errors
from orchestrator.view.app import LOOPBACK, make_app

Echo = Callable[..., object]


def reroll_argv(ledger: Path, *, simulate: bool) -> Callable[[str], list[str]]:
    """The `reroll` command the page's button runs: this interpreter, this ledger."""

    def argv(batch: str) -> list[str]:
        command = [sys.executable, "-m", "orchestrator", "reroll", "--batch", batch]
        return [*command, "--ledger", str(ledger), *(["--simulate"] if simulate else [])]

    return argv


async def serve(ledger: Path, host: str, port: int, *, simulate: bool, echo: Echo) -> None:
    """Serve the view of ``ledger`` on ``host:port`` until cancelled (Ctrl-C)."""
    loopback = host in LOOPBACK
    if not loopback:
        echo(
            f"Warning: serving on {host}, not 127.0.0.1: anyone who can reach this address "
            "sees the prompts, clips and spend, and can mark clips and start rerolls.",
            err=True,
        )
    app = make_app(
        ledger,
        reroll_argv=reroll_argv(ledger, simulate=simulate),
        allowed_hosts=LOOPBACK if loopback else None,
    )
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise _bind_error(exc, host, port) from None
        echo(f"Viewing {ledger} at {_address(runner, host, port)}")
        echo("Press Ctrl-C to stop.", err=True)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            echo("stopped", err=True)
    finally:
        await runner.cleanup()


def _address(runner: web.AppRunner, host: str, port: int) -> str:
    """The URL to open: the port actually bound (``--port 0`` picks a free one)."""
    bound = next(iter(runner.addresses), None)
    if isinstance(bound, tuple) and len(bound) >= 2:
        port = int(bound[1])
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def _bind_error(exc: OSError, host: str, port: int) -> errors.OrchestratorError:
    if exc.errno == errno.EADDRINUSE:
        return errors.OrchestratorError(
            f"port {port} on {host} is in use (another `orchestrator view`?): "
            "stop it, or choose another with --port"
        )
    return errors.OrchestratorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
