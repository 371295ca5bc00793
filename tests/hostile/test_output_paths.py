"""Output paths at run time: nothing lands outside the output folder or over another job's file.

test_manifest.py proves every *planned* path stays inside ``out/`` and that two entries of one
manifest never share a path. These tests cover what planning cannot see: a symlink placed in the
output folder, and a second batch of the same ledger aiming at the same files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from orchestrator.errors import InputError
from orchestrator.jobs import JobState
from tests.conftest import StartSimulator
from tests.hostile.support import Recorder, run_recorded
from tests.integration.pipeline_support import charged, ledger_rows, manifest_text

S = JobState


async def test_a_symlink_out_of_the_output_folder_is_refused_at_download(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P6.5: out/b -> elsewhere: nothing is written elsewhere; jobs are parked with the reason."""
    sim = await simulator(time_scale=1000)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "b").symlink_to(elsewhere, target_is_directory=True)
    recorder = Recorder()
    outcome = await run_recorded(sim, tmp_path, manifest_text(2), recorder)
    assert list(elsewhere.iterdir()) == []
    rows = await ledger_rows(outcome.ledger_path)
    assert {r.state for r in rows} == {S.COMPLETED}  # billed, kept, downloadable once fixed
    assert all("resolves outside" in (r.last_error or "") for r in rows)
    assert len(recorder.noted("resolves outside")) == 2
    assert outcome.summary.exit_code == 1
    assert len(charged(sim)) == 2


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_two_batches_of_one_ledger_never_write_the_same_file(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P6.5: batch c aiming at batch a's files in the same folder is refused before any POST."""
    sim = await simulator(time_scale=1000)
    flat = 'output: "{id}.mp4"\n'  # no {batch} in the template: both batches write out/j0.mp4
    first = await run_recorded(sim, tmp_path, manifest_text(2, batch="a", extra=flat))
    assert first.summary.exit_code == 0
    before = {p.name: _sha(p) for p in (tmp_path / "out").glob("*.mp4")}
    posts = sim.stats()["jobs_created"]
    with pytest.raises(InputError, match=r"j0\.mp4.*batch 'a'"):
        await run_recorded(sim, tmp_path, manifest_text(2, batch="c", extra=flat))
    assert sim.stats()["jobs_created"] == posts
    assert {p.name: _sha(p) for p in (tmp_path / "out").glob("*.mp4")} == before
