"""The processes a benchmark runs: the simulator, `orchestrator run`, and a relay between them.

Everything is measured from outside, the way a user experiences it:

* :class:`SimProcess` starts ``orchestrator simulate`` as its own process (so its CPU never
  counts against the orchestrator's) and reads its URL from the banner.
* :func:`run_orchestrator` spawns ``orchestrator run`` and reaps it with ``os.wait4``, which gives
  that one child's CPU time and peak RSS (``ru_maxrss``) without any help from the child. A
  sampler reads ``/proc/<pid>/status`` meanwhile, so the RSS curve shows how memory grows.
* :class:`Relay` forwards TCP from the orchestrator to the simulator and notes when the first
  request byte arrives: "start-up time" is then exact, not inferred from logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
Stop = Callable[[], Awaitable[None]]


def orchestrator_command() -> list[str]:
    """The installed `orchestrator` script beside this Python (what users run), else ``-m``."""
    script = Path(sys.executable).parent / "orchestrator"
    return [str(script)] if script.exists() else [sys.executable, "-m", "orchestrator"]


def sim_flags(options: dict[str, Any]) -> list[str]:
    """``{"time_scale": 20}`` → ``["--time-scale", "20"]`` (booleans become --x/--no-x)."""
    flags: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            flags += [flag, str(value)]
    return flags


class SimProcess:
    """``orchestrator simulate`` in a child process; use as ``with SimProcess(...) as sim``."""

    def __init__(self, options: dict[str, Any], log: Path) -> None:
        self.options = {"port": 0, "seed": 1, "balance_usd": "1000000000", **options}
        self.log = log
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> SimProcess:
        args = [*orchestrator_command(), "simulate", *sim_flags(self.options)]
        with self.log.open("w") as errors:
            self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert self._proc.stdout is not None
        banner = self._proc.stdout.readline()
        if " on " not in banner:
            self.__exit__()
            raise RuntimeError(f"the simulator did not start: {self.log.read_text()[-2000:]}")
        self.url = banner.split(" on ", 1)[1].split()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    @property
    def scale(self) -> float:
        return float(self.options["time_scale"])


@dataclass
class RunResult:
    """What one `orchestrator run` cost, seen from outside the process."""

    exit_code: int
    wall_s: float
    cpu_s: float  #: user + system, from wait4
    peak_rss_mb: float  #: ru_maxrss
    stopped: str | None = None  #: "timeout" or "asked" when the bench ended it early
    first_request_s: float | None = None  #: spawn → first API byte at the relay
    startup_cpu_s: float | None = None  #: CPU spent by then
    startup_rss_mb: float | None = None  #: peak RSS by then
    rss_curve_mb: list[tuple[float, float]] = field(default_factory=list)  #: (s, VmRSS)
    stderr_tail: str = ""


def _proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a live process, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def _proc_rss_mb(pid: int, key: str = "VmRSS") -> float | None:
    """A ``Vm*`` line of /proc/<pid>/status in MB (VmHWM is the peak so far)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def _sample_rss(pid: int, started: float, curve: list[tuple[float, float]]) -> None:
    """Every 0.25 s until cancelled: (seconds since spawn, VmRSS MB)."""
    while True:
        rss = _proc_rss_mb(pid)
        if rss is not None:
            curve.append((time.monotonic() - started, rss))
        await asyncio.sleep(0.25)


async def _note_first_request(
    relay: Relay | None, pid: int, started: float, out: RunResult
) -> None:
    """When the relay sees the first API byte: record the time, CPU and peak RSS so far."""
    if relay is None:
        return
    await relay.first.wait()
    out.startup_cpu_s = _proc_cpu_s(pid)
    out.startup_rss_mb = _proc_rss_mb(pid, "VmHWM")
    out.first_request_s = (relay.first_at or time.monotonic()) - started


def _spawn(
    args: list[str], env: dict[str, str], log_dir: Path
) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``orchestrator <args>`` with its output in ``log_dir``; returns it and when."""
    with (log_dir / "stdout.log").open("w") as out, (log_dir / "stderr.log").open("w") as err:
        started = time.monotonic()
        return subprocess.Popen(
            [*orchestrator_command(), *args], env=env, stdout=out, stderr=err
        ), started


async def run_orchestrator(
    args: list[str],
    env: dict[str, str],
    log_dir: Path,
    *,
    timeout_s: float,
    relay: Relay | None = None,
    stop: Stop | None = None,
) -> RunResult:
    """Run ``orchestrator <args>``; SIGTERM it when ``stop()`` returns or after ``timeout_s``."""
    proc, started = _spawn(args, env, log_dir)
    result = RunResult(exit_code=-1, wall_s=0.0, cpu_s=0.0, peak_rss_mb=0.0)
    helpers = [
        asyncio.ensure_future(_sample_rss(proc.pid, started, result.rss_curve_mb)),
        asyncio.ensure_future(_note_first_request(relay, proc.pid, started, result)),
    ]
    try:
        status, usage = await _reap(proc, timeout_s, stop, result)
    finally:
        for helper in helpers:
            helper.cancel()
    result.wall_s = time.monotonic() - started
    result.exit_code = os.waitstatus_to_exitcode(status)
    result.cpu_s = usage.ru_utime + usage.ru_stime
    result.peak_rss_mb = usage.ru_maxrss / 1024
    result.stderr_tail = (log_dir / "stderr.log").read_text()[-1500:]
    return result


async def _reap(
    proc: subprocess.Popen[bytes], timeout_s: float, stop: Stop | None, result: RunResult
) -> tuple[int, Any]:
    """Wait for the child with ``wait4`` (in a thread), ending it early when asked or late."""
    waiter = asyncio.ensure_future(asyncio.to_thread(os.wait4, proc.pid, 0))
    asked: asyncio.Future[Any] = (
        asyncio.ensure_future(stop()) if stop is not None else asyncio.Future()
    )
    contenders: set[asyncio.Future[Any]] = {waiter, asked}
    done, _ = await asyncio.wait(contenders, timeout=timeout_s, return_when="FIRST_COMPLETED")
    asked.cancel()
    if waiter not in done:
        result.stopped = "asked" if asked in done else "timeout"
        proc.send_signal(signal.SIGTERM)
        finished, _ = await asyncio.wait({waiter}, timeout=30)
        if not finished:
            proc.kill()
    _, status, usage = await waiter
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return status, usage


class Relay:
    """A TCP forwarder in front of the simulator that timestamps the first request byte."""

    def __init__(self, upstream_url: str) -> None:
        host_port = upstream_url.split("//", 1)[1]
        self._host, port = host_port.rsplit(":", 1)
        self._port = int(port)
        self.first = asyncio.Event()
        self.first_at: float | None = None
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer, first=True),
            self._pump(up_reader, writer, first=False),
            return_exceptions=True,
        )

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, first: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if first and self.first_at is None:
                    self.first_at = time.monotonic()
                    self.first.set()
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
