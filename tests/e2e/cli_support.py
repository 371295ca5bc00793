"""Running the real `orchestrator` command in a subprocess against an in-test simulator."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from orchestrator.mp4 import check_mp4
from orchestrator.simulator import RunningSimulator, media_sha256_for

TOKEN = "sk-test-e2e-0000"
#: What ``--progress json`` prints for every ledger state change, one line each: the unit of
#: progress tests count before they kill a run.
JOB_EVENT = '"event": "job"'


@dataclass
class Workdir:
    root: Path
    sim: RunningSimulator
    scale: float
    progress: tuple[str, ...] = ("--progress", "plain")

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.db"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def env(self) -> dict[str, str]:
        return {**os.environ, "KREA_API_KEY": TOKEN, "ORCHESTRATOR_SEED": "3"}

    def args(self, command: str = "run", *extra: str) -> list[str]:
        return orchestrator(
            command, str(self.root / "jobs.yaml"), "--api-base", self.sim.url,
            "--ledger", str(self.ledger), "--out", str(self.out), "--time-scale", str(self.scale),
            "--poll-min", "2", *self.progress, *extra,
        )  # fmt: skip

    async def start(self, *extra: str, command: str = "run") -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *self.args(command, *extra), env=self.env(), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def run(self, *extra: str, command: str = "run") -> tuple[int, str, str]:
        """``run`` (or ``retry``) with this workdir's manifest, to its end: code, stdout, stderr."""
        proc = await self.start(*extra, command=command)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()

    async def call(self, *args: str) -> tuple[int, str, str]:
        """Any other command (`status`, `cancel`, ...) on this workdir's ledger, to its end."""
        proc = await asyncio.create_subprocess_exec(
            *orchestrator(*args, "--ledger", str(self.ledger)), env=self.env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode(), err.decode()


def orchestrator(*args: str) -> list[str]:
    """The argv of ``orchestrator <args>`` with this interpreter (every test's one builder)."""
    return [sys.executable, "-m", "orchestrator", *args]


class EndedEarly(AssertionError):
    """The process closed its stream before printing the lines a test waited for."""


async def lines_until(
    stream: asyncio.StreamReader, needle: str, seen: list[str] | None = None, *, count: int = 1
) -> str:
    """Read lines until ``count`` of them contain ``needle``; return the last of those.

    Every line read is appended to ``seen``. Event-driven: it returns when the process has
    printed them, however slow the machine. Raises :class:`EndedEarly` if the stream ends first.
    """
    matched = 0
    while raw := await stream.readline():
        line = raw.decode(errors="replace")
        if seen is not None:
            seen.append(line)
        matched += needle in line
        if matched >= count:
            return line
    raise EndedEarly(f"the process ended after {matched} of {count} lines with {needle!r}")


async def wait_for_lines(proc: asyncio.subprocess.Process, needle: str, count: int = 1) -> None:
    """Read the run's stderr until ``count`` lines contain ``needle`` (see :func:`lines_until`)."""
    assert proc.stderr is not None
    await lines_until(proc.stderr, needle, count=count)


def write_manifest(root: Path, count: int) -> None:
    jobs = "\n".join(f"  - id: clip{i:04d}\n    prompt: scene {i}, slow pan" for i in range(count))
    (root / "jobs.yaml").write_text(
        f"batch: e2e\ndefaults:\n  model: kling/kling-2.5\n  duration: 5\njobs:\n{jobs}\n"
    )


async def assert_billed_once_and_files_whole(work: Workdir, entries: int) -> None:
    """Ground truth: Krea billed each entry exactly once, and each file is the bytes it served."""
    async with Ledger.open(work.ledger, readonly=True) as ledger:
        rows = [r for r in await ledger.jobs(batch="e2e") if r.state is not JobState.ORPHAN]
    assert len(rows) == entries
    assert all(r.state is JobState.DONE for r in rows), sorted({r.state for r in rows})
    charged = {job["job_id"] for job in work.sim.jobs() if job["charged_micro"]}
    ours = {r.remote_id for r in rows}
    assert len(charged) == entries, f"{len(charged)} billed jobs for {entries} entries"
    assert charged == ours
    for row in rows:
        path = work.out / (row.output_path or "")
        check_mp4(path)
        assert path.stat().st_size == row.bytes
        assert row.sha256 == media_sha256_for(row.remote_id or "", work.sim.options.media_bytes)
    assert not list(work.out.rglob("*.part")), "a temp file was left behind"
