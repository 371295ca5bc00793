"""`orchestrator run` as users run it: interrupted, killed, resumed; no clip lost or paid twice."""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.cli_support import Workdir, assert_billed_once_and_files_whole, write_manifest

pytestmark = pytest.mark.e2e


async def wait_for_line(proc: asyncio.subprocess.Process, needle: str) -> None:
    """Read the run's progress until a line contains ``needle`` (event-driven, no sleeping)."""
    assert proc.stderr is not None
    while line := await proc.stderr.readline():
        if needle in line.decode():
            return
    raise AssertionError(f"the run ended before printing {needle!r}")


async def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """SIGINT mid-batch exits 130 with a resume hint; the same command then finishes the batch."""
    sim = await simulator(time_scale=100, concurrency=4, backlog=8)
    work = Workdir(tmp_path, sim, 100)
    write_manifest(tmp_path, 30)
    proc = await work.start()
    await wait_for_line(proc, "-> submitted")
    proc.send_signal(signal.SIGINT)
    _, err = await proc.communicate()
    assert proc.returncode == 130
    assert "run the same command again to resume" in err.decode()
    code, out, _ = await work.run()
    assert code == 0, out
    await assert_billed_once_and_files_whole(work, 30)


async def test_a_second_run_on_the_same_ledger_is_refused(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P1.6: while one run holds the ledger, another exits 4 naming the owner, changing nothing."""
    sim = await simulator(time_scale=50, concurrency=2, backlog=4)
    work = Workdir(tmp_path, sim, 50)
    write_manifest(tmp_path, 10)
    first = await work.start()
    await wait_for_line(first, "-> submitted")
    code, _, err = await work.run()
    first.send_signal(signal.SIGINT)
    await first.communicate()
    assert code == 4
    assert "in use by pid" in err


@pytest.mark.slow
async def test_crash_loop_pays_each_clip_once(simulator: StartSimulator, tmp_path: Path) -> None:
    """SIGKILL at random moments (>= 20 times, 200 jobs, faults on), then finish: exactly once."""
    sim = await simulator(
        time_scale=100, concurrency=8, backlog=16, seed=17, fault_ambiguous_rate=0.05,
        fault_5xx_rate=0.05, fault_truncate_rate=0.2, media_bytes=200_000,
    )  # fmt: skip
    work = Workdir(tmp_path, sim, 100)
    write_manifest(tmp_path, 200)
    rng = random.Random(17)
    kills = 0
    while kills < 20:
        proc = await work.start()
        try:
            await asyncio.wait_for(proc.wait(), timeout=rng.uniform(0.6, 1.6))
        except TimeoutError:
            proc.kill()
            await proc.wait()
            kills += 1
        else:
            break  # finished before the next kill: the loop has done its job
    assert kills >= 20, "the batch finished before 20 kills; make it longer"
    code, _, err = await work.run()
    assert code == 0, err[-2000:]
    await assert_billed_once_and_files_whole(work, 200)
    assert sim.stats()["faults"].get("ambiguous", 0) > 0
