"""The job state machine, in one place: local states, Krea's remote statuses, and the legal moves.

A *job* is one expanded manifest entry, identified by a stable ``key``. Its ``state`` is ours;
Krea's word for the remote job is ``status`` and is mirrored in ``remote_status``::

    pending ──► submitting ──► submitted ──► completed ──► downloading ──► done
       ▲            │   │         │  (remote status     ▲        │          │
       │            │   │         │   mirrored)         └────────┘          │
       │            │   │         ├──► failed ────┐   (download retry)      │
       │            │   │         └──► cancelled ─┤                         │
       ├────────────┘   │                         │   verify failed: ◄──────┘
       │ (not sent:     ├──► rejected             │   done ──► completed
       │  429/402/      │    (400/422/410)        │
       │  refused)      └──► ambiguous ──► submitted (reconciled: its job found)
       │                          │
       ├──────────────────────────┘ (reconciled: no job was created)
       └──────────────────────────────────────────┘ (retry: a new attempt)

    waiting ──► pending: a job that takes another job's result (``{from: ID}``) is planned
    waiting, and the ledger makes it pending in the transaction that gives the last of its
    inputs a result (completed). It shows as *blocked* (derived, never stored) while one of its
    inputs failed, was cancelled or rejected; ``retry`` of that input unblocks it.

    orphan: a remote job found by reconciliation that no entry can claim (its own row).

Rules the ledger enforces on every write (``ledger.transition`` checks ``TRANSITIONS``):

* ``submitting`` is committed *before* the POST (Krea has no idempotency key, so the intent must
  be durable first) and ``submitted`` with the job id right after it.
* A crash leaves ``submitting`` rows: on restart they become ``ambiguous`` and are reconciled
  through ``GET /jobs`` before anything is re-sent.
* ``rejected`` is final: resending an invalid request cannot help. (A job whose local file Krea
  refuses to upload is rejected straight from ``pending``: no POST was ever made.)
* ``failed`` and ``cancelled`` go back to ``pending`` only when the user asks (``--retry-failed``
  or ``orchestrator retry``): each new attempt is a new remote job, linked by the events table.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    """Our state of one job."""

    WAITING = "waiting"  #: planned; takes another job's result (``{from: ...}``), not ready yet
    PENDING = "pending"  #: planned; no POST in flight (never sent, or proven not created)
    SUBMITTING = "submitting"  #: intent committed; the POST may be on the wire
    SUBMITTED = "submitted"  #: Krea gave a job_id; its status is mirrored in remote_status
    COMPLETED = "completed"  #: Krea finished it (billed); the result URL is known
    DOWNLOADING = "downloading"  #: a download into a temp file beside the target is under way
    DONE = "done"  #: the verified MP4 is on disk; size and sha256 are recorded
    REJECTED = "rejected"  #: Krea refused the request (400/422/410); never retried
    FAILED = "failed"  #: Krea failed it (moderation, provider error, timeout); free
    CANCELLED = "cancelled"  #: cancelled, by us or by Krea; free
    AMBIGUOUS = "ambiguous"  #: the POST's outcome is unknown; reconcile before resending
    ORPHAN = "orphan"  #: a remote job that no manifest entry can claim


class RemoteStatus(StrEnum):
    """Krea's status of a remote job, in Krea's words."""

    BACKLOGGED = "backlogged"  #: waiting behind the account's concurrency limit
    QUEUED = "queued"  #: waiting in Krea's queue
    SCHEDULED = "scheduled"  #: accepted and scheduled on a worker
    PROCESSING = "processing"  #: a worker is running it
    SAMPLING = "sampling"  #: generating output samples
    INTERMEDIATE_COMPLETE = "intermediate-complete"  #: has a preview; NOT finished
    COMPLETED = "completed"  #: finished; result.urls holds the video; billed
    FAILED = "failed"  #: failed; details in error / result.error; free
    CANCELLED = "cancelled"  #: cancelled by the user or the system; free


S = JobState

#: Every legal move. A self-loop records a change of remote_status without a state change.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.WAITING: frozenset({S.PENDING}),
    S.PENDING: frozenset({S.SUBMITTING, S.REJECTED, S.WAITING}),
    S.SUBMITTING: frozenset({S.SUBMITTED, S.PENDING, S.REJECTED, S.AMBIGUOUS}),
    S.AMBIGUOUS: frozenset({S.SUBMITTED, S.PENDING}),
    S.SUBMITTED: frozenset({S.SUBMITTED, S.COMPLETED, S.FAILED, S.CANCELLED}),
    S.COMPLETED: frozenset({S.COMPLETED, S.DOWNLOADING}),
    S.DOWNLOADING: frozenset({S.DONE, S.COMPLETED}),
    S.DONE: frozenset({S.COMPLETED}),
    S.FAILED: frozenset({S.PENDING}),
    S.CANCELLED: frozenset({S.PENDING}),
    S.REJECTED: frozenset(),
    S.ORPHAN: frozenset({S.ORPHAN}),
}

#: Nothing more happens to these without the user asking.
TERMINAL: frozenset[JobState] = frozenset({S.DONE, S.REJECTED, S.FAILED, S.CANCELLED, S.ORPHAN})
#: A remote job may exist and is not finished: these count against Krea's concurrency + backlog.
IN_FLIGHT: frozenset[JobState] = frozenset({S.SUBMITTING, S.SUBMITTED, S.AMBIGUOUS})
#: States whose result URL is known: a job taking this one's result (``inputs``) may be sent.
HAS_RESULT: frozenset[JobState] = frozenset({S.COMPLETED, S.DOWNLOADING, S.DONE})
#: Planned and never sent: a superseded row in one of these states is not history.
UNSENT: frozenset[JobState] = frozenset({S.WAITING, S.PENDING})
#: Sent back to pending by --retry-failed / `orchestrator retry`.
RETRYABLE: frozenset[JobState] = frozenset({S.FAILED, S.CANCELLED})
#: Local states that still need work from a `run`.
UNFINISHED: frozenset[JobState] = frozenset(set(JobState) - TERMINAL)

REMOTE_TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


def can_transition(from_state: JobState, to_state: JobState) -> bool:
    """True when the state machine allows ``from_state -> to_state``."""
    return to_state in TRANSITIONS[from_state]


def state_for_remote(status: str) -> JobState:
    """Our state for a submitted job whose remote status is ``status``.

    Unknown status values (Krea adds states without notice) count as still running.
    """
    if status == RemoteStatus.COMPLETED:
        return S.COMPLETED
    if status == RemoteStatus.FAILED:
        return S.FAILED
    if status == RemoteStatus.CANCELLED:
        return S.CANCELLED
    return S.SUBMITTED


def is_known_status(status: str) -> bool:
    """True for the nine statuses Krea documents."""
    return status in RemoteStatus._value2member_map_


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def job_key(
    batch: str,
    entry_id: str,
    model: str,
    request: dict[str, Any],
    *,
    request_json: str | None = None,
) -> str:
    """Stable identity of a job: same batch, id, model and request give the same key.

    Re-running an unchanged manifest therefore maps onto the same ledger rows, and editing one
    prompt changes exactly one key. The digested text is ``canonical_json`` of
    ``{"batch", "id", "model", "request"}``; ``request_json`` (``canonical_json(request)``,
    when the caller has it: the takes of one entry share it) is spliced in as that object's
    sorted keys would place it, so the text, and the key, are the same either way.
    """
    if request_json is None:
        payload = _encode({"batch": batch, "id": entry_id, "model": model, "request": request})
    else:
        text = _encode_text  # what the encoder does with each str
        payload = (
            f'{{"batch":{text(batch)},"id":{text(entry_id)},"model":{text(model)},'
            f'"request":{request_json}}}'
        )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


#: canonical_json's encoder, made once: ``json.dumps`` with these options builds a new
#: encoder per call, the larger part of a key's cost over 100,000 jobs (same text exactly).
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_encode_text = json.encoder.encode_basestring  # the str encoder of ensure_ascii=False


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One planned job, as the manifest describes it. Pure data: nothing here touches I/O.

    Slotted: a manifest of 100,000 jobs holds 100,000 of these until they are in the ledger.
    """

    key: str
    batch: str
    entry_id: str  #: the user's id, plus a variant suffix for expanded entries
    model: str  #: endpoint path under /generate/video/, e.g. "kling/kling-2.5"
    request: dict[str, Any]  #: the body to POST; local files appear as "asset:sha256:<hex>"
    price_micro: int  #: estimated price in micro-USD (1e-6 USD)
    output_path: str  #: relative to the output directory
    seq: int  #: position in the expanded manifest; submission order
    line: int | None = None  #: manifest line of the entry, for messages
    files: dict[str, str] = field(default_factory=dict)  #: sha256 -> local path to upload
    #: Keys of the jobs whose results it takes (``{from: ID}``, see chain_inputs): it is planned
    #: ``waiting`` and sent once each of them has a result. Its request holds
    #: ``{"from": "<key>"}`` where each result URL goes.
    inputs: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float | None:
        """Seconds of video requested, when the request says."""
        value = self.request.get("duration")
        return float(value) if isinstance(value, int | float) else None


@dataclass
class JobRecord:
    """One ledger row, as read back."""

    key: str
    batch: str
    entry_id: str
    model: str
    request: dict[str, Any]
    state: JobState
    price_micro: int
    seq: int
    output_path: str | None = None
    remote_id: str | None = None
    remote_status: str | None = None
    remote_created_at: str | None = None
    attempts: int = 0
    result_url: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    last_error: str | None = None
    floor: str | None = None  #: newest remote created_at acknowledged when the intent was written
    intent_at: str | None = None  #: local time the intent was committed
    answered_at: str | None = None  #: local time the POST's outcome became known
    created_at: str | None = None
    updated_at: str | None = None
    #: The batch's current manifest maps this job (to its output path). A superseded job (its
    #: entry was edited or removed) is history: it keeps its cost but never writes a file.
    planned: bool = True
