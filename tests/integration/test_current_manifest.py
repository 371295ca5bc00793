"""The current manifest rules the disk and the counts: rows it no longer maps are history only.

A ledger keeps every job a batch ever had. When a manifest is edited, the rows it no longer has
(superseded) keep their cost in reports, but they never write a file, never count in a run's
summary, and never decide its exit code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from orchestrator.manifest.manifest import load_manifest
from orchestrator.runner import run
from orchestrator.simulator import RunningSimulator, media_sha256_for
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import settings_for

S = JobState
CLIP_A = "a lighthouse at dawn, slow dolly"
CLIP_B = "a lighthouse at night, storm"


def _manifest(prompt: str, output: str = "") -> str:
    extra = f"output: {output!r}\n" if output else ""
    return (
        f"batch: rev\n{extra}defaults:\n  model: kling/kling-2.5\n  duration: 5\n"
        f"jobs:\n  - id: clip\n    prompt: {prompt}\n"
    )


async def _run(sim: RunningSimulator, tmp_path: Path, name: str, text: str) -> int:
    path = tmp_path / name
    path.write_text(text)
    summary = await run(load_manifest(path), settings_for(sim, tmp_path))
    return summary.exit_code


async def _remote_id_of(ledger_path: Path, prompt: str) -> str:
    async with Ledger.open(ledger_path, readonly=True) as ledger:
        rows = await ledger.jobs(batch="rev")
    (row,) = [r for r in rows if r.request.get("prompt") == prompt]
    assert row.remote_id is not None
    return row.remote_id


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_superseded_job_never_rewrites_the_current_jobs_file(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """a, b, c, then a three times: rev/clip.mp4 is always the clip of the manifest just run."""
    sim = await simulator(time_scale=1000.0)
    a, b = _manifest(CLIP_A), _manifest(CLIP_B)
    c = _manifest(CLIP_A, output="{batch}/other/{id}.mp4")
    target = tmp_path / "out" / "rev" / "clip.mp4"
    expected = []
    for name, text, prompt in [
        ("a.yaml", a, CLIP_A),
        ("b.yaml", b, CLIP_B),
        ("c.yaml", c, CLIP_A),
        ("a.yaml", a, CLIP_A),
        ("a.yaml", a, CLIP_A),
        ("a.yaml", a, CLIP_A),
    ]:
        assert await _run(sim, tmp_path, name, text) == 0
        remote_id = await _remote_id_of(tmp_path / "ledger.db", prompt)
        if name != "c.yaml":
            expected.append(remote_id)
            assert _sha256(target) == media_sha256_for(remote_id), f"after {name}"
    assert len(set(expected)) == 2, "each prompt was sent once"


async def test_counts_and_exit_code_are_the_current_manifests(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """After one prompt is edited: 3 of 3 done, 3 files, status done 3 and 1 superseded."""
    from orchestrator.cli.commands import status

    sim = await simulator(time_scale=1000.0)
    jobs = "".join(f"  - id: j{i}\n    prompt: shot {i}\n" for i in range(3))
    head = "batch: rev\ndefaults:\n  model: kling/kling-2.5\n  duration: 5\njobs:\n"
    path = tmp_path / "jobs.yaml"
    path.write_text(head + jobs)
    settings = settings_for(sim, tmp_path)
    assert (await run(load_manifest(path), settings)).planned == 3
    path.write_text(head + jobs.replace("shot 1", "shot one, edited"))
    summary = await run(load_manifest(path), settings)
    assert (summary.planned, summary.counts.get(S.DONE), summary.exit_code) == (3, 3, 0)
    assert len(list((tmp_path / "out" / "rev").glob("*.mp4"))) == 3
    (batch,) = json.loads(await status(settings.ledger_path, "rev", "json"))
    assert (batch["states"], batch["superseded"]) == ({"done": 3}, 1)
