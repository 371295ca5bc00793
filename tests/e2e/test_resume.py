"""`orchestrator run` as users run it: interrupted, killed, resumed; no clip lost or paid twice."""

from __future__ import annotations

import contextlib
import random
import signal
from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.cli_support import (
    JOB_EVENT,
    EndedEarly,
    Workdir,
    assert_billed_once_and_files_whole,
    lines_until,
    wait_for_lines,
    write_manifest,
)

pytestmark = pytest.mark.e2e


async def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """SIGINT mid-batch exits 130 with a resume hint; the same command then finishes the batch."""
    sim = await simulator(time_scale=100, concurrency=4, backlog=8)
    work = Workdir(tmp_path, sim, 100)
    write_manifest(tmp_path, 30)
    proc = await work.start()
    await wait_for_lines(proc, "-> submitted")
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
    await wait_for_lines(first, "-> submitted")
    code, _, err = await work.run()
    first.send_signal(signal.SIGINT)
    await first.communicate()
    assert code == 4
    assert "in use by pid" in err


@pytest.mark.slow
async def test_crash_loop_pays_each_clip_once(simulator: StartSimulator, tmp_path: Path) -> None:
    """SIGKILL 20 times (200 jobs, faults on), each after 1-25 ledger changes; then exactly once.

    A kill lands after the run has made progress, counted in state changes (JSON ``job``
    events), never after a stretch of wall time that start-up alone may use up. The counts are
    drawn from a seeded generator and add up to 279, under half of the batch's 600 or more
    changes (sent, finished, downloaded: three per job at least), so the 20 kills all happen
    whatever the machine's speed.
    """
    sim = await simulator(
        time_scale=100, concurrency=8, backlog=16, seed=17, fault_ambiguous_rate=0.05,
        fault_5xx_rate=0.05, fault_truncate_rate=0.2, media_bytes=200_000,
    )  # fmt: skip
    work = Workdir(tmp_path, sim, 100, progress=("--progress", "json"))
    write_manifest(tmp_path, 200)
    rng = random.Random(17)
    changes_per_life = []
    while len(changes_per_life) < 20:
        proc = await work.start()
        assert proc.stderr is not None
        lines: list[str] = []
        try:
            await lines_until(proc.stderr, JOB_EVENT, lines, count=rng.randint(1, 25))
        except EndedEarly:
            break  # the batch finished before this kill: too few changes were left
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.communicate()
        changes_per_life.append(sum(JOB_EVENT in line for line in lines))
    assert len(changes_per_life) == 20, f"the batch finished after {changes_per_life}"
    assert min(changes_per_life) >= 1, changes_per_life  # every life was killed after progress
    code, _, err = await work.run()
    assert code == 0, err[-2000:]
    await assert_billed_once_and_files_whole(work, 200)
    assert sim.stats()["faults"].get("ambiguous", 0) > 0
