"""Trial runs as users type them: `run --only ID[,ID]` and `run --limit N` send only those jobs.

Real `orchestrator run` subprocesses against a simulator; what was sent is read from the
simulator's own job list and the ledger, never from our output alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from tests.conftest import StartSimulator
from tests.e2e.cli_support import Workdir

pytestmark = pytest.mark.e2e
S = JobState
#: Two plain entries and one with three takes: 5 jobs, ids a, b, hero_t1, hero_t2, hero_t3.
MANIFEST = """batch: trial
defaults: {model: kling/kling-2.5, duration: 5}
jobs:
  - id: a
    prompt: a lighthouse at dawn
  - id: hero
    prompt: the keeper climbs the stairs
    takes: 3
  - id: b
    prompt: waves on the rocks
"""


async def _workdir(simulator: StartSimulator, root: Path) -> Workdir:
    sim = await simulator(time_scale=400)
    (root / "jobs.yaml").write_text(MANIFEST)
    return Workdir(root, sim, 400, progress=("--json",))


async def _states(work: Workdir) -> dict[str, JobState]:
    async with Ledger.open(work.ledger, readonly=True) as ledger:
        return {r.entry_id: r.state for r in await ledger.jobs(batch="trial")}


def _end(err: str) -> dict[str, object]:
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "end", events[-1]
    return events[-1]


async def test_only_sends_the_named_jobs_and_an_entry_id_takes_its_takes(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """`--only a,hero`: a and hero's three takes are sent and done, b stays pending; the run
    exits 0 (its jobs are done) and says what it left; a plain run then sends b alone."""
    work = await _workdir(simulator, tmp_path)

    code, _, err = await work.run("--only", "a,hero")

    assert code == 0, err
    states = await _states(work)
    assert states == {"a": S.DONE, "hero_t1": S.DONE, "hero_t2": S.DONE, "hero_t3": S.DONE,
                      "b": S.PENDING}  # fmt: skip
    assert len(work.sim.jobs()) == 4
    end = _end(err)
    assert (end["not_selected"], end["done"], end["planned"]) == (1, 4, 5)

    code, _, err = await work.run()

    assert code == 0, err
    assert set((await _states(work)).values()) == {S.DONE}
    assert len(work.sim.jobs()) == 5, "the plain run sent b alone"


async def test_limit_takes_the_first_jobs_in_manifest_order_and_counts_done_ones(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """`--limit 2` sends a and hero_t1; the same flag again sends nothing new; `--limit 4`
    sends the next two. The summary for people names what was left out."""
    work = await _workdir(simulator, tmp_path)
    work.progress = ("--progress", "plain")

    code, out, err = await work.run("--limit", "2")

    assert code == 0, err
    assert [j for j, s in (await _states(work)).items() if s is S.DONE] == ["a", "hero_t1"]
    assert "not selected: 3 jobs left unsent by --limit 2; run without it" in out + err

    code, _, err = await work.run("--limit", "2")
    assert code == 0, err
    assert len(work.sim.jobs()) == 2, "the same --limit sent something again"

    code, _, err = await work.run("--limit", "4")
    assert code == 0, err
    done = [j for j, s in (await _states(work)).items() if s is S.DONE]
    assert done == ["a", "hero_t1", "hero_t2", "hero_t3"]
    assert len(work.sim.jobs()) == 4


async def test_an_unknown_only_id_is_one_clear_error_that_changes_nothing(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """A typo in --only names the id, suggests the closest, and writes no ledger."""
    work = await _workdir(simulator, tmp_path)
    work.progress = ("--progress", "plain")

    code, _, err = await work.run("--only", "a,hreo")

    assert code == 2, err
    assert err.strip().splitlines() == [
        "Error: --only: no job 'hreo' in batch 'trial'; did you mean 'hero'?; "
        "`orchestrator jobs` lists the ids"
    ]
    assert not work.ledger.exists()
    assert work.sim.jobs() == []


async def test_a_dry_run_of_a_trial_prices_only_the_jobs_it_would_send(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """`--dry-run --only hero`: the three takes priced, nothing sent or written."""
    work = await _workdir(simulator, tmp_path)
    work.progress = ("--progress", "plain")

    code, out, err = await work.run("--dry-run", "--only", "hero")
    _, whole, _ = await work.run("--dry-run")

    assert code == 0, err
    (total,) = [line.split() for line in out.splitlines() if line.startswith("total")]
    assert total[1] == "3"
    (everything,) = [line.split() for line in whole.splitlines() if line.startswith("total")]
    assert everything[1] == "5"
    each = float(everything[2].lstrip("$")) / 5  # every job here has the same price
    assert float(total[2].lstrip("$")) == pytest.approx(3 * each, abs=0.01)
    assert not work.ledger.exists()
    assert work.sim.jobs() == []
