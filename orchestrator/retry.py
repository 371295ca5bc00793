"""What to do after a failed request: pure decisions and delays, no I/O.

A POST and a read fail differently, because Krea has no idempotency key (RELIABILITY P2.2, P3.3):

====================  ==============================  =================================
failure               POST /generate                   GET / DELETE
====================  ==============================  =================================
not sent              retry                            retry
lost / 5xx / bad 2xx  **reconcile** (may exist)        retry
429                   retry after Retry-After/backoff  retry after Retry-After/backoff
400 / 422 / 410       reject: never resend             give up (caller decides)
404 (job)             (not a POST answer)              give up (caller decides)
no such route         stop everything: wrong API base  stop everything
401 / 403             stop everything                  stop everything
402                   stop submitting; finish others   (not expected)
====================  ==============================  =================================

Delays are capped exponential backoff with full jitter (P3.1); a server's Retry-After is a floor,
clamped to ``max_wait_s`` (P3.2). All delays are in API seconds (see ``clock``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from orchestrator import errors


class Action(StrEnum):
    """The caller's next step."""

    RETRY = "retry"  #: try again after ``delay_s``
    RECONCILE = "reconcile"  #: the POST may have created a job: look for it before anything else
    REJECT = "reject"  #: the request itself is wrong: record why, never resend
    STOP = "stop"  #: an account-wide condition (bad key, no funds): stop submitting


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def classify_post(error: errors.OrchestratorError) -> Decision:
    """The decision after ``POST /generate/video/...`` failed with ``error``."""
    reason = error.message
    if isinstance(error, errors.Unreachable | errors.NotKreaApi):
        return Decision(Action.STOP, reason)
    if isinstance(error, errors.NotSent | errors.RateLimited):
        return Decision(Action.RETRY, reason)
    if isinstance(error, errors.TransportError | errors.ServerError | errors.BadResponse):
        return Decision(Action.RECONCILE, reason)
    if isinstance(error, errors.Unauthorized | errors.InsufficientFunds):
        return Decision(Action.STOP, reason)
    return Decision(Action.REJECT, reason)


def classify_read(error: errors.OrchestratorError) -> Decision:
    """The decision after a GET or DELETE failed with ``error``."""
    reason = error.message
    if isinstance(error, errors.Unauthorized | errors.Unreachable | errors.NotKreaApi):
        return Decision(Action.STOP, reason)
    transient = (errors.TransportError, errors.ServerError, errors.RateLimited, errors.BadResponse)
    if isinstance(error, transient) or (isinstance(error, errors.ApiError) and error.status == 408):
        return Decision(Action.RETRY, reason)
    return Decision(Action.REJECT, reason)


def backoff_s(
    attempt: int, rng: random.Random, *, base_s: float = 1.0, cap_s: float = 60.0
) -> float:
    """Full jitter: uniform(0, min(cap, base * 2**attempt)), attempt counting from 0."""
    return rng.uniform(0.0, min(cap_s, base_s * 2.0 ** min(attempt, 32)))


def delay_s(
    error: errors.OrchestratorError,
    attempt: int,
    rng: random.Random,
    *,
    base_s: float = 1.0,
    cap_s: float = 60.0,
    max_wait_s: float = 300.0,
) -> float:
    """How long to wait before the next try: Retry-After when given (plus jitter), else backoff."""
    hinted = getattr(error, "retry_after_s", None)
    if hinted is not None:
        return float(min(max_wait_s, hinted)) + rng.uniform(0.0, min(1.0, base_s))
    return backoff_s(attempt, rng, base_s=base_s, cap_s=cap_s)


def is_rate_not_capacity(error: errors.RateLimited) -> bool:
    """A 429 about request rate, not Krea's documented 'maximum number of concurrent jobs'."""
    return "concurrent" not in error.reason.lower()


class Backoff:
    """Consecutive failures of one activity: each makes the delay grow; a success resets it."""

    def __init__(self, rng: random.Random, *, base_s: float = 1.0, cap_s: float = 60.0) -> None:
        self.rng = rng
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0

    def next_delay(self, error: errors.OrchestratorError) -> float:
        wait = delay_s(error, self.failures, self.rng, base_s=self.base_s, cap_s=self.cap_s)
        self.failures += 1
        return wait

    def succeeded(self) -> None:
        self.failures = 0
