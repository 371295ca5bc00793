"""The ledger's rows as the money side reads them: ``jobs``, ``events`` and ``unattributed`` rows,
and the groups the ledger adds jobs and events up into for a report (``JobGroup``,
``AttemptGroup``, ``DayGroup``: a few dozen rows where a large ledger has 100,000 jobs).

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


@dataclass(frozen=True, slots=True)
class JobGroup:
    """Jobs alike in every column accounting reads but their own names: counted and summed.

    ``price_micro`` is the sum of their prices. The ledger adds the rows up
    (``Ledger.report_groups``), so a report reads a few dozen groups, not every job.
    """

    batch: str
    model: str
    state: JobState
    planned: bool
    remote_status: str | None
    seconds: float | None
    jobs: int
    price_micro: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> JobGroup:
        """From a column -> value mapping."""
        return cls(
            row["batch"], row["model"], JobState(row["state"]), bool(row["planned"]),
            row["remote_status"], row["seconds"], row["jobs"], row["price_micro"],
        )  # fmt: skip

    @property
    def sample(self) -> JobRow:
        """The group as one row, as accounting's rules read it (with the summed price)."""
        return JobRow(
            key="", batch=self.batch, entry_id="", model=self.model, state=self.state,
            price_micro=self.price_micro, seconds=self.seconds, remote_status=self.remote_status,
            planned=self.planned,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class AttemptGroup:
    """Free attempts (events into failed or cancelled) of one batch, model, state and day."""

    batch: str
    model: str
    state: JobState
    day: str | None  #: the UTC day, when the ledger could tell it from the time's fixed form
    at: str | None  #: else the time itself
    attempts: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> AttemptGroup:
        """From a column -> value mapping."""
        return cls(
            row["batch"], row["model"], JobState(row["state"]), row["day"], row["at"],
            row["attempts"],
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class DayGroup:
    """Jobs of one (state, remote_status, planned) kind billed on one day, counted and summed."""

    state: JobState
    remote_status: str | None
    planned: bool
    day: str | None  #: the UTC day of the billing time, when its fixed form tells it
    at: str | None  #: else the billing time itself (None with day None: unknown)
    jobs: int
    price_micro: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> DayGroup:
        """From a column -> value mapping."""
        return cls(
            JobState(row["state"]), row["remote_status"], bool(row["planned"]), row["day"],
            row["at"], row["jobs"], row["price_micro"],
        )  # fmt: skip

    @property
    def kind(self) -> tuple[str, str | None, int]:
        """(state, remote_status, planned) as the ledger stores them."""
        return self.state.value, self.remote_status, int(self.planned)

    @property
    def sample(self) -> JobRow:
        """The group as one row, as accounting's rules read it."""
        return JobRow(
            key="", batch="", entry_id="", model="", state=self.state,
            price_micro=self.price_micro, remote_status=self.remote_status, planned=self.planned,
        )  # fmt: skip
