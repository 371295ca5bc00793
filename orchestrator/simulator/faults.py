"""The seeded fault plan: which request gets which network fault, reproducibly.

Each fault kind draws from its own ``random.Random`` derived from ``(seed, kind)``, and draws on
every eligible request whatever the configured rates. So the n-th API request meets the same
fault in two runs with the same seed, and turning one kind on or off never shifts the sequence of
another. Secondary choices (which 5xx, which malformed form, where to cut a download) come from
the same kind's generator.

Kinds (all rates are shares of the eligible requests; ``/_sim/`` routes are never eligible):

* ``5xx``       any API route answers 500/502/503 before doing anything;
* ``reset``     any API route: the connection is closed with no answer, before doing anything;
* ``slow``      any API route: the request is processed, then its answer held ``slow_delay_s``;
* ``ambiguous`` generate POSTs: the job is created (and will be billed), then 5xx or a drop;
  ``ambiguous_burst`` (not drawn, counted here too) holds the first N POSTs until all N are in
  flight and answers each 503, forcing N unknown outcomes into one reconciliation window;
* ``malformed`` JSON answers that would be 200 become a truncated JSON, an HTML page, ``{}``,
  a job with an unknown status or jobs without ``created_at``/``status`` (the work behind them
  is still done);
* ``truncate``  media GETs announce the full length, send part of it, then drop the connection.
"""

from __future__ import annotations

import random
from collections import Counter

KINDS = ("5xx", "reset", "slow", "ambiguous", "malformed", "truncate")


class FaultPlan:
    """Seeded per-kind draws plus a count of the faults actually served."""

    def __init__(self, seed: int) -> None:
        self._rngs = {kind: random.Random(f"{seed}/fault/{kind}") for kind in KINDS}
        self.served: Counter[str] = Counter()

    def reseed(self, seed: int) -> None:
        """Restart every sequence from a new seed (counts are kept)."""
        self._rngs = {kind: random.Random(f"{seed}/fault/{kind}") for kind in KINDS}

    def roll(self, kind: str, rate: float) -> bool:
        """Draw for one eligible request; True means serve the fault (and count it)."""
        hit = self.draw(kind, rate)
        if hit:
            self.served[kind] += 1
        return hit

    def draw(self, kind: str, rate: float) -> bool:
        """Draw without counting, for faults that apply only to some answers (see ``count``)."""
        return self._rngs[kind].random() < rate

    def pick(self, kind: str, options: tuple[str, ...]) -> str:
        """A secondary choice for a fault being served."""
        return self._rngs[kind].choice(options)

    def fraction(self, kind: str) -> float:
        """A secondary number in [0.1, 0.9) (e.g. how much of a download to send)."""
        return 0.1 + 0.8 * self._rngs[kind].random()

    def count(self, kind: str) -> None:
        """Count a fault served without ``roll`` (the outage, a ``draw`` that applied)."""
        self.served[kind] += 1
