"""The account registry's file, on the thread its run gives it: schema, transactions, queries.

Several processes write it: a rollback journal (SQLite 3.40's WAL mode has a bug with concurrent
writers), short ``BEGIN IMMEDIATE`` transactions and a busy timeout. Every method here blocks;
``registry.account`` calls them on one thread per run, so the event loop never waits on a lock.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.registry.processes import alive, process_started

HEARTBEAT_S = 1.0  #: real seconds between a run's heartbeats
#: The key of a claim that is a possible duplicate: some run's lost POST may have made the job,
#: none can prove it, so none adopts it (an entry's key is never empty).
DOUBT_KEY = ""
#: Registries of accounts no run touched for this long are removed when any registry opens.
STALE_DAYS = 60
#: ``attempts.written`` is 0 (not written) or when it was (epoch seconds); older versions wrote 1.
WRITTEN_IS_A_TIME = 1.0
#: A POST registered on the wire: (ledger, key, run_id, sent_at, floor); not yet written.
ATTEMPT_SQL = "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, 'wire', ?, NULL, ?, 1, 0, 0)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, pid_started TEXT,
    ledger TEXT NOT NULL, started_at REAL NOT NULL, alive_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    ledger TEXT NOT NULL, key TEXT NOT NULL, run_id TEXT NOT NULL, state TEXT NOT NULL,
    sent_at REAL NOT NULL, answered_at REAL, floor TEXT, no_answer INTEGER NOT NULL DEFAULT 1,
    died INTEGER NOT NULL DEFAULT 0, written INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (ledger, key));
CREATE TABLE IF NOT EXISTS claims (
    remote_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, ledger TEXT NOT NULL,
    key TEXT NOT NULL, claimed_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS claims_by_created ON claims (created_at);
CREATE TABLE IF NOT EXISTS ledgers (ledger TEXT PRIMARY KEY, since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS clock (
    scale REAL PRIMARY KEY, low REAL NOT NULL, high REAL NOT NULL, rtt REAL NOT NULL,
    at REAL NOT NULL);
"""


@dataclass(frozen=True)
class RegisteredAttempt:
    """A POST of some run of the account whose job is not claimed yet."""

    ledger: str
    key: str
    run_id: str
    state: str  #: ``wire`` (no answer yet) or ``ambiguous``
    sent_at: float  #: local epoch seconds
    answered_at: float | None  #: when its answer (or its run's end) came, if known
    floor: str | None
    no_answer: bool  #: no HTTP answer came: Krea may have created the job a little later
    #: its run died while it was on the wire: it may never have left the machine at all
    died: bool
    live: bool  #: its run is alive (a ``wire`` attempt of a live run may still be answered)
    #: when its body was handed to the socket (local epoch seconds); None: not marked, or
    #: marked by an older version (``written`` was then 1, not a time)
    written_at: float | None = None


@dataclass(frozen=True)
class Snapshot:
    """What the registry knew at one instant."""

    #: job id -> (ledger, key) of the run that made it, and when it was claimed (local time)
    claims: dict[str, tuple[str, str, float]]
    attempts: tuple[RegisteredAttempt, ...]


class RegistryFile:
    """One run's connection to the registry file (see the module docstring)."""

    def __init__(self, path: Path, ledger: str, run_id: str) -> None:
        self.path, self.ledger, self.run_id = path, ledger, run_id
        self._db: sqlite3.Connection | None = None

    def connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(self.path.parent)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=TRUNCATE")
        db.execute("PRAGMA synchronous=FULL")
        self._db = db
        self.transaction([(statement, ()) for statement in _SCHEMA.split(";") if statement.strip()])
        now = time.time()
        self.transaction(
            [
                (
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self.run_id, socket.gethostname(), os.getpid(), process_started(os.getpid()),
                     self.ledger, now, now),
                ),
            ]
        )  # fmt: skip
        self.transaction(
            [("INSERT OR IGNORE INTO ledgers VALUES (?, ?)", (self.ledger, time.time()))]
        )
        self.forget_dead_runs()

    def close(self) -> None:
        if self._db is not None:
            self.transaction([("DELETE FROM runs WHERE run_id = ?", (self.run_id,))])
            self._db.close()
            self._db = None

    def transaction(
        self, statements: list[tuple[str, Iterable[Any]]], *, durable: bool = True
    ) -> None:
        """One unit of work. ``durable=False`` skips the fsync: it survives a killed process
        (the OS has it), not a power cut, so use it only where losing it errs on the safe side
        (a claim, a mark, a heartbeat: see :meth:`claim`). A POST's registration is durable."""
        assert self._db is not None
        if not durable:
            self._db.execute("PRAGMA synchronous=OFF")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    self._db.execute(sql, tuple(params))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        finally:
            if not durable:
                self._db.execute("PRAGMA synchronous=FULL")

    def rows(self, sql: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return self._db.execute(sql, tuple(params)).fetchall()

    def claim(
        self,
        key: str,
        remote_id: str,
        created_at: str,
        clock: tuple[float, float, float, float] | None,
    ) -> None:
        now = time.time()
        statements: list[tuple[str, Iterable[Any]]] = [
            (
                "INSERT OR IGNORE INTO claims VALUES (?, ?, ?, ?, ?)",
                (remote_id, created_at, self.ledger, key, now),
            ),
            ("DELETE FROM attempts WHERE ledger = ? AND key = ?", (self.ledger, key)),
        ]
        if clock is not None:
            statements.append(
                ("INSERT OR REPLACE INTO clock VALUES (?, ?, ?, ?, ?)", (*clock, now))
            )
        # Not fsynced: lost to a power cut, the attempt stays open and the ledger's own row
        # (fsynced before the next POST) or reconciliation settles it: the safe side.
        self.transaction(statements, durable=False)

    def runs(self) -> dict[str, tuple[bool, float]]:
        """run_id -> (alive, last heartbeat)."""
        return {
            row[0]: (alive(row[1], row[2], row[3], row[4]), row[4])
            for row in self.rows("SELECT run_id, host, pid, pid_started, alive_at FROM runs", ())
        }

    def nobody_else(self) -> bool:
        """Whether this run is the account's only live one."""
        return not self.others_alive()

    def others_alive(self) -> bool:
        """Whether a run of the account other than this one is alive."""
        return any(running for run_id, (running, _) in self.runs().items() if run_id != self.run_id)

    def register_if_alone(self, key: str, sent_at: float, floor: str | None) -> bool:
        """Look for other live runs and, if there are none, register the POST of ``key``: one
        transaction (the look and the registration cannot be split by a run starting between
        them) and one hop to the registry's thread on each POST of a run alone."""
        assert self._db is not None
        self._db.execute("BEGIN IMMEDIATE")
        try:
            alone = not self.others_alive()
            if alone:
                self._db.execute(ATTEMPT_SQL, (self.ledger, key, self.run_id, sent_at, floor))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return alone

    def forget_dead_runs(self) -> None:
        """Dead runs leave the table; their open attempts keep their last heartbeat as answer."""
        statements: list[tuple[str, Iterable[Any]]] = []
        for run_id, (running, alive_at) in self.runs().items():
            if running:
                continue
            statements += [
                (
                    "UPDATE attempts SET died = died OR (state = 'wire' AND NOT written), "
                    "state = 'ambiguous', "
                    # never before its own send plus a beat: beats are not fsynced
                    "answered_at = COALESCE(answered_at, MAX(?, sent_at + ?)) WHERE run_id = ?",
                    (alive_at + HEARTBEAT_S, HEARTBEAT_S, run_id),
                ),
                ("DELETE FROM runs WHERE run_id = ?", (run_id,)),
            ]
        if statements:
            self.transaction(statements)

    def ended_by(self, run_id: str, at: float) -> None:
        """``run_id``'s mark was still in the POST turn when the next holder took it at ``at``:
        it held the turn no more, so each of its POSTs had ended by then (a POST is registered
        and sent only in its run's turn). So whether that run died there, still looks alive
        (killed, not yet reaped by its parent: its lock is given back before its pid goes), or
        lives on (a mark a full disk kept from being cleared). Kept only if tighter than what
        is known. Not fsynced: lost, the window closes at the run's last heartbeat, the safe
        side."""
        self.transaction(
            [
                (
                    "UPDATE attempts SET answered_at = MIN(COALESCE(answered_at, ?1), ?1) "
                    "WHERE run_id = ?2",
                    (at, run_id),
                )
            ],
            durable=False,
        )

    def unsent(self, intents: dict[str, float]) -> set[str]:
        rows = self.rows("SELECT since FROM ledgers WHERE ledger = ?", (self.ledger,))
        since = rows[0][0] if rows else time.time()
        known = {
            row[0]
            for table in ("attempts", "claims")
            for row in self.rows(f"SELECT key FROM {table} WHERE ledger = ?", (self.ledger,))
        }
        return {key for key, at in intents.items() if at >= since and key not in known}

    def left_behind(self) -> dict[str, float | None]:
        self.forget_dead_runs()
        rows = self.rows(
            "SELECT key, answered_at FROM attempts WHERE ledger = ? AND run_id != ?",
            (self.ledger, self.run_id),
        )
        return {row[0]: row[1] for row in rows}

    def snapshot(self, since: str | None, claims: bool) -> Snapshot:
        self.forget_dead_runs()
        runs = self.runs()
        attempts = tuple(
            RegisteredAttempt(
                ledger=row[0],
                key=row[1],
                run_id=row[2],
                state=row[3],
                sent_at=row[4],
                answered_at=row[5],
                floor=row[6],
                no_answer=bool(row[7]),
                died=bool(row[8]),
                live=runs.get(row[2], (False, 0.0))[0],
                written_at=float(row[9]) if row[9] and row[9] > WRITTEN_IS_A_TIME else None,
            )
            for row in self.rows(
                "SELECT ledger, key, run_id, state, sent_at, answered_at, floor, no_answer, died, "
                "written FROM attempts",
                (),
            )
        )
        if not claims:
            return Snapshot(claims={}, attempts=attempts)
        rows = self.rows(
            "SELECT remote_id, ledger, key, claimed_at FROM claims WHERE created_at >= ?",
            (since or "",),
        )
        return Snapshot(claims={r[0]: (r[1], r[2], r[3]) for r in rows}, attempts=attempts)


def remove_stale(folder: Path) -> None:
    """Remove registries (and their POST-turn files) no run touched for STALE_DAYS."""
    cutoff = time.time() - STALE_DAYS * 86400
    for path in folder.glob("*.db"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                path.with_suffix(".posting").unlink(missing_ok=True)
        except OSError:
            pass
