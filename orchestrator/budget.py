"""The budget cap of one run: money reserved for a job in the same step that checks the cap.

Several submit workers send at once, and reconciliation may add an orphan's price at any await.
A check of "billed + in flight + this price <= cap" followed, some awaits later, by counting the
price lets two workers pass the same check and spend past the cap. So the check and the count are
one call, :meth:`Budget.reserve`, with no await inside, and every path that then does not send
gives the reservation back (:meth:`Budget.release`). Only this class changes the figures; stages
call its methods and read its properties.

* **billed**: jobs Krea completed (only those are charged);
* **exposure**: jobs that may still be charged: reserved for a POST, submitted, ambiguous, and
  orphans Krea has not finished;
* **held back**: jobs the cap kept from being sent, re-examined whenever money is freed.

Waiting for a change never loses one: :attr:`version` counts changes, and
:meth:`wait_for_change` returns as soon as the count differs from the one the caller saw,
whether the change came before or after the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType


class Budget:
    """Spend so far against an optional cap, in micro-USD."""

    def __init__(self, cap_micro: int | None = None) -> None:
        self.cap_micro = cap_micro
        self._billed = 0
        self._exposure = 0
        self._held: dict[str, int] = {}  #: key -> price, jobs the cap held back
        self._version = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def billed_micro(self) -> int:
        """What Krea charged for the jobs of this run's batch that completed."""
        return self._billed

    @property
    def exposure_micro(self) -> int:
        """What jobs in flight may still cost."""
        return self._exposure

    @property
    def held_back(self) -> Mapping[str, int]:
        """Jobs the cap held back: key -> price (read-only)."""
        return MappingProxyType(self._held)

    @property
    def version(self) -> int:
        """How many times money was freed or added (see :meth:`wait_for_change`)."""
        return self._version

    def reserve(self, key: str, price_micro: int) -> bool:
        """Count ``price_micro`` as in flight if it fits under the cap; else hold ``key`` back.

        No await inside: no other task can spend between the check and the count.
        """
        cap = self.cap_micro
        if cap is not None and self._billed + self._exposure + price_micro > cap:
            self._held[key] = price_micro
            return False
        self._held.pop(key, None)
        self._exposure += price_micro
        return True

    def release(self, price_micro: int) -> None:
        """A reserved job will not be charged: never sent, created nothing, failed or cancelled."""
        self.settle(price_micro, billed=False)

    def settle(self, price_micro: int, *, billed: bool) -> None:
        """A job left flight: charged (Krea completed it) or free."""
        self._exposure = max(0, self._exposure - price_micro)
        if billed:
            self._billed += price_micro
        self._bump()

    def add_in_flight(self, price_micro: int) -> None:
        """Money already at stake that no reservation covers (an orphan Krea may still charge)."""
        self._exposure += price_micro
        self._bump()

    def restore(self, *, billed_micro: int, exposure_micro: int) -> None:
        """Start-up: what the ledger says was billed and is still in flight."""
        self._billed += billed_micro
        self._exposure += exposure_micro
        self._bump()

    def forget_held(self) -> None:
        """Re-examine every held-back job against what was freed."""
        self._held.clear()

    async def wait_for_change(self, seen: int) -> None:
        """Return once :attr:`version` differs from ``seen`` (at once if it already does)."""
        while self._version == seen:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:  # cancelled before a change woke it
                    self._waiters.remove(waiter)

    def _bump(self) -> None:
        self._version += 1
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
