"""Two POSTs with unknown outcomes in one window: never guessed, never cancelled, reported.

With ``--submit-workers 2`` and no account registry (``--simulate``'s embedded account; with
the registry an account's POSTs take turns) two POSTs can be on the wire at once. When both lose
their answer and both create a job, the job list cannot tell which job is whose (Krea keeps no
client data), nor prove that either is ours rather than another client's: a job we cannot prove
ours is never cancelled or adopted. Each entry is sent again and both jobs are reported as
possible duplicates. The simulator's ``ambiguous_burst`` holds the first two POSTs until both
have arrived, so the window is forced, not hoped for.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from tests.conftest import StartSimulator
from tests.hostile.support import Recorder, run_recorded
from tests.integration.pipeline_support import assert_exactly_once, ledger_rows, manifest_text

S = JobState
POSTS = "POST /generate/video/{provider}/{model}"


async def test_two_ambiguous_posts_in_one_window_are_resent_and_reported_never_cancelled(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Both jobs are possible duplicates (not orphans, not cancelled); each entry is sent once
    more, and every file is the job its entry's row names."""
    sim = await simulator(time_scale=1000, concurrency=4, backlog=8, ambiguous_burst=2)
    recorder = Recorder()
    outcome = await run_recorded(
        sim, tmp_path, manifest_text(2), recorder, submit_workers=2, account_registry=False
    )
    stats = sim.stats()
    assert stats["faults"]["ambiguous"] == 2
    assert stats["requests"][POSTS] == 4, "two per entry: the doubtful one and one more"
    assert "DELETE /jobs/{id}" not in stats["requests"]
    first_two = {job["job_id"] for job in sim.jobs()[:2]}
    async with Ledger.open(outcome.ledger_path, readonly=True) as ledger:
        doubts = await ledger.unattributed()
    assert {d.remote_id for d in doubts} == first_two
    assert {d.kind for d in doubts} == {"possible_duplicate"}
    rows = await ledger_rows(outcome.ledger_path)
    assert not [r for r in rows if r.state is S.ORPHAN]
    assert all(r.state is S.DONE and r.remote_id not in first_two for r in rows)
    assert any("may be duplicates" in message for level, message in recorder.notes)


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
