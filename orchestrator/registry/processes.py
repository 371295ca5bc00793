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


class TurnFile:
    """One run's handle on its account's turn file, opened once for the whole run.

    The lock is taken and given back with ``flock`` on this one descriptor, and the note read
    and written in place: no ``open()`` per POST. Five opens a POST (lock, read and write the
    note when the turn is taken, again when it is given back), each on the event loop and a
    quarter of a millisecond on this machine's file system, slowed every POST by over a
    millisecond, which showed as a slower ramp and a lower utilisation (bench figure 1). The
    kernel still gives the lock back when the run dies, however it dies.

    The note is ``"<until> <holder>"``: ``until``, the local time (epoch s) before which the
    turn's next holder must not POST; ``holder``, who holds it now (none when free).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_lock(self) -> bool:
        """Take the turn if it is free now (give it back with :meth:`unlock`)."""
        try:
            fcntl.flock(self._handle(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def unlock(self) -> None:
        """Give the turn back."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def enter(self, holder: str) -> tuple[float, str]:
        """Note ``holder`` in the turn just taken; returns the time before which it must not
        POST, and whose mark was still there ("" if none): that run died holding the turn (see
        ``turn.PostTurn._enter``)."""
        until, previous = self._note()
        self._write(f"{until!r} {holder}")
        return until, previous

    def leave(self) -> None:
        """Clear the holder's mark as the turn is given back (the time to wait stays)."""
        until, _ = self._note()
        self._write(repr(until))

    def hold_until(self, until: float) -> None:
        """Keep the turn's next holders from POSTing before ``until`` (call it holding the
        turn)."""
        before, holder = self._note()
        if until > before:
            self._write(f"{until!r} {holder}")

    def close(self) -> None:
        """Close the file (which gives the turn back if it was held)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _handle(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        return self._fd

    def _note(self) -> tuple[float, str]:
        try:
            until, _, holder = os.pread(self._handle(), 4096, 0).decode().partition(" ")
            return float(until or 0.0), holder.strip()
        except (OSError, ValueError):
            return 0.0, ""

    def _write(self, text: str) -> None:
        """The note's new text. A note that cannot be written (a full disk) only loses a wait
        that keeps two POSTs' windows apart: never a reason to stop a POST or a run."""
        data = text.encode()
        with contextlib.suppress(OSError):
            os.pwrite(self._handle(), data, 0)
            os.ftruncate(self._handle(), len(data))


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
