"""Malformed or surprising API answers: logged, retried or reconciled; never a crash or a lost id.

Each test runs a real batch against the simulator with one kind of bad answer switched on and
checks the ground truth afterwards: every entry billed exactly once, its file whole, and no
second POST for a job whose answer was unreadable (RELIABILITY P2.2, P6.7).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from tests.conftest import StartSimulator
from tests.hostile.support import Recorder, run_recorded
from tests.integration.pipeline_support import assert_exactly_once, ledger_rows, manifest_text

S = JobState
POSTS = "POST /generate/video/{provider}/{model}"


@pytest.mark.parametrize("form", ["truncated", "html", "empty", "missing_fields"])
async def test_an_unreadable_post_answer_is_reconciled_never_resent(
    simulator: StartSimulator, tmp_path: Path, form: str
) -> None:
    """P2.2: a 200 whose body cannot be read means "outcome unknown": found by listing, one POST."""
    sim = await simulator(
        time_scale=1000, concurrency=4, backlog=8, fault_malformed_rate=1.0,
        malformed_routes="generate", malformed_forms=form,
    )  # fmt: skip
    recorder = Recorder()
    outcome = await run_recorded(sim, tmp_path, manifest_text(6), recorder)
    stats = sim.stats()
    assert stats["faults"]["malformed"] == 6
    assert stats["requests"][POSTS] == 6, "a job whose answer was unreadable was sent again"
    assert recorder.reached(S.AMBIGUOUS) == {f"j{i}" for i in range(6)}
    await assert_exactly_once(sim, outcome, 6)


async def test_a_job_list_with_unreadable_items_never_settles_a_lost_post(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Items without created_at are not evidence of absence: reconciliation waits for a whole
    list instead of deciding "no job was created" and paying for the clip again (found by the
    soak: two clips billed twice)."""
    sim = await simulator(
        time_scale=1000, concurrency=4, backlog=8, seed=3, fault_ambiguous_rate=1.0,
        fault_malformed_rate=0.6, malformed_routes="list_jobs", malformed_forms="missing_fields",
    )  # fmt: skip
    outcome = await run_recorded(sim, tmp_path, manifest_text(6))
    stats = sim.stats()
    assert stats["faults"]["malformed"] >= 3
    assert stats["requests"][POSTS] == 6, "a lost POST was judged never created and sent again"
    await assert_exactly_once(sim, outcome, 6)


async def test_malformed_status_answers_are_retried_until_they_read(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Half the GET answers truncated, HTML, {}, weird or without fields: the batch still ends."""
    sim = await simulator(
        time_scale=1000, concurrency=4, backlog=8, seed=8, fault_malformed_rate=0.5,
        malformed_routes="get_job,list_jobs",
        malformed_forms="truncated,html,empty,weird_status,missing_fields",
    )  # fmt: skip
    outcome = await run_recorded(sim, tmp_path, manifest_text(12))
    assert sim.stats()["faults"]["malformed"] >= 5
    await assert_exactly_once(sim, outcome, 12)


async def test_a_malformed_answer_to_a_fresh_url_request_is_retried_or_parked_not_fatal(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P4.5 + P6.7: URLs expire and half the GETs for a fresh one are garbage: done or parked."""
    sim = await simulator(
        time_scale=1000, seed=3, url_ttl_s=0.001, fault_malformed_rate=0.5,
        malformed_routes="get_job", malformed_forms="truncated,html,empty",
    )  # fmt: skip
    first = await run_recorded(sim, tmp_path, manifest_text(6))
    rows = await ledger_rows(first.ledger_path)
    assert sim.stats()["faults"]["malformed"] >= 1
    assert {r.state for r in rows} <= {S.DONE, S.COMPLETED}  # parked downloads stay completed
    assert all(r.last_error for r in rows if r.state is S.COMPLETED)
    sim.configure(fault_malformed_rate=0.0, url_ttl_s=None)
    again = await run_recorded(sim, tmp_path, manifest_text(6))
    await assert_exactly_once(sim, again, 6)


async def test_unknown_statuses_count_as_running_and_are_warned_about_once(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P6.7: statuses Krea adds without notice keep the job in flight; one warning per word."""
    sim = await simulator(
        time_scale=1000, concurrency=2, backlog=8,
        renamed_statuses="queued=waiting,processing=rendering,sampling=upscaling",
    )  # fmt: skip
    recorder = Recorder()
    outcome = await run_recorded(sim, tmp_path, manifest_text(6), recorder)
    await assert_exactly_once(sim, outcome, 6)
    for word in ("rendering", "upscaling"):
        assert len(recorder.noted(f"unknown status {word!r}")) == 1, recorder.notes
    async with Ledger.open(outcome.ledger_path, readonly=True) as ledger:
        causes = {e.cause for e in await ledger.events(batch="b")}
    assert "Krea: unknown status 'rendering'" in causes


@pytest.mark.parametrize("shape", ["objects", "map"])
async def test_result_urls_in_other_shapes_are_downloaded(
    simulator: StartSimulator, tmp_path: Path, shape: str
) -> None:
    """result.urls as [{url}] objects or a name->url map: the same verified files."""
    sim = await simulator(time_scale=1000, urls_shape=shape)
    outcome = await run_recorded(sim, tmp_path, manifest_text(3))
    await assert_exactly_once(sim, outcome, 3)
