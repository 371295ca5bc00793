"""An outage of minutes: the run backs off without spinning or flooding, loses nothing, recovers.

The run is the real CLI in a subprocess, so its CPU time can be read from /proc apart from the
simulator's (which runs in this process). Its first jobs last until the test moves the
simulator's clock, so none can finish before the outage however slow the machine. The outage
lasts until the run has logged twenty failed status sweeps: with backoff that takes several API
minutes (read from the simulator's clock; a few real seconds at 100x), without it a few API
seconds, and the request count is compared with what that many API seconds allow.

Not spinning is judged by a ratio that load can only lower: the run's CPU time over the
outage's wall time. A run that backs off sleeps through nearly all of it (2 % measured on a
2-core machine, also with three busy processes beside it); a spinning one keeps a core busy,
and still gets well over a quarter of one when it shares the two cores with four other
processes.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from orchestrator import errors
from orchestrator.client import UNREACHABLE_AFTER, KreaClient
from orchestrator.simulator import running_simulator
from tests.conftest import StartSimulator
from tests.e2e.cli_support import Workdir, assert_billed_once_and_files_whole, write_manifest
from tests.hostile.support import cpu_seconds, free_port, lines_until, run_cli
from tests.integration.pipeline_support import ledger_rows

SCALE = 100.0
FOREVER_S = 1e6  #: job duration: nothing finishes until the test moves the simulator's clock
FAILED_SWEEPS = 20
#: Activities that may each retry on their own: the poller, the reconciler (POSTs refused by
#: the outage are ambiguous), and the download workers' fresh-URL GETs.
ACTIVITIES = 6


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
async def test_an_outage_of_minutes_is_waited_out_without_spinning_or_losing_jobs(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P3.4: every request 503 for minutes: bounded requests, no spinning, then all jobs once."""
    sim = await simulator(time_scale=SCALE, concurrency=12, backlog=4, seed=4, duration_s=FOREVER_S)
    work = Workdir(tmp_path, sim, SCALE)
    write_manifest(tmp_path, 12)
    proc = await work.start()
    assert proc.stderr is not None
    seen: list[str] = []
    await lines_until(proc.stderr, "-> submitted", seen)

    sim.configure(outage=True)
    api_start, started, cpu_before = sim.now(), time.monotonic(), cpu_seconds(proc.pid)
    await lines_until(proc.stderr, "status sweep failed, backing off", seen, count=FAILED_SWEEPS)
    real_s, cpu_s = time.monotonic() - started, cpu_seconds(proc.pid) - cpu_before
    api_s = sim.now() - api_start
    during = sim.stats()["faults"]["outage"]
    sim.configure(outage=False, duration_s=None)  # Krea is back; jobs sent now take 90 API s
    sim.advance(2 * FOREVER_S)  # and those sent before finish

    _, rest = await proc.communicate()
    log = "".join(seen) + rest.decode()
    assert proc.returncode == 0, log[-3000:]
    # Full-jitter backoff capped at 60 API s spaces the sweeps: the 14 delays after the doubling
    # warm-up, each uniform in [0, 60] s, add up to less than a minute once in 10^11 runs.
    assert api_s >= 60, f"{FAILED_SWEEPS} failed sweeps in {api_s:.0f} API s: no backoff"
    # About one try per 30 s per activity, plus the warm-up; a retry loop without backoff
    # makes thousands in the same time.
    assert during <= ACTIVITIES * (10 + api_s / 15), (during, api_s)
    assert cpu_s < 0.25 * real_s, f"{cpu_s:.2f} s CPU over {real_s:.2f} s of outage: spinning"
    assert "Traceback" not in log
    await assert_billed_once_and_files_whole(work, 12)
    print(f"outage {api_s:.0f} API s ({real_s:.1f} s): {during} requests, {cpu_s:.2f} s CPU")


def test_cpu_seconds_reads_this_process() -> None:
    """The /proc reader the outage test relies on sees CPU being spent."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("reads CPU time from /proc")
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - before >= 0.1


async def test_an_api_that_never_answers_ends_the_run_with_one_clear_message(
    tmp_path: Path,
) -> None:
    """A wrong --api-base (nothing listens): one warning, then exit 4 naming the URL; no hang."""
    write_manifest(tmp_path, 3)
    base = f"http://127.0.0.1:{free_port()}"
    done = await run_cli(
        ["run", str(tmp_path / "jobs.yaml"), "--api-base", base, "--progress", "plain",
         "--ledger", str(tmp_path / "ledger.db"), "--out", str(tmp_path / "out"),
         "--time-scale", "1000"],
        env={**os.environ, "KREA_API_KEY": "sk-test-unreachable"},
    )  # fmt: skip
    assert done.code == 4, done.err[-2000:]
    assert f"cannot reach the API at {base}" in done.err
    assert done.err.count("retrying with backoff") == 1  # said once, not once per attempt
    assert "Traceback" not in done.err
    rows = await ledger_rows(tmp_path / "ledger.db", "e2e")
    assert {row.state.value for row in rows} == {"pending"}  # nothing left half-sent


async def test_an_api_that_answered_once_is_waited_for_however_long_it_is_gone() -> None:
    """Refusals after a first answer are an outage, retried as such; never 'unreachable'."""
    async with contextlib.AsyncExitStack() as outer:
        async with running_simulator() as sim:
            client = await outer.enter_async_context(KreaClient.connect(sim.url, "sk-test"))
            await client.list_jobs(limit=1)
        # the simulator is gone: every connection is refused from now on
        for _ in range(3 * UNREACHABLE_AFTER):
            with pytest.raises(errors.TransportError) as caught:
                await client.list_jobs(limit=1)
            assert not isinstance(caught.value, errors.Unreachable)
        assert isinstance(caught.value, errors.NotSent)
