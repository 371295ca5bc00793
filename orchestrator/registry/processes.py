"""Runs of this machine: is one still alive, and whose turn it is to POST for an account.

A run is identified by host, pid and the process's start time (a pid is reused, a start time
with it is not); a run on another host (a home directory shared over the network) is alive while
its heartbeat is fresh. The POST turn is an ``flock``, which the kernel gives back when its
holder dies, however it dies.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import IO

#: A run on another host (a shared home directory) is alive while its heartbeat is this fresh.
REMOTE_ALIVE_S = 30.0


def try_lock(path: Path) -> IO[bytes] | None:
    """The exclusive lock on ``path`` if free now (close the handle to give it back), or None."""
    handle = path.open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def process_started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(host: str, pid: int, pid_started: str | None, alive_at: float) -> bool:
    """Whether the run that registered these is still running."""
    if host != socket.gethostname():
        return time.time() - alive_at < REMOTE_ALIVE_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process with that pid: ours may still be it
    return pid_started is None or process_started(pid) in (None, pid_started)
