"""The account's POST turn on this machine: what makes one run's lost POST provably its own.

Krea's list says only when a job was made, so a lost POST is matched to a job by its window of
Krea's clock, and two runs' windows must not overlap. The turn is an ``flock`` held while a POST
is on the wire (the kernel gives it back when its holder dies, however it dies), and what its
holders write in it and in the registry makes each window a proof rather than a guess:

* **Registered in the turn.** With company, a POST is registered in the registry only once it
  holds the turn and has waited out the others' lost POSTs, just before it leaves. A run killed
  while it waited has no attempt there: its intent was never sent, and no run counts it as the
  possible owner of a job. (Alone, a run registers beside its intent, which costs no time.)
* **Claimed in the turn.** With company, the turn is given back only once its POST's job is
  claimed (or its loss noted): a POST of such a run found dead on the wire died in its turn.
* **Ended by the next holder.** The next run to take the turn finds the dead holder's mark in
  the turn file, so every POST of that run had ended by then: their windows close there
  instead of at the dead run's last heartbeat (up to seconds later, over other runs' POSTs).
* **Waited out.** A POST leaves only after the windows of lost POSTs (and of a holder that died
  in its turn) have closed, plus what is not known of Krea's clock.

A run alone shares one hold among its own overlapping POSTs (they never need telling apart from
another run's), so it never waits for itself; a run starting meanwhile waits for the hold to end.
Alone, it gives the hold back without waiting for its claims, which would delay each POST's
ledger write; it notes each answer first (``AccountRegistry.answered``, not fsynced), so a run
killed before its claim lands leaves a POST that ended at its answer. Without the note its
window reached to its last heartbeat, over the job of a lost POST of a run started in that
instant: a clip billed twice, about once in a dozen two-run kill loops (found in stop 25).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator.errors import LedgerError
from orchestrator.registry.processes import TurnFile
from orchestrator.registry.store import RegistryFile, Snapshot

T = TypeVar("T")

TURN_POLL_S = 0.001  #: real seconds between tries for the account's POST turn


class PostTurn:
    """The POST turn, as a part of :class:`~orchestrator.registry.AccountRegistry`."""

    path: Path
    ledger: str
    run_id: str
    alone: bool
    _file: RegistryFile
    _claims: set[asyncio.Future[None]]

    if TYPE_CHECKING:

        async def post_started(self, key: str, floor: str | None) -> None: ...

        async def snapshot(self, since: str | None, *, claims: bool = True) -> Snapshot: ...

        async def _call(self, fn: Callable[..., T], *args: Any) -> T: ...

        async def _write(
            self, sql: str, params: tuple[Any, ...], *, durable: bool = True
        ) -> None: ...

    @property
    def turn_file(self) -> Path:
        """The turn's lock and note file, beside the registry file."""
        return self.path.with_suffix(".posting")

    def _start_turns(self) -> None:
        self._own_turns = 0  #: this run's POSTs sharing its hold of the turn while alone
        self._own_hold = False  #: whether this run holds the turn for them
        self._turn = TurnFile(self.turn_file)  #: opened once (processes.TurnFile)
        #: POSTs whose registration waits for the turn (key -> floor): see the module docstring
        self._deferred: dict[str, str | None] = {}

    @asynccontextmanager
    async def posting(
        self, key: str = "", margin_s: float = 0.0, grace_s: float = 0.0
    ) -> AsyncIterator[None]:
        """Hold the account's POST turn while ``key``'s POST is on the wire (module docstring).

        Alone, a POST joins this run's hold of the turn, or takes it if free; finding it held
        by another process tells the run it has company after all (a run started since its
        last look), and it waits like any. With company, a POST waits for the turn, then for
        the others' lost POSTs, is registered, leaves, and gives the turn back once its job is
        claimed. ``margin_s``: what is not known of Krea's clock; ``grace_s``: how long after
        an unanswered POST Krea may still make its job (both real seconds).
        """
        turn = self._turn
        if self.alone and (self._own_turns or self._take_own_hold()):
            self._own_turns += 1
            try:
                if self._own_turns == 1:
                    waited = await self._enter(turn, grace_s + margin_s)
                else:
                    waited = False
                await self._register_or_leave(key, moved=waited)
                yield
            finally:
                self._own_turns -= 1
                if not self._own_turns and self._own_hold:
                    turn.leave()
                    turn.unlock()
                    self._own_hold = False
            return
        # Polled, never a blocking call in a thread: a cancelled wait must not take it later.
        while not turn.try_lock():  # noqa: ASYNC110
            await asyncio.sleep(TURN_POLL_S)
        try:
            await self._enter(turn, grace_s + margin_s)
            await self._others_settled(margin_s, grace_s)
            await self._register_or_leave(key, moved=True)
            yield
        finally:
            try:
                await self._claims_settled()
            finally:  # even cancelled: a turn never given back would stop every run
                turn.leave()
                turn.unlock()

    def _take_own_hold(self) -> bool:
        self._own_hold = self._turn.try_lock()
        if not self._own_hold:
            self.alone = False  # another run holds the turn
        return self._own_hold

    async def _enter(self, turn: TurnFile, died_s: float) -> bool:
        """Note this run in the turn file, end a dead holder's POSTs, and wait out what the
        file says; True if it waited.

        The file says when a lost POST's window closes (written in its turn by its run). The
        registry says it too (:meth:`_others_settled`), but a run that believes it is alone
        (its last look came before another run started) does not read it: the turn file, which
        the POST holds anyway, costs a small read and write. A holder's mark still there means
        it died in its turn: if a POST of it is still open, Krea may make that job for
        ``died_s`` from now, so this POST waits that long too (and notes it for the next).
        """
        until, previous = turn.enter(self.run_id)
        if previous and await self._died_with_posts(previous):
            until = max(until, time.time() + died_s)
            turn.hold_until(until)
        waited = False
        while (wait := until - time.time()) > 0:
            await asyncio.sleep(wait)
            waited = True
        return waited

    async def _died_with_posts(self, holder: str) -> bool:
        """``holder`` left its mark in the turn: its POSTs ended by now (``store.ended_by``);
        True if one of them is still open under its name. A run restarted on its ledger has
        taken them over, and settles them before it POSTs. A registry that cannot be read
        answers True: waiting is the safe side."""
        if holder == self.run_id:
            return False
        try:
            return await self._call(self._file.ended_by, holder, time.time())
        except LedgerError:
            return True

    async def _register_or_leave(self, key: str, *, moved: bool) -> None:
        """``key``'s POST leaves now: registered here if its registration waited for the turn,
        else (``moved``: it waited) its registered send time moved here, so its window does not
        reach back over the POSTs it waited for. The move is not fsynced: lost, it leaves the
        earlier time, a wider window, the safe side."""
        if key in self._deferred:
            await self.post_started(key, self._deferred.pop(key))
        elif key and moved:
            await self._write(
                "UPDATE attempts SET sent_at = ? WHERE ledger = ? AND key = ? AND run_id = ? "
                "AND state = 'wire'",
                (time.time(), self.ledger, key, self.run_id),
                durable=False,
            )

    async def _claims_settled(self) -> None:
        """Wait for the claims on their way (``claim_soon``); a failure stays for the next
        ``before_post`` to raise."""
        await asyncio.gather(*self._claims, return_exceptions=True)

    async def _others_settled(self, margin_s: float, grace_s: float) -> None:
        """Wait until no other run's POST whose answer was lost can still make a job.

        Such a POST's job is found by its window of Krea's clock: a POST sent while that window
        is open could make a job inside it, and two lost answers would then leave two jobs that
        fit both windows (each resent: two clips billed twice). Sent once it has closed, a job
        cannot fit the other's window, nor the other's job this one's: each lost POST is then
        settled alone. A window closes at the POST's end, plus ``grace_s`` (real seconds) when
        no HTTP answer came (Krea may create the job a little later), plus ``margin_s`` (what
        is not known of Krea's clock). A dead run's POSTs end when the next holder of the turn
        found it dead, or at its last heartbeat. Lost answers are rare, so this costs the
        account a few seconds now and then.
        """
        while True:
            attempts = (await self.snapshot(None, claims=False)).attempts
            closes = [
                a.answered_at + (grace_s if a.no_answer else 0.0) + margin_s
                for a in attempts
                if a.ledger != self.ledger and a.state == "ambiguous" and a.answered_at
            ]
            wait = max(closes, default=0.0) - time.time()
            if wait <= 0:
                return
            await asyncio.sleep(wait)
