"""The account's POST turn on this machine: what makes one run's lost POST provably its own.

Krea's list says only when a job was made, so a lost POST is matched to a job by its window of
Krea's clock, and two runs' windows must not overlap. The turn is an ``flock`` held while a POST
is on the wire (the kernel gives it back when its holder dies, however it dies), and what its
holders write in it and in the registry makes each window a proof rather than a guess:

* **Registered in the turn.** A POST is registered in the registry only once its run holds
  the turn and has waited out what it must (below). With company that is just before it
  leaves: a run killed while it waited has no attempt there, its intent was never sent, and no
  run counts it as the possible owner of a job. Alone, a run takes its hold of the turn (a lock
  and a mark, no wait), then registers the POST beside its intent, which costs no time; if the
  hold must wait first, the POST is registered after the wait, as with company.
* **Claimed in the turn.** With company, the turn is given back only once its POST's job is
  claimed (or its loss noted): a POST of such a run found dead on the wire died in its turn.
* **Ended by the next holder.** The next run to take the turn finds the dead holder's mark in
  the turn file, so every POST of that run had ended by then: their windows close there
  instead of at the dead run's last heartbeat (up to seconds later, over other runs' POSTs).
  A holder killed before it ended them passes them on in the note, and a run killed but not
  yet reaped (it still has a pid) is dead all the same.
* **Waited out.** A POST leaves only after the windows of lost POSTs (and of a holder that died
  in its turn) have closed, plus what is not known of Krea's clock.

Each of these closes a way two windows overlapped in two-run kill loops (``kill -9`` at random
points, 10 % of answers lost), where a lost answer's job then fitted another run's POST too and
was sent again, billed twice: a POST registered before its run held the turn, or before its
hold's wait, left by a run killed there; a holder killed before it ended a dead holder's POSTs;
a killed holder taken for alive while unreaped (stop 26: about 1 loop in 20 on two busy cores).

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
from orchestrator.registry.store import HEARTBEAT_S, RegistryFile, Snapshot

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
        self._turn = TurnFile(self.turn_file)  #: opened once (processes.TurnFile)
        #: POSTs whose registration waits for the turn (key -> floor): see the module docstring
        self._deferred: dict[str, str | None] = {}
        #: POSTs in this run's hold (registered in it, or to be once its wait is over) that
        #: have not reached :meth:`posting` yet
        self._joined: set[str] = set()
        self._entered: asyncio.Future[bool] | None = None  #: the hold's entry (:meth:`_enter`)
        self._clear = False  #: the hold's entry waits for nothing (:meth:`_may_register`)

    @asynccontextmanager
    async def posting(
        self, key: str = "", margin_s: float = 0.0, grace_s: float = 0.0
    ) -> AsyncIterator[None]:
        """Hold the account's POST turn while ``key``'s POST is on the wire (module docstring).

        Alone, a POST is in this run's hold already (it joined it to be registered: ``_join``),
        or joins it now; finding the turn held by another process tells the run it has company
        after all (a run started since its last look), and it waits like any. With company, a
        POST waits for the turn, then for the others' lost POSTs, is registered, leaves, and
        gives the turn back once its job is claimed. ``margin_s``: what is not known of Krea's
        clock; ``grace_s``: how long after an unanswered POST Krea may still make its job (both
        real seconds).
        """
        turn = self._turn
        if key in self._joined or (self.alone and self._join(grace_s + margin_s)):
            self._joined.discard(key)  # from here on, this block gives its share back
            try:
                assert self._entered is not None
                waited = await asyncio.shield(self._entered)
                await self._register_or_leave(key, moved=waited)
                yield
            finally:
                self._leave_hold()
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

    def _join(self, died_s: float) -> bool:
        """A POST of a run alone shares its hold of the turn, taken now if free (the holder's
        mark noted at once; what it must wait for is :attr:`_entered`). False, and the run
        knows it has company, if another process holds the turn."""
        if not self._own_turns:
            if not self._turn.try_lock():
                self.alone = False  # another run holds the turn
                return False
            # The mark first, before any registration: a run killed from here on died in its
            # turn, and the next holder ends its POSTs (the rest may wait: a task).
            until, dead = self._turn.enter(self.run_id)
            self._clear = not dead and until <= time.time()
            self._entered = asyncio.ensure_future(self._entered_after(until, dead, died_s))
        self._own_turns += 1
        return True

    def _may_register(self) -> bool:
        """Whether a POST in this run's hold may be registered now: the hold waits for nothing
        (any more). Else it is registered once the wait is over, as with company: registered
        before, a run killed while it waited leaves a POST whose window starts inside the one
        it waited for (a dead holder's, whose job may come late), and both fit the one job."""
        return self._clear or (self._entered is not None and self._entered.done())

    def _leave_hold(self) -> None:
        """A POST's share of the hold ends; the last gives the turn back."""
        self._own_turns -= 1
        if self._own_turns:
            return
        if self._entered is not None:
            self._entered.cancel()  # nobody waits for it any more
            self._entered = None
        self._turn.leave()
        self._turn.unlock()

    def _unjoin(self, key: str) -> None:
        """``key``'s POST will not reach :meth:`posting` from its hold (not sent, or sent with
        company): its share ends."""
        if key in self._joined:
            self._joined.discard(key)
            self._leave_hold()

    async def _enter(self, turn: TurnFile, died_s: float) -> bool:
        """Note this run in the turn just taken, then :meth:`_entered_after` it."""
        return await self._entered_after(*turn.enter(self.run_id), died_s)

    async def _entered_after(self, until: float, dead: tuple[str, ...], died_s: float) -> bool:
        """End the POSTs of the holders that died in the turn (``dead``: ``TurnFile.enter``),
        and wait out what the file said (``until``) and what they leave open; True if it
        waited.

        The file says when a lost POST's window closes (written in its turn by its run). The
        registry says it too (:meth:`_others_settled`), but a run that believes it is alone
        (its last look came before another run started) does not read it: the turn file, which
        the POST holds anyway, costs a small read and write. A dead holder's POST may make its
        job a while after it ended (:meth:`_dead_settled`), so this POST waits that long, and
        notes it for the next holders in the one write that takes the dead off the note: a
        holder killed before it passes the dead on, and a holder killed after, the wait.
        """
        if dead:
            until = max(until, await self._dead_settled(dead, died_s))
            self._turn.settled(dead, until)
        waited = False
        while (wait := until - time.time()) > 0:
            await asyncio.sleep(wait)
            waited = True
        return waited

    async def _dead_settled(self, dead: tuple[str, ...], died_s: float) -> float:
        """End the POSTs of the holders found dead in the turn (``store.ended_by``: each had
        ended by now); the time before which no POST may leave: until no other run's open POST
        can still make a job (``died_s`` after its end). That covers a dead holder's POSTs,
        and those a restarted run took over from it (they are no longer under its name). A
        registry that cannot be read answers the longest any can take: waiting is the safe
        side."""
        now = time.time()
        try:
            for holder in dead:
                if holder != self.run_id:
                    await self._call(self._file.ended_by, holder, now)
            attempts = (await self.snapshot(None, claims=False)).attempts
        except LedgerError:
            return now + HEARTBEAT_S + died_s
        ends = [a.answered_at for a in attempts if a.ledger != self.ledger and a.answered_at]
        return max(ends, default=0.0) + died_s

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
