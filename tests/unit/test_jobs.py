"""The state machine: every allowed move is allowed, everything else is refused."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.jobs import (
    IN_FLIGHT,
    TERMINAL,
    TRANSITIONS,
    JobState,
    RemoteStatus,
    can_transition,
    job_key,
    state_for_remote,
)

S = JobState
ALLOWED = {
    (S.WAITING, S.PENDING),
    (S.PENDING, S.SUBMITTING),
    (S.PENDING, S.REJECTED),
    (S.PENDING, S.WAITING),  # reroll made a new take of one of its inputs
    (S.SUBMITTING, S.SUBMITTED),
    (S.SUBMITTING, S.PENDING),
    (S.SUBMITTING, S.REJECTED),
    (S.SUBMITTING, S.AMBIGUOUS),
    (S.AMBIGUOUS, S.SUBMITTED),
    (S.AMBIGUOUS, S.PENDING),
    (S.SUBMITTED, S.SUBMITTED),
    (S.SUBMITTED, S.COMPLETED),
    (S.SUBMITTED, S.FAILED),
    (S.SUBMITTED, S.CANCELLED),
    (S.COMPLETED, S.COMPLETED),
    (S.COMPLETED, S.DOWNLOADING),
    (S.DOWNLOADING, S.DONE),
    (S.DOWNLOADING, S.COMPLETED),
    (S.DONE, S.COMPLETED),
    (S.FAILED, S.PENDING),
    (S.CANCELLED, S.PENDING),
    (S.ORPHAN, S.ORPHAN),
}


@pytest.mark.parametrize(("old", "new"), list(itertools.product(JobState, JobState)))
def test_transition_table_is_exactly_the_documented_one(old: JobState, new: JobState) -> None:
    """Each of the 144 (from, to) pairs is allowed iff it is in the documented list."""
    assert can_transition(old, new) == ((old, new) in ALLOWED)


def test_every_state_has_a_row() -> None:
    """The table covers every state, so a new state cannot be forgotten."""
    assert set(TRANSITIONS) == set(JobState)


def test_no_job_is_resent_without_passing_through_pending() -> None:
    """The only way into submitting is from pending: an ambiguous job must be reconciled first."""
    assert [old for old in JobState if can_transition(old, S.SUBMITTING)] == [S.PENDING]


def test_terminal_and_in_flight_do_not_overlap() -> None:
    """A job is never both finished and in flight."""
    assert not (TERMINAL & IN_FLIGHT)


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("completed", S.COMPLETED),
        ("failed", S.FAILED),
        ("cancelled", S.CANCELLED),
        ("intermediate-complete", S.SUBMITTED),
        ("backlogged", S.SUBMITTED),
        ("sampling", S.SUBMITTED),
        ("some-new-status", S.SUBMITTED),
    ],
)
def test_remote_status_maps_to_state(status: str, state: JobState) -> None:
    """Only completed/failed/cancelled end a job; unknown statuses count as still running."""
    assert state_for_remote(status) is state


def test_remote_statuses_are_krea_s_nine() -> None:
    """RemoteStatus mirrors the spec's enum exactly."""
    assert len(RemoteStatus) == 9


def test_job_key_is_stable_and_order_independent() -> None:
    """The same request in any key order gives the same key; a changed prompt gives another."""
    a = job_key("b", "eagle", "kling/kling-2.5", {"prompt": "x", "duration": 5})
    b = job_key("b", "eagle", "kling/kling-2.5", {"duration": 5, "prompt": "x"})
    c = job_key("b", "eagle", "kling/kling-2.5", {"duration": 5, "prompt": "y"})
    assert a == b != c
