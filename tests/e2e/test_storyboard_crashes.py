"""A storyboard killed with SIGKILL again and again, then run once more: every still and clip
billed once, every file whole, and every shot sent with its own frame's result."""

from __future__ import annotations

import contextlib
import hashlib
import random
from pathlib import Path

import pytest

from orchestrator.image_file import check_image
from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from orchestrator.mp4 import check_mp4
from orchestrator.simulator import image_bytes_for
from tests.conftest import StartSimulator
from tests.e2e.cli_support import JOB_EVENT, EndedEarly, Workdir, lines_until

pytestmark = pytest.mark.e2e

FRAMES = 10
TAKES = 2


def write_storyboard(root: Path) -> None:
    """FRAMES frames of TAKES takes each, and one shot per take: 40 jobs, 20 of them chained."""
    entries = []
    for n in range(FRAMES):
        entries.append(
            f"  - id: frame{n:02d}\n    model: image/google/nano-banana-pro\n"
            f"    prompt: scene {n}, a still, 35mm film\n    takes: {TAKES}\n"
            f"  - id: shot{n:02d}\n    model: kling/kling-2.5\n"
            f"    prompt: scene {n}, the camera moves in\n    start_image: {{from: frame{n:02d}}}\n"
        )
    head = 'batch: e2e\ndefaults: {duration: 5, aspect_ratio: "16:9"}\njobs:\n'
    (root / "jobs.yaml").write_text(head + "".join(entries))


@pytest.mark.slow
async def test_a_storyboard_killed_ten_times_pays_each_still_and_clip_once(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """SIGKILL 10 times, each after 1-12 job state changes (lost POST answers and 5xx on),
    then a last run: exit 0, each of the 40 jobs billed once, and each shot's start_image was
    its own frame's result (the simulator records which job each input came from)."""
    sim = await simulator(
        time_scale=100, concurrency=6, backlog=12, seed=23, fault_ambiguous_rate=0.05,
        fault_5xx_rate=0.05, image_duration_s=20,
    )  # fmt: skip
    work = Workdir(tmp_path, sim, 100, progress=("--progress", "json"))
    write_storyboard(tmp_path)
    rng = random.Random(23)
    lives = []
    while len(lives) < 10:
        proc = await work.start()
        assert proc.stderr is not None
        lines: list[str] = []
        try:
            await lines_until(proc.stderr, JOB_EVENT, lines, count=rng.randint(1, 12))
        except EndedEarly:
            break
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.communicate()
        lives.append(sum(JOB_EVENT in line for line in lines))
    assert len(lives) == 10, f"the storyboard finished after {lives}"
    code, _, err = await work.run()
    assert code == 0, err[-2000:]

    async with Ledger.open(work.ledger, readonly=True) as ledger:
        rows = {r.entry_id: r for r in await ledger.jobs(batch="e2e") if r.planned}
    assert len(rows) == FRAMES * TAKES * 2
    assert {row.state for row in rows.values()} == {JobState.DONE}
    charged = {job["job_id"] for job in sim.jobs() if job["charged_micro"]}
    assert charged == {row.remote_id for row in rows.values()}, "billed jobs differ from ours"
    remote = {job["job_id"]: job for job in sim.jobs()}
    for n in range(FRAMES):
        for take in range(1, TAKES + 1):
            frame, shot = rows[f"frame{n:02d}_t{take}"], rows[f"shot{n:02d}_t{take}"]
            still = work.out / (frame.output_path or "")
            assert check_image(still) == "png"
            expected = image_bytes_for(frame.remote_id or "", "png")
            assert hashlib.sha256(still.read_bytes()).hexdigest() == frame.sha256
            assert still.read_bytes() == expected
            check_mp4(work.out / (shot.output_path or ""))
            assert remote[shot.remote_id or ""]["inputs_from"] == {"start_image": frame.remote_id}
    assert not list(work.out.rglob("*.part")), "a temp file was left behind"
