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

    The note is ``"<until> <holder> <dead> ..."``: ``until``, the local time (epoch s) before
    which the turn's next holder must not POST; ``holder``, who holds it now (``-`` when free);
    then the holders found dead in the turn whose POSTs no holder has ended yet
    (``turn.PostTurn._entered_after``): a holder killed before it ended them passes them on.
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

    def enter(self, holder: str) -> tuple[float, tuple[str, ...]]:
        """Note ``holder`` in the turn just taken; returns the time before which it must not
        POST, and the holders it found dead in the turn: the mark still there (that run died
        holding it) and those a holder before it did not get to end (see ``turn``)."""
        until, previous, dead = self._note()
        dead = tuple(dict.fromkeys((*dead, *((previous,) if previous else ()))))
        self._write(until, holder, dead)
        return until, dead

    def settled(self, dead: tuple[str, ...], until: float) -> None:
        """``dead``'s POSTs are ended, and no POST may leave before ``until`` (call it holding
        the turn): one write, so a holder killed now passes on the one or the other."""
        before, holder, left = self._note()
        self._write(max(before, until), holder, tuple(d for d in left if d not in dead))

    def leave(self) -> None:
        """Clear the holder's mark as the turn is given back (the time to wait, and the dead
        not yet ended, stay)."""
        until, _, dead = self._note()
        self._write(until, "", dead)

    def hold_until(self, until: float) -> None:
        """Keep the turn's next holders from POSTing before ``until`` (call it holding the
        turn)."""
        before, holder, dead = self._note()
        if until > before:
            self._write(until, holder, dead)

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

    def _note(self) -> tuple[float, str, tuple[str, ...]]:
        """(until, holder or "", dead holders not yet ended); an unreadable note is empty."""
        try:
            until, *rest = os.pread(self._handle(), 4096, 0).decode().split() or ["0"]
            holder = rest[0] if rest and rest[0] != "-" else ""
            return float(until), holder, tuple(rest[1:])
        except (OSError, ValueError):
            return 0.0, "", ()

    def _write(self, until: float, holder: str, dead: tuple[str, ...]) -> None:
        """The note's new text. A note that cannot be written (a full disk) only loses a wait
        that keeps two POSTs' windows apart: never a reason to stop a POST or a run."""
        data = " ".join((repr(until), holder or "-", *dead)).encode()
        with contextlib.suppress(OSError):
            os.pwrite(self._handle(), data, 0)
            os.ftruncate(self._handle(), len(data))


def process_started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    fields = _stat(pid)
    return fields[19] if fields else None


def _stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name (state first), or None if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def alive(host: str, pid: int, pid_started: str | None, alive_at: float) -> bool:
    """Whether the run that registered these is still running. A process killed but not yet
    reaped by its parent (a zombie) is not: it sends nothing more, and its locks are free."""
    if host != socket.gethostname():
        return time.time() - alive_at < REMOTE_ALIVE_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process with that pid: ours may still be it
    fields = _stat(pid)
    if fields is None:
        return True  # no /proc to tell: it may still be ours
    if fields[0] in ("Z", "X"):
        return False
    return pid_started is None or fields[19] == pid_started
