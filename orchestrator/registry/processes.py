"""Runs of this machine: is one still alive, and whose turn it is to POST for an account.

A run is identified by host, pid and the process's start time (a pid is reused, a start time
with it is not); a run on another host (a home directory shared over the network) is alive while
its heartbeat is fresh. The POST turn is an ``flock``, which the kernel gives back when its
holder dies, however it dies.
"""

from __future__ import annotations

import contextlib
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


def _turn_note(path: Path) -> tuple[float, str]:
    """What the turn file says: (until, holder). ``until``: the local time (epoch s) before
    which the turn's next holder must not POST; ``holder``: who holds it now ("" when free)."""
    try:
        until, _, holder = path.read_text().partition(" ")
        return float(until or 0.0), holder.strip()
    except (OSError, ValueError):
        return 0.0, ""


def enter_turn(path: Path, holder: str) -> tuple[float, str]:
    """Note ``holder`` in the turn just taken; returns the time before which it must not POST,
    and whose mark was still there ("" if none): that run died holding the turn (see
    ``turn.PostTurn._enter``)."""
    until, previous = _turn_note(path)
    _write_note(path, f"{until!r} {holder}")
    return until, previous


def leave_turn(path: Path) -> None:
    """Clear the holder's mark as the turn is given back (the time to wait stays)."""
    until, _ = _turn_note(path)
    _write_note(path, repr(until))


def hold_until(path: Path, until: float) -> None:
    """Keep the turn's next holders from POSTing before ``until`` (call it holding the turn)."""
    before, holder = _turn_note(path)
    if until > before:
        _write_note(path, f"{until!r} {holder}")


def _write_note(path: Path, text: str) -> None:
    """The turn file's new text. A note that cannot be written (a full disk) only loses a wait
    that keeps two POSTs' windows apart: never a reason to stop a POST or a run."""
    with contextlib.suppress(OSError):
        path.write_text(text)


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
