"""Jobs on the account that no run on this machine made: seen, recorded once, never touched.

Sweeps list the whole account, so they meet other clients' jobs (the web app, a script on
another machine, a colleague's key of the same workspace). Such a job is *foreign* when no run
of the account claims it (``registry``), no ledger row holds it, and no POST whose outcome is
still open could have made it: while any such POST exists anywhere on the account, deciding is
left to reconciliation, which sees the windows. Foreign jobs are recorded in the ledger (for
``status`` and ``report``) and announced once, with a count, never cancelled or downloaded: a
warning of the ``orchestrator.strangers`` logger, about the batch that met them first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from orchestrator.answers import RemoteJob
from orchestrator.ledger import Ledger, Unattributed
from orchestrator.registry import AccountRegistry

#: Jobs examined per sweep at most (a busy foreign client must not slow sweeps down).
EXAMINE_PER_SWEEP = 200
log = logging.getLogger(__name__)


class Strangers:
    """Tells foreign jobs apart and reports them once (see the module docstring)."""

    def __init__(self, ledger: Ledger, registry: AccountRegistry | None, batch: str) -> None:
        self.ledger = ledger
        self.registry = registry
        self.batch = batch  #: whose run met them: the ``batch`` of the warning's record
        self._settled: set[str] = set()  #: ids known to be some run's or already recorded
        self.foreign = 0  #: foreign jobs this run has seen
        #: Only jobs created since the run began are examined (older ones may be any ledger's).
        self.since: str | None = None
        self._warned = False

    def unknown(self, items: Iterable[RemoteJob]) -> list[RemoteJob]:
        """Items created since the run began that are not yet settled either way."""
        since = self.since
        if since is None:
            return []
        return [i for i in items if i.job_id not in self._settled and i.created_at > since]

    async def examine(self, items: Sequence[RemoteJob], *, doubts_open: bool) -> None:
        """Record the foreign ones among ``items`` (none while a POST's outcome is open)."""
        items = list(items)[:EXAMINE_PER_SWEEP]
        if not items or doubts_open:
            return
        # Open POSTs first, claims second: a POST open at the first look and claimed before the
        # second is then seen claimed; one in doubt anywhere leaves it to reconciliation.
        if self.registry is not None and await self.registry.open_attempts():
            return
        ids = [item.job_id for item in items]
        ours = await self.ledger.known_remote_ids(ids)
        if self.registry is not None:
            ours |= await self.registry.claimed_among(ids)
        self._settled.update(ours)
        await self.record([item for item in items if item.job_id not in ours])

    async def record(self, items: Sequence[RemoteJob], note: str | None = None) -> None:
        """Record jobs known to be foreign; the first time, say so."""
        fresh = [item for item in items if item.job_id not in self._settled]
        if not fresh:
            return
        await self.ledger.add_unattributed(
            [
                Unattributed(
                    remote_id=item.job_id,
                    kind="foreign",
                    batch=None,
                    model=None,
                    price_micro=0,
                    remote_status=item.status,
                    created_at=item.created_at,
                    note=note,
                )
                for item in fresh
            ]
        )
        self._settled.update(item.job_id for item in fresh)
        self.foreign += len(fresh)
        if not self._warned:
            self._warned = True
            log.warning(
                f"another client is using this API key's account: {len(fresh)} job(s) so far "
                "that no run on this machine made; they are never cancelled or downloaded "
                "(see `orchestrator status` and `report`)",
                extra={"batch": self.batch},
            )
