"""The ledger's rows as Python values, and the SQL fragments that turn one into the other.

Kept apart from ``store`` so the mapping between columns and :class:`~orchestrator.jobs.JobRecord`
fields, and the rules of a transition's UPDATE, can be read (and tested) in one short place.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import IllegalTransition, LedgerError
from orchestrator.jobs import JobRecord, JobState, can_transition

#: Columns a transition may set besides state, cause and detail.
SETTABLE = frozenset(
    {
        "remote_id",
        "remote_status",
        "remote_created_at",
        "attempts",
        "result_url",
        "bytes",
        "sha256",
        "last_error",
        "floor",
        "intent_at",
        "answered_at",
        "completed_at",
        "done_at",
        "file_mtime_ns",
        "output_path",
        "price_micro",
        "inputs_sent",
    }
)
JOB_COLUMNS = (
    "key, batch, entry_id, model, request, state, price_micro, seq, output_path, remote_id, "
    "remote_status, remote_created_at, attempts, result_url, bytes, sha256, last_error, floor, "
    "intent_at, answered_at, created_at, updated_at, planned"
)


@dataclass(frozen=True)
class Batch:
    """A batch as the ledger knows it: where its manifest and files are."""

    name: str
    manifest_path: str
    manifest_sha256: str
    out_dir: str
    budget_micro: int | None = None
    api_base: str | None = None  #: where its last run sent requests (None: not recorded)
    cancelled_at: str | None = None  #: when `orchestrator cancel` stopped it, until resumed


@dataclass(frozen=True)
class Move:
    """One transition to apply: ``key`` from ``expect`` to ``to``, setting ``fields``."""

    key: str
    expect: JobState
    to: JobState
    cause: str
    fields: dict[str, Any] = field(default_factory=dict)
    detail: str | None = None


@dataclass(frozen=True)
class Unattributed:
    """A job on the account no run can claim (see migration 6)."""

    remote_id: str
    kind: str  #: ``foreign`` or ``possible_duplicate``
    batch: str | None
    model: str | None
    price_micro: int  #: what it costs if it is ours (possible duplicates only)
    remote_status: str | None
    created_at: str
    note: str | None = None


@dataclass(frozen=True)
class Event:
    """One row of the append-only history."""

    seq: int
    job_key: str
    batch: str
    at: str
    from_state: str | None
    to_state: str
    cause: str
    remote_id: str | None
    remote_status: str | None
    price_micro: int | None
    detail: str | None


@dataclass(frozen=True)
class DoneFile:
    """What the ledger recorded of a done job's file when it was verified."""

    key: str
    output_path: str | None
    bytes: int | None
    sha256: str | None
    mtime_ns: int | None  #: None for files verified before this was recorded


@dataclass(frozen=True)
class PlanSync:
    """What syncing a manifest into the ledger changed."""

    added: int
    kept: int
    dropped: int  #: unsent (pending or waiting) rows no longer in the manifest: never sent


def update_sql(move: Move, now: str) -> tuple[str, list[Any]]:
    if not can_transition(move.expect, move.to):
        raise IllegalTransition(move.key, move.expect.value, move.to.value)
    unknown = set(move.fields) - SETTABLE
    if unknown:
        raise LedgerError(f"not a settable ledger column: {', '.join(sorted(unknown))}")
    names = ["state", "cause", "detail", "updated_at", *move.fields]
    values = [move.to.value, move.cause, move.detail, now, *move.fields.values()]
    assignments = ", ".join(f"{name} = ?" for name in names)
    sql = f"UPDATE jobs SET {assignments}, rev = rev + 1 WHERE key = ? AND state = ?"
    return sql, [*values, move.key, move.expect.value]


def filters(
    batch: str | None, states: Iterable[JobState] | None, current_only: bool, after_seq: int | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if batch is not None:
        clauses.append("batch = ?")
        params.append(batch)
    if states is not None:
        wanted = [s.value for s in states]
        clauses.append(f"state IN ({', '.join('?' * len(wanted))})")
        params.extend(wanted)
    if current_only:
        clauses.append("planned = 1")  # the batch's current manifest maps it
    if after_seq is not None:
        clauses.append("seq > ?")
        params.append(after_seq)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), params


def record(row: sqlite3.Row | tuple[Any, ...]) -> JobRecord:
    (
        key,
        batch,
        entry_id,
        model,
        request,
        state,
        price_micro,
        seq,
        output_path,
        remote_id,
        remote_status,
        remote_created_at,
        attempts,
        result_url,
        size,
        sha256,
        last_error,
        floor,
        intent_at,
        answered_at,
        created_at,
        updated_at,
        planned,
    ) = row
    return JobRecord(
        key=key,
        batch=batch,
        entry_id=entry_id,
        model=model,
        request=json.loads(request),
        state=JobState(state),
        price_micro=price_micro,
        seq=seq,
        output_path=output_path,
        remote_id=remote_id,
        remote_status=remote_status,
        remote_created_at=remote_created_at,
        attempts=attempts,
        result_url=result_url,
        bytes=size,
        sha256=sha256,
        last_error=last_error,
        floor=floor,
        intent_at=intent_at,
        answered_at=answered_at,
        created_at=created_at,
        updated_at=updated_at,
        planned=bool(planned),
    )


def like_escaped(text: str) -> str:
    """``text`` with LIKE's wildcards escaped (for ``LIKE ? ESCAPE '\\'``): searched as text."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
