"""What the workers of one `run` share: ledger, client, limits, budget and a reporter.

The submitter, reconciler, poller and downloader each own one stage; they meet only here. Keeping
the shared state in one small object (instead of module globals or a web of references) makes each
stage testable on its own against a real simulator and a real ledger.

:class:`Reporter` is how stages tell the outside world what happened, as structured events (the
CLI's progress display, the plain log, the JSON log): stages call it, it never calls back. Their
messages (warnings, errors, the odd info) are ``logging`` records instead, one logger per stage
(``logging.getLogger(__name__)``: ``orchestrator.poller``, ...) with the batch they are about in
``extra={"batch": ...}``, so a program routes, filters or silences them as it does any library's;
the CLI shows them on its display through one handler (``cli/notes``).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from orchestrator.attribution import ClockBounds
from orchestrator.budget import Budget
from orchestrator.client import KreaClient
from orchestrator.clock import Clock
from orchestrator.errors import OrchestratorError
from orchestrator.jobs import JobRecord, JobState
from orchestrator.ledger import Ledger
from orchestrator.limits import InFlightWindow, Pacer
from orchestrator.registry import AccountRegistry
from orchestrator.strangers import Strangers


class Reporter(Protocol):
    """Receives what the pipeline does; implementations must be quick and must not raise.

    Messages are log records, not calls here (see the module docstring): the ``note`` method
    reporters once had is no longer called.
    """

    def start(self, batch: str, counts: dict[JobState, int]) -> None: ...

    def job_changed(
        self, entry_id: str, old: JobState | None, new: JobState, note: str = ""
    ) -> None: ...

    def spend_changed(self, billed_micro: int, exposure_micro: int) -> None: ...


class NullReporter:
    """Discards everything (library use, tests)."""

    def start(self, batch: str, counts: dict[JobState, int]) -> None:
        pass

    def job_changed(
        self, entry_id: str, old: JobState | None, new: JobState, note: str = ""
    ) -> None:
        pass

    def spend_changed(self, billed_micro: int, exposure_micro: int) -> None:
        pass


@dataclass
class Flags:
    """Run-wide stop conditions, set by whichever stage meets them."""

    no_funds: str | None = None  #: Krea's 402 message: stop submitting, let the rest finish
    #: 401/403, a wrong API base, an API never reached: nothing can proceed, and the run ends
    #: with this error once the stages have stopped (every job's state is one a rerun resumes).
    fatal: OrchestratorError | None = None
    submitting_done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def stop_submitting(self) -> bool:
        """Whether no more POSTs may be sent in this run."""
        return self.no_funds is not None or self.fatal is not None


@dataclass
class Tuning:
    """Timing of the stages, in API seconds (see ``clock``)."""

    poll_min_s: float = 2.0
    poll_max_s: float = 30.0
    completions_per_sweep: float = 8.0
    straggler_every_s: float = 60.0
    reconcile_grace_s: float = 5.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    max_url_refreshes: int = 3
    download_attempts: int = 8
    disk_retry_s: float = 30.0


#: How far a local time may be off in Krea's clock before any POST has taught it (real s).
UNKNOWN_CLOCK_S = 0.25


@dataclass
class Pipeline:
    """Everything one `run` shares; built by ``runner``."""

    ledger: Ledger
    client: KreaClient
    batch: str
    out_dir: Path
    clock: Clock
    window: InFlightWindow
    pacer: Pacer
    budget: Budget
    reporter: Reporter = field(default_factory=NullReporter)
    flags: Flags = field(default_factory=Flags)
    tuning: Tuning = field(default_factory=Tuning)
    rng: random.Random = field(default_factory=random.Random)
    files: dict[str, str] = field(default_factory=dict)  #: sha256 -> local path, for uploads
    webhook_url: str | None = None
    retry_failed: int = 0  #: new attempts each failed/cancelled job gets in this run
    retried: dict[str, int] = field(default_factory=dict)  #: key -> attempts given so far
    #: Jobs to download: the poller's snapshot of a job it just completed, or a key to read.
    completed: asyncio.Queue[JobRecord | str] = field(default_factory=asyncio.Queue)
    submitted: asyncio.Event = field(default_factory=asyncio.Event)  #: a job entered flight
    #: Among the batches of one run, who gets a free slot first (lower first; see limits).
    rank: tuple[int, ...] = ()
    #: What every run of the account on this machine sent (None: this run is alone, e.g. tests).
    registry: AccountRegistry | None = None
    clock_bounds: ClockBounds = field(init=False)  #: Krea's clock, learnt from acknowledged POSTs
    strangers: Strangers = field(init=False)  #: other clients' jobs, seen and reported

    def __post_init__(self) -> None:
        self.clock_bounds = ClockBounds(self.clock.scale)
        self.strangers = Strangers(self.ledger, self.registry, self.batch)

    def turn_margins(self) -> tuple[float, float]:
        """The account's POST turn's margins (``registry.posting``, real seconds): what is not
        known of Krea's clock, and how long after a POST that got no answer Krea may make its
        job."""
        return (
            self.clock_bounds.local_margin(UNKNOWN_CLOCK_S),
            self.tuning.reconcile_grace_s / self.clock.scale,
        )
