"""The ledger's rows as the money side reads them: ``jobs``, ``events`` and ``unattributed`` rows.

``accounting`` adds job rows up and ``spend_history`` walks event rows; both take these shapes,
which is why they live apart from either (neither module imports the other for a type). The
ledger's report queries select exactly these columns. A possible duplicate is no job of ours:
it is itemised beside the figures, never added into them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from orchestrator.jobs import JobState


@dataclass(frozen=True, slots=True)
class JobRow:
    """The columns of one ``jobs`` row that accounting reads."""

    key: str
    batch: str
    entry_id: str
    model: str
    state: JobState
    price_micro: int
    seconds: float | None = None
    remote_id: str | None = None
    remote_status: str | None = None
    remote_created_at: str | None = None
    completed_at: str | None = None
    updated_at: str | None = None
    planned: bool = True  #: the batch's latest manifest has it: a run would send it

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> JobRow:
        """From a column -> value mapping (extra columns are ignored)."""
        values = {name: row[name] for name in _JOB_COLUMNS if name in row}
        planned = bool(values.get("planned", True))  # SQLite gives 0 or 1
        return cls(**{**values, "state": JobState(row["state"]), "planned": planned})


_JOB_COLUMNS = tuple(f.name for f in fields(JobRow))


@dataclass(frozen=True, slots=True)
class EventRow:
    """The columns of one ``events`` row that accounting reads."""

    seq: int
    job_key: str
    at: str
    to_state: str
    remote_id: str | None = None
    remote_status: str | None = None
    price_micro: int | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> EventRow:
        """From a column -> value mapping (extra columns are ignored)."""
        return cls(**{name: row[name] for name in _EVENT_COLUMNS if name in row})


_EVENT_COLUMNS = tuple(f.name for f in fields(EventRow))


@dataclass(frozen=True, slots=True)
class PossibleDuplicateRow:
    """One ``unattributed`` row of kind ``possible_duplicate``: maybe ours, maybe another's."""

    remote_id: str
    batch: str | None
    model: str | None
    price_micro: int  #: what it costs if it is ours (the dearest entry that could own it)
    remote_status: str | None  #: Krea's status when the job was last seen
    created_at: str  #: Krea's created_at
    note: str | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> PossibleDuplicateRow:
        """From a column -> value mapping (extra columns are ignored)."""
        return cls(**{name: row[name] for name in _DUPLICATE_COLUMNS if name in row})


_DUPLICATE_COLUMNS = tuple(f.name for f in fields(PossibleDuplicateRow))
