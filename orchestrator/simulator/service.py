"""The simulated Krea back end: one object composing clock, accounts, lifecycle, faults and media.

HTTP handlers (``app``, ``cdn``, ``control``) and the test-facing ``RunningSimulator`` talk only
to this object. It is plain synchronous code driven from the event loop, so a handler sees a
consistent state between two awaits without any locking.

The foreign client (``foreign_jobs_per_s``) is another user of every account the API has seen:
its job arrivals are events on the simulated clock, applied by ``tick`` in time order with the
lifecycle's (a job finishing at ``t`` frees a slot for an arrival after ``t``), so they happen on
``advance`` with a manual clock and, through the runner's waker, on time with a running one.

Media URLs: ``{base}/videos/{job_id}.mp4``, ``{base}/images/{job_id}.png`` (``.jpg``), and
``/previews/`` for intermediate results (``results`` decides the paths). With
``url_ttl_s`` each rendering of a job issues a fresh URL carrying ``expires`` (simulated epoch
seconds) and an HMAC ``sig`` over path and expiry; the key derives from the seed, so runs are
reproducible.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import math
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from types import MappingProxyType
from typing import Any

from orchestrator.simulator.accounts import Accounts
from orchestrator.simulator.assets import Asset
from orchestrator.simulator.billing import request_price_micro
from orchestrator.simulator.clock import VirtualClock, date_of, to_ms
from orchestrator.simulator.counters import Counters
from orchestrator.simulator.faults import FaultPlan
from orchestrator.simulator.job import SimJob, api_json, body_digest, drifted, reshaped_times
from orchestrator.simulator.lifecycle import Lifecycle
from orchestrator.simulator.options import SimulatorOptions
from orchestrator.simulator.outcomes import (
    MODERATION,
    PROVIDER_ERROR,
    SYSTEM_CANCELLED,
    TIMEOUT,
    Planner,
)
from orchestrator.simulator.results import result_path
from orchestrator.simulator.webhooks import WebhookSender
from orchestrator.spec import Endpoint, load_spec

#: Longest real time a POST of the ambiguous burst waits for the others.
BURST_WAIT_S = 10.0
#: What the foreign client sends: the spec's cheapest priced request (60.1 CU, 5 s std).
FOREIGN_MODEL = "kling/kling-1"
FOREIGN_BODY: Mapping[str, Any] = MappingProxyType({"prompt": "another client's job"})


class ForeignArrivals:
    """When the foreign client creates a job on each account: a Poisson process per account.

    Gaps are exponential with mean ``1 / rate`` simulated seconds, drawn from one generator per
    account (seeded by the seed and the account id), so an account's arrivals do not depend on
    which other accounts exist. The process is memoryless, so restarting every schedule from
    "now" when the rate changes is exact rather than an approximation.
    """

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rngs: dict[str, random.Random] = {}
        self._next_s: dict[str, float] = {}  #: account -> its next arrival
        self.planner = Planner(seed, stream="foreign/")

    def start(self, ident: str, rate: float, after_s: float) -> None:
        """Schedule the account's next arrival after ``after_s`` (none while ``rate`` is 0)."""
        if rate <= 0:
            self._next_s.pop(ident, None)
            return
        rng = self._rngs.get(ident)
        if rng is None:
            rng = self._rngs[ident] = random.Random(f"{self._seed}/foreign/{ident}")
        self._next_s[ident] = after_s + rng.expovariate(rate)

    def restart(self, idents: Iterable[str], rate: float, now_s: float) -> None:
        """Every account's schedule afresh from ``now_s`` (after a change of rate or seed)."""
        for ident in idents:
            self.start(ident, rate, now_s)

    def next_s(self) -> float | None:
        """Simulated time of the earliest arrival, or None."""
        return min(self._next_s.values(), default=None)

    def pop_due(self, now_s: float, rate: float) -> tuple[float, str] | None:
        """The earliest arrival at or before ``now_s`` as (time, account), its next one drawn."""
        if not self._next_s:
            return None
        ident = min(self._next_s, key=self._next_s.__getitem__)
        at_s = self._next_s[ident]
        if at_s > now_s:
            return None
        self.start(ident, rate, at_s)
        return at_s, ident


class Service:
    """Everything the simulated Krea knows, and the operations on it."""

    def __init__(self, options: SimulatorOptions) -> None:
        self.options = options
        start_s = options.start_epoch_s
        self.clock = VirtualClock(time.time() if start_s is None else start_s, options.time_scale)
        self.started_date = date_of(self.clock.now())
        self.accounts = Accounts()
        self.planner = Planner(options.seed)
        self.faults = FaultPlan(options.seed)
        self.webhooks = WebhookSender()
        self.counters = Counters()
        self.assets: dict[str, Asset] = {}
        self.base_url = ""
        self.on_change: Callable[[], None] = lambda: None  #: the runner's waker
        self._url_key = hashlib.sha256(f"krea-simulator urls {options.seed}".encode()).digest()
        self._burst_taken = 0  #: generate POSTs that joined the ambiguous burst so far
        self._burst_full = asyncio.Event()
        self.foreign = ForeignArrivals(options.seed)
        self.lifecycle = Lifecycle(
            self.accounts, lambda: self.options, self._on_terminal, lambda: self.on_change()
        )

    # -- time -----------------------------------------------------------------------------------
    def tick(self) -> float:
        """Apply every due event and return the simulated time."""
        now = self.clock.now()
        rate = self.options.foreign_jobs_per_s
        while (due := self.foreign.pop_due(now, rate)) is not None:
            self.lifecycle.run_until(due[0])  # slots freed before the arrival are free for it
            self._add_foreign(*due)
        self.lifecycle.run_until(now)
        return now

    def next_event_s(self) -> float | None:
        """Simulated time of the earliest thing due: a job's next step or a foreign arrival."""
        times = (self.lifecycle.next_event_s(), self.foreign.next_s())
        return min((t for t in times if t is not None), default=None)

    def see(self, ident: str) -> None:
        """A request authenticated as ``ident``: the account exists (and has a foreign client)."""
        if ident in self.accounts.by_id:
            return
        self.accounts.get(ident)
        self.foreign.start(ident, self.options.foreign_jobs_per_s, self.clock.now())
        self.on_change()

    def advance(self, seconds: float) -> float:
        """Move the simulated clock forward and apply what became due."""
        self.clock.advance(seconds)
        now = self.tick()
        self.on_change()
        return now

    def configure(self, **changes: Any) -> SimulatorOptions:
        """Apply option changes live (validated; unknown names raise ``TypeError``)."""
        new = self.options.changed(**changes)
        now = self.tick()  # what fell due before the change happened under the old options
        old, self.options = self.options, new
        if new.time_scale != old.time_scale:
            self.clock.set_scale(new.time_scale)
        if new.seed != old.seed:
            self.planner = Planner(new.seed)
            self.faults.reseed(new.seed)
            self.foreign = ForeignArrivals(new.seed)
        if (new.seed, new.foreign_jobs_per_s) != (old.seed, old.foreign_jobs_per_s):
            self.foreign.restart(self.accounts.by_id, new.foreign_jobs_per_s, now)
        if new.concurrency > old.concurrency:
            self.lifecycle.fill_all(now)
        if new.ambiguous_burst != old.ambiguous_burst:
            self._burst_full.set()  # release anyone held by the old burst
            self._burst_taken, self._burst_full = 0, asyncio.Event()
        self.on_change()
        return new

    async def join_burst(self) -> bool:
        """True for the first ``ambiguous_burst`` created jobs; each waits until all have come.

        The wait is bounded (``BURST_WAIT_S``) so a client that never sends N POSTs at once is
        not held forever; it still gets its ambiguous answer.
        """
        if self._burst_taken >= self.options.ambiguous_burst:
            return False
        self._burst_taken += 1
        full = self._burst_full
        if self._burst_taken >= self.options.ambiguous_burst:
            full.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(BURST_WAIT_S):
                await full.wait()
        self.faults.count("ambiguous")
        return True

    # -- jobs -----------------------------------------------------------------------------------
    def outcome_rates(self) -> dict[str, float]:
        o = self.options
        return {
            MODERATION: o.moderation_rate,
            PROVIDER_ERROR: o.provider_error_rate,
            TIMEOUT: o.timeout_rate,
            SYSTEM_CANCELLED: o.system_cancel_rate,
            "intermediate": o.intermediate_rate,
        }

    def _add_foreign(self, at_s: float, ident: str) -> None:
        """The foreign client's POST at ``at_s``: an ordinary job, or refused as a POST would be
        (429 when slots and backlog are full, 402 when money is short), so never queued."""
        options, account = self.options, self.accounts.get(ident)
        endpoint = _foreign_endpoint()
        price = request_price_micro(endpoint, FOREIGN_BODY, options.unpriced_cu)
        full = account.unfinished >= options.concurrency + options.backlog
        available = account.available_micro(options.balance_micro, options.reserve_in_flight)
        if full or available < price:
            self.counters.foreign_refused += 1
            return
        rates, body = self.outcome_rates(), dict(FOREIGN_BODY)
        job = SimJob(
            job_id=str(uuid.uuid4()),
            account=ident,
            model=endpoint.model,
            request=body,
            body_sha256=body_digest(endpoint.model, body),
            created_ms=account.next_created_ms(to_ms(at_s)),
            price_micro=price,
            plan=self.foreign.planner.plan(endpoint, body, rates, options.duration_s),
            webhook_url=None,
            foreign=True,
        )
        self.lifecycle.submit(job, at_s)
        self.counters.foreign_jobs += 1

    def find(self, account: str, job_id: str) -> SimJob | None:
        """The account's job with this id; another account's job is as good as missing."""
        job = self.lifecycle.jobs.get(job_id)
        return job if job is not None and job.account == account else None

    def render(self, job: SimJob, now_s: float) -> dict[str, Any]:
        """The job as Krea's GET shows it, with freshly issued media URLs."""
        return self.drift(api_json(job, self._urls(job, now_s), self.options.pending_shape))

    def drift(self, body: dict[str, Any]) -> dict[str, Any]:
        """A job's JSON as the configured contract drift shows it (``job.drifted``)."""
        options = self.options
        if options.timestamp_shape != "ms":
            body = reshaped_times(body, options.timestamp_shape)
        if not options.renamed_statuses and options.urls_shape == "strings":
            return body
        return drifted(body, options.status_words, options.urls_shape)

    def _urls(self, job: SimJob, now_s: float) -> list[str] | None:
        if job.status == "completed":
            return [self.media_url(result_path(job, preview=False), now_s)]
        if job.status == "intermediate-complete":
            return [self.media_url(result_path(job, preview=True), now_s)]
        return None

    def _on_terminal(self, job: SimJob) -> None:
        if job.charged_micro:
            self.counters.billed_micro += job.charged_micro
        if job.webhook_url:
            copies = 2 if self.options.webhook_duplicates else 1
            at_s = job.finished_s if job.finished_s is not None else self.clock.now()
            self.webhooks.send(job.webhook_url, self.render(job, at_s), copies)

    # -- media URLs -----------------------------------------------------------------------------
    def media_url(self, path: str, now_s: float) -> str:
        """A public URL for ``path``, signed with an expiry when ``url_ttl_s`` is set."""
        ttl = self.options.url_ttl_s
        if ttl is None:
            return self.base_url + path
        expires = math.ceil(now_s + ttl)
        return f"{self.base_url}{path}?expires={expires}&sig={self._sign(path, expires)}"

    def url_problem(self, path: str, expires: str | None, sig: str | None) -> str | None:
        """Why a media URL may not be served now, or None when it may."""
        if sig is None and expires is None:
            return "This URL requires a signature." if self.options.url_ttl_s else None
        if sig is None or expires is None or not expires.isdigit():
            return "Malformed signed URL."
        if not hmac.compare_digest(sig, self._sign(path, int(expires))):
            return "Invalid signature."
        if self.clock.now() > int(expires):
            return "This URL has expired."
        return None

    def _sign(self, path: str, expires: int) -> str:
        message = f"{path}|{expires}".encode()
        return hmac.new(self._url_key, message, hashlib.sha256).hexdigest()[:32]


@cache
def _foreign_endpoint() -> Endpoint:
    endpoint = load_spec().endpoint(FOREIGN_MODEL)
    if endpoint is None:  # the spec dropped it: pick another cheap model above
        raise LookupError(f"the foreign client's model {FOREIGN_MODEL} is not in the spec")
    return endpoint
