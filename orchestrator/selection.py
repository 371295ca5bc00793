"""Which of a batch's jobs a run may send: every one, or a trial's (``--only``, ``--limit``).

A trial run plans the whole manifest into the ledger, so keys, prices and output paths are those
of the full run, and sends only the chosen jobs (with the jobs whose results they take:
``startup.trial_keys``); the others stay unsent for a later run. The
choice depends on the manifest and the flags alone, never on what earlier runs did: a trial that
is killed and run again with the same flags sends the same jobs, and ``--limit 10`` after a
finished ``--limit 10`` sends nothing new (raise the limit to go further).

``--only`` takes job ids as ``orchestrator jobs`` lists them. A name that is no job's id takes
every job whose id starts with it and ``_``: so an entry's own id takes the jobs its ``expand``
or ``takes`` made (``hero`` -> ``hero_t1``, ``hero_t2`` ...). Several manifests in one run:
the names may come from any of them, and ``--limit N`` takes the first N jobs of each batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.errors import ConfigError
from orchestrator.manifest.entries import did_you_mean


@dataclass(frozen=True)
class Selection:
    """The trial flags of a run; empty: every job."""

    only: tuple[str, ...] = ()
    limit: int | None = None

    @property
    def everything(self) -> bool:
        return not self.only and self.limit is None

    def describe(self) -> str:
        """The flags as the user typed them, for messages."""
        parts = [f"--only {','.join(self.only)}"] if self.only else []
        return " ".join(parts + ([f"--limit {self.limit}"] if self.limit is not None else []))

    def chosen(self, entry_ids: Sequence[str]) -> set[str]:
        """The ids among ``entry_ids`` (one batch's, in manifest order) that this run may send."""
        ids = list(entry_ids)
        if self.only:
            wanted = set(self.only)
            exact = wanted & set(ids)
            prefixes = tuple(f"{name}_" for name in wanted - exact)
            ids = [i for i in ids if i in exact or (prefixes and i.startswith(prefixes))]
        return set(ids if self.limit is None else ids[: self.limit])

    def check(self, batches: Mapping[str, Sequence[str]]) -> None:
        """ConfigError naming each ``--only`` name that matches no job of any batch of the run.

        ``batches`` maps each batch name to its job ids; run before anything is written.
        """
        if not self.only:
            return
        every = [i for ids in batches.values() for i in ids]
        known = set(every)
        prefixes = entry_prefixes(every)
        missing = [name for name in self.only if name not in known and name not in prefixes]
        if missing:
            where = ("batches " if len(batches) > 1 else "batch ") + ", ".join(map(repr, batches))
            first, others = missing[0], ", ".join(repr(m) for m in missing[1:])
            raise ConfigError(
                f"--only: no job {first!r} in {where}"
                + did_you_mean(first, [*every, *sorted(prefixes)])
                + (f" (nor {others})" if others else "")
                + "; `orchestrator jobs` lists the ids"
            )


def entry_prefixes(ids: Iterable[str]) -> set[str]:
    """Every leading part of each id before an ``_`` (the entry ids expansions start from)."""
    found: set[str] = set()
    for entry_id in ids:
        parts = entry_id.split("_")
        found.update("_".join(parts[:n]) for n in range(1, len(parts)))
    return found
