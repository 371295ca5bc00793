"""The account registry: what every run on this machine that shares an API key has sent.

Krea keeps no client data on a job (krea-api.md §3.3), so a run settles a lost POST by the times
of the jobs on the account. Two runs on one key, each with its own ledger, would otherwise take
each other's fresh jobs for their own lost ones, and cancel or adopt them. So every run of an
account writes here, before the remote call it describes:

* ``attempts``: each POST on the wire (``wire``), and each whose outcome is still unknown
  (``ambiguous``), with its local send and answer times and its floor. A row goes when the POST's
  job is claimed or known never created. A crashed run's rows stay: the next run on that ledger
  takes them over, and until then other runs count them as possible owners of any job they fit.
* ``claims``: the id of every job a run of the account created. Reconciliation never takes a
  claimed job as a candidate.
* ``runs``: who is alive. A dead run (its process gone) blocks no one: its POSTs are no longer on
  the wire, and the last heartbeat bounds when it could have sent anything.

The file is ``$XDG_STATE_HOME/orchestrator/accounts/<fingerprint>.db``, named by a one-way
fingerprint of the API base and key, never the key. Several processes write it: a rollback
journal (SQLite 3.40's WAL mode has a bug with concurrent writers), short ``BEGIN IMMEDIATE``
transactions, a busy timeout, and all work on one thread per process so the loop never blocks.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from orchestrator.errors import LedgerError

T = TypeVar("T")

HEARTBEAT_S = 1.0  #: real seconds between a run's heartbeats
TURN_POLL_S = 0.001  #: real seconds between tries for the account's POST turn
#: A run on another host (a shared home directory) is alive while its heartbeat is this fresh.
REMOTE_ALIVE_S = 30.0
#: What runs learnt of Krea's clock is trusted this long (real seconds) by the next run.
CLOCK_FRESH_S = 3600.0
#: Registries of accounts no run touched for this long are removed when any registry opens.
STALE_DAYS = 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, pid_started TEXT,
    ledger TEXT NOT NULL, started_at REAL NOT NULL, alive_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    ledger TEXT NOT NULL, key TEXT NOT NULL, run_id TEXT NOT NULL, state TEXT NOT NULL,
    sent_at REAL NOT NULL, answered_at REAL, floor TEXT, no_answer INTEGER NOT NULL DEFAULT 1,
    died INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (ledger, key));
CREATE TABLE IF NOT EXISTS claims (
    remote_id TEXT PRIMARY KEY, created_at TEXT NOT NULL, ledger TEXT NOT NULL,
    key TEXT NOT NULL, claimed_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS claims_by_created ON claims (created_at);
CREATE TABLE IF NOT EXISTS ledgers (ledger TEXT PRIMARY KEY, since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS clock (
    scale REAL PRIMARY KEY, low REAL NOT NULL, high REAL NOT NULL, rtt REAL NOT NULL,
    at REAL NOT NULL);
"""


def state_dir() -> Path:
    """``$XDG_STATE_HOME/orchestrator`` (``~/.local/state/orchestrator`` by default)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "orchestrator"


def fingerprint(api_base: str, api_key: str) -> str:
    """A one-way name for an account: nothing about the key can be read back from it."""
    text = f"orchestrator account\n{api_base.rstrip('/')}\n{api_key}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


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


@dataclass(frozen=True)
class Snapshot:
    """What the registry knew at one instant."""

    #: job id -> (ledger, key) of the run that made it, and when it was claimed (local time)
    claims: dict[str, tuple[str, str, float]]
    attempts: tuple[RegisteredAttempt, ...]


class AccountRegistry:
    """One run's handle on its account's registry file (see the module docstring)."""

    def __init__(self, path: Path, ledger: Path) -> None:
        self.path = path
        self.ledger = str(ledger.resolve())
        self.run_id = uuid.uuid4().hex
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry")
        self._db: sqlite3.Connection | None = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls, api_base: str, api_key: str, ledger: Path, *, directory: Path | None = None
    ) -> AsyncIterator[AccountRegistry]:
        """Register this run for the account; unregister it (not its open attempts) on exit."""
        folder = (directory or state_dir()) / "accounts"
        registry = cls(folder / f"{fingerprint(api_base, api_key)}.db", ledger)
        await registry._call(registry._connect)
        heartbeat = asyncio.create_task(registry._beat())
        try:
            yield registry
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await registry._call(registry._close)
            registry._pool.shutdown(wait=False)

    # -- what a submitter writes around each POST -------------------------------------------------
    @asynccontextmanager
    async def posting(self) -> AsyncIterator[None]:
        """Hold the account's POST turn on this machine: one POST on the wire at a time.

        Two runs' POSTs then never overlap in time, so their windows barely touch and two lost
        answers at once cannot make each other's jobs unattributable. An ``flock``: the kernel
        gives it back when a run dies holding it.
        """
        # Polled, never a blocking call in a thread: a cancelled wait must not take it later.
        while (handle := _try_lock(self.path.with_suffix(".posting"))) is None:  # noqa: ASYNC110
            await asyncio.sleep(TURN_POLL_S)
        try:
            yield
        finally:
            handle.close()  # closing the file releases the lock

    async def post_started(self, key: str, floor: str | None) -> None:
        """Before the POST leaves: other runs now wait for it or count it as an owner."""
        await self._write(
            "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, 'wire', ?, NULL, ?, 1, 0)",
            (self.ledger, key, self.run_id, time.time(), floor),
        )

    async def claimed(
        self,
        key: str,
        remote_id: str,
        created_at: str,
        clock: tuple[float, float, float, float] | None = None,
    ) -> None:
        """Its job is known: claim the id, and the attempt is over (one transaction).

        ``clock``: (scale, low, high, rtt) of what the run knows of Krea's clock, for the next
        run of the account to start from (``attribution.ClockBounds``).
        """
        await self._call(self._claim, key, remote_id, created_at, clock)

    async def clock(self, scale: float) -> tuple[float, float, float] | None:
        """(low, high, rtt) the account's runs learnt at this time scale in the last hour."""
        rows = await self._call(
            self._rows,
            "SELECT low, high, rtt FROM clock WHERE scale = ? AND at >= ?",
            (scale, time.time() - CLOCK_FRESH_S),
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    async def not_created(self, key: str) -> None:
        """The POST created nothing (refused, or reconciliation found no job): forget it."""
        await self._write("DELETE FROM attempts WHERE ledger = ? AND key = ?", (self.ledger, key))

    async def ambiguous(self, key: str, *, no_answer: bool) -> None:
        """The POST ended without a job id: it stays a possible owner until settled.

        ``no_answer``: the connection dropped or timed out, so Krea may create the job a little
        later; an HTTP answer (a 5xx, say) means any job was created before it.
        """
        await self._write(
            "UPDATE attempts SET state = 'ambiguous', answered_at = ?, run_id = ?, no_answer = ? "
            "WHERE ledger = ? AND key = ?",
            (time.time(), self.run_id, int(no_answer), self.ledger, key),
        )

    # -- what start-up and reconciliation read ----------------------------------------------------
    async def left_behind(self) -> dict[str, float | None]:
        """This ledger's open attempts of dead runs (the ledger lock proves them dead): key ->
        the latest local time the run could still have been sending (its last heartbeat)."""
        return await self._call(self._left_behind)

    async def unsent(self, intents: dict[str, float]) -> set[str]:
        """Which of this ledger's intents (key -> local time) never reached the wire.

        Each POST is registered after its intent and before it is sent, by every run since this
        ledger first used the registry: an intent from then on with no attempt and no claim
        here was never sent. Older intents (or a registry made anew) prove nothing.
        """
        return await self._call(self._unsent, intents)

    async def adopt(self, attempts: dict[str, tuple[float, float | None, str | None]]) -> None:
        """Own the ledger's ambiguous POSTs: key -> (sent, answered, floor)."""
        await self._call(
            self._transaction,
            [
                (
                    "INSERT INTO attempts VALUES (?, ?, ?, 'ambiguous', ?, ?, ?, 1, 1) "
                    "ON CONFLICT (ledger, key) DO UPDATE SET run_id = excluded.run_id, "
                    "state = 'ambiguous', "
                    "answered_at = COALESCE(answered_at, excluded.answered_at)",
                    (self.ledger, key, self.run_id, sent, answered, floor),
                )
                for key, (sent, answered, floor) in attempts.items()
            ],
        )

    async def claim_all(self, jobs: Iterable[tuple[str, str, str]]) -> None:
        """Claim (key, job id, created_at) in bulk: jobs the registry may not know yet."""
        now = time.time()
        await self._call(
            self._transaction,
            [
                ("INSERT OR IGNORE INTO claims VALUES (?, ?, ?, ?, ?)",
                 (remote_id, created_at, self.ledger, key, now))
                for key, remote_id, created_at in jobs
            ],
        )  # fmt: skip

    async def snapshot(self, since: str | None) -> Snapshot:
        """Every open attempt of the account, with its run's liveness, and every claim of a job
        created at or after ``since`` (all claims when None)."""
        return await self._call(self._snapshot, since)

    async def newest_claim(self) -> str | None:
        """The newest ``created_at`` any run of the account claimed."""
        rows = await self._call(self._rows, "SELECT MAX(created_at) FROM claims", ())
        return rows[0][0] if rows else None

    async def open_attempts(self) -> bool:
        """Whether any run of the account has a POST whose job is not known yet."""
        rows = await self._call(self._rows, "SELECT 1 FROM attempts LIMIT 1", ())
        return bool(rows)

    async def claimed_among(self, remote_ids: Iterable[str]) -> set[str]:
        """Which of ``remote_ids`` some run of the account claims."""
        ids = list(remote_ids)
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            sql = f"SELECT remote_id FROM claims WHERE remote_id IN ({','.join('?' * len(chunk))})"
            found |= {row[0] for row in await self._call(self._rows, sql, chunk)}
        return found

    # -- the thread side ------------------------------------------------------------------------
    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except sqlite3.Error as exc:
            raise LedgerError(f"the account registry {self.path} cannot be used: {exc}") from None

    async def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        await self._call(self._transaction, [(sql, params)])

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            # A busy file: the next beat tries again (a late beat only widens a window).
            with suppress(LedgerError):
                await self._write(
                    "UPDATE runs SET alive_at = ? WHERE run_id = ?", (time.time(), self.run_id)
                )

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(self.path.parent)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=TRUNCATE")
        db.execute("PRAGMA synchronous=FULL")
        self._db = db
        self._transaction(
            [(statement, ()) for statement in _SCHEMA.split(";") if statement.strip()]
        )
        now = time.time()
        self._transaction(
            [
                (
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (self.run_id, socket.gethostname(), os.getpid(), _started(os.getpid()),
                     self.ledger, now, now),
                ),
            ]
        )  # fmt: skip
        self._transaction(
            [("INSERT OR IGNORE INTO ledgers VALUES (?, ?)", (self.ledger, time.time()))]
        )
        self._forget_dead_runs()

    def _close(self) -> None:
        if self._db is not None:
            self._transaction([("DELETE FROM runs WHERE run_id = ?", (self.run_id,))])
            self._db.close()
            self._db = None

    def _transaction(self, statements: list[tuple[str, Iterable[Any]]]) -> None:
        assert self._db is not None
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                self._db.execute(sql, tuple(params))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _rows(self, sql: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return self._db.execute(sql, tuple(params)).fetchall()

    def _claim(
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
        self._transaction(statements)

    def _runs(self) -> dict[str, tuple[bool, float]]:
        """run_id -> (alive, last heartbeat)."""
        return {
            row[0]: (_alive(row[1], row[2], row[3], row[4]), row[4])
            for row in self._rows("SELECT run_id, host, pid, pid_started, alive_at FROM runs", ())
        }

    def _forget_dead_runs(self) -> None:
        """Dead runs leave the table; their open attempts keep their last heartbeat as answer."""
        statements: list[tuple[str, Iterable[Any]]] = []
        for run_id, (alive, alive_at) in self._runs().items():
            if alive:
                continue
            statements += [
                (
                    "UPDATE attempts SET died = died OR state = 'wire', state = 'ambiguous', "
                    "answered_at = COALESCE(answered_at, ?) WHERE run_id = ?",
                    (alive_at + HEARTBEAT_S, run_id),
                ),
                ("DELETE FROM runs WHERE run_id = ?", (run_id,)),
            ]
        if statements:
            self._transaction(statements)

    def _unsent(self, intents: dict[str, float]) -> set[str]:
        rows = self._rows("SELECT since FROM ledgers WHERE ledger = ?", (self.ledger,))
        since = rows[0][0] if rows else time.time()
        known = {
            row[0]
            for table in ("attempts", "claims")
            for row in self._rows(f"SELECT key FROM {table} WHERE ledger = ?", (self.ledger,))
        }
        return {key for key, at in intents.items() if at >= since and key not in known}

    def _left_behind(self) -> dict[str, float | None]:
        self._forget_dead_runs()
        rows = self._rows(
            "SELECT key, answered_at FROM attempts WHERE ledger = ? AND run_id != ?",
            (self.ledger, self.run_id),
        )
        return {row[0]: row[1] for row in rows}

    def _snapshot(self, since: str | None) -> Snapshot:
        self._forget_dead_runs()
        runs = self._runs()
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
            )
            for row in self._rows(
                "SELECT ledger, key, run_id, state, sent_at, answered_at, floor, no_answer, died "
                "FROM attempts",
                (),
            )
        )
        claims = self._rows(
            "SELECT remote_id, ledger, key, claimed_at FROM claims WHERE created_at >= ?",
            (since or "",),
        )
        return Snapshot(claims={r[0]: (r[1], r[2], r[3]) for r in claims}, attempts=attempts)


def _try_lock(path: Path) -> IO[bytes] | None:
    handle = path.open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(host: str, pid: int, pid_started: str | None, alive_at: float) -> bool:
    if host != socket.gethostname():
        return time.time() - alive_at < REMOTE_ALIVE_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process with that pid: ours may still be it
    return pid_started is None or _started(pid) in (None, pid_started)


def _remove_stale(folder: Path) -> None:
    cutoff = time.time() - STALE_DAYS * 86400
    for path in folder.glob("*.db"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                path.with_suffix(".posting").unlink(missing_ok=True)
        except OSError:
            pass
