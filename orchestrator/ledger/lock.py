"""One writer per ledger: an exclusive ``flock`` on ``<ledger>.lock``, held for a whole `run`.

The kernel drops a flock when its process dies, so a SIGKILLed run never leaves a stale lock
behind, and the next run needs no cleanup (RELIABILITY P1.6).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from orchestrator.errors import LedgerBusy


class LedgerLock:
    """An exclusive, crash-safe claim on a ledger: the kernel drops it when the process dies."""

    def __init__(self, ledger_path: Path) -> None:
        self.path = Path(f"{ledger_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise LedgerBusy(str(self.path.with_suffix("")), pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (harmless, reused)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None
