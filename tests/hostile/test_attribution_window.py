"""Two POSTs with unknown outcomes in one window: an orphan is cancelled or reported, never guessed.

With ``--submit-workers 2`` two POSTs can be on the wire at once. When both lose their answer
and both create a job, the job list cannot tell which job is whose (Krea keeps no client data):
RELIABILITY P2.3 says cancel or report such jobs as orphans and send the entries again, and never
send a third POST for the same doubt. The simulator's ``ambiguous_burst`` holds the first two
POSTs until both have arrived, so the window is forced, not hoped for.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.jobs import JobState
from tests.conftest import StartSimulator
from tests.hostile.support import run_recorded
from tests.integration.pipeline_support import assert_exactly_once, ledger_rows, manifest_text

S = JobState
POSTS = "POST /generate/video/{provider}/{model}"


async def test_two_ambiguous_posts_in_one_window_become_cancelled_orphans(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P2.3: both jobs are cancelled as orphans (free), each entry is sent once more, and done."""
    sim = await simulator(time_scale=1000, concurrency=4, backlog=8, ambiguous_burst=2)
    outcome = await run_recorded(sim, tmp_path, manifest_text(2), submit_workers=2)
    stats = sim.stats()
    assert stats["faults"]["ambiguous"] == 2
    assert stats["requests"][POSTS] == 4, "two per entry: the doubtful one and one more"
    assert stats["requests"]["DELETE /jobs/{id}"] == 2
    orphans = [r for r in await ledger_rows(outcome.ledger_path) if r.state is S.ORPHAN]
    assert len(orphans) == 2
    assert {r.remote_status for r in orphans} == {"cancelled"}
    first_two = {job["job_id"] for job in sim.jobs()[:2]}
    assert {r.remote_id for r in orphans} == first_two
    assert all(job["status"] == "cancelled" and not job["charged_micro"] for job in sim.jobs()[:2])
    await assert_exactly_once(sim, outcome, 2)


async def test_one_ambiguous_post_per_window_is_attributed_exactly(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """The default single submit worker: the same fault on one POST is matched, no orphan."""
    sim = await simulator(time_scale=1000, concurrency=4, backlog=8, ambiguous_burst=1)
    outcome = await run_recorded(sim, tmp_path, manifest_text(2))
    assert sim.stats()["requests"][POSTS] == 2
    assert "DELETE /jobs/{id}" not in sim.stats()["requests"]
    assert not [r for r in await ledger_rows(outcome.ledger_path) if r.state is S.ORPHAN]
    await assert_exactly_once(sim, outcome, 2)
