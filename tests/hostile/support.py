"""Helpers for the hostile-input and fault tests: a recording reporter, CLI runs, figures."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.jobs import JobState
from orchestrator.manifest.manifest import load_manifest
from orchestrator.runner import run
from orchestrator.simulator import RunningSimulator

# the CLI helpers, under the names the hostile tests know them by
from tests.e2e.cli_support import lines_until as lines_until
from tests.e2e.cli_support import orchestrator as cli
from tests.integration.pipeline_support import Outcome, settings_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Recorder:
    """A pipeline Reporter that keeps every state change and, while :meth:`listening`, every
    message the stages log (their notes); tests wait on what it saw."""

    notes: list[tuple[str, str]] = field(default_factory=list)  #: (level, message)
    changes: list[tuple[str, JobState | None, JobState, str]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self, batch: str, counts: dict[JobState, int]) -> None:
        pass

    def job_changed(
        self, entry_id: str, old: JobState | None, new: JobState, note: str = ""
    ) -> None:
        self.changes.append((entry_id, old, new, note))
        self._changed.set()

    def spend_changed(self, billed_micro: int, exposure_micro: int) -> None:
        pass

    def note(self, message: str, *, level: str = "info") -> None:
        self.notes.append((level, message))
        self._changed.set()

    @contextlib.contextmanager
    def listening(self) -> Iterator[None]:
        """Keep the stages' log records (those naming a batch), at every level, as notes."""
        recorder = self

        class Notes(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if hasattr(record, "batch"):
                    recorder.note(record.getMessage(), level=record.levelname.lower())

        handler, package = Notes(), logging.getLogger("orchestrator")
        before = package.level
        package.addHandler(handler)
        package.setLevel(logging.DEBUG)
        try:
            yield
        finally:
            package.removeHandler(handler)
            package.setLevel(before)

    def reached(self, state: JobState) -> set[str]:
        """Entries that have moved into ``state`` at some point."""
        return {entry for entry, _, new, _ in self.changes if new is state}

    def noted(self, text: str) -> list[str]:
        return [message for _, message in self.notes if text in message]

    async def wait_for(self, predicate: Callable[[Recorder], bool]) -> None:
        """Return once ``predicate(self)`` holds; re-checked on every event (no polling)."""
        while not predicate(self):
            self._changed.clear()
            await self._changed.wait()


_RESERVED: list[socket.socket] = []  #: the sockets that keep free_port()'s ports ours


@atexit.register
def _release_ports() -> None:
    for held in _RESERVED:
        held.close()


def free_port() -> int:
    """A loopback port kept for this test session: nothing listens on it until we serve there.

    The port comes from binding port 0 and reading it back, and that socket stays bound (never
    listening) until the session ends, so the kernel gives the port to nobody else: not to
    another bind, nor as the source port of an outgoing connection. Connecting to it is
    refused until a server binds it with ``SO_REUSEADDR`` (asyncio's default, so the webhook
    receiver of a run, in this process or a child, may listen there, as often as needed).
    """
    held = socket.socket()
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.bind(("127.0.0.1", 0))
    _RESERVED.append(held)
    return int(held.getsockname()[1])


@dataclass
class Finished:
    code: int
    out: str
    err: str


async def run_cli(
    args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Finished:
    """Run ``orchestrator`` to completion in a subprocess; its exit code and both streams."""
    proc = await asyncio.create_subprocess_exec(
        *cli(*args),
        env=env if env is not None else dict(os.environ),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return Finished(
        proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


async def run_recorded(
    sim: RunningSimulator,
    tmp_path: Path,
    text: str,
    reporter: Recorder | None = None,
    **changes: Any,
) -> Outcome:
    """Like pipeline_support.run_manifest, with a reporter the test can watch."""
    path = tmp_path / "jobs.yaml"
    path.write_text(text)
    settings = settings_for(sim, tmp_path, **changes)
    with reporter.listening() if reporter else contextlib.nullcontext():
        summary = await run(load_manifest(path), settings, reporter)
    return Outcome(summary, settings.ledger_path, settings.out_dir)
