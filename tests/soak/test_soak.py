"""Soak: 10,000 jobs, every simulator fault on, the CLI killed with SIGKILL again and again.

Run with ``make soak`` (``SOAK_JOBS`` and ``SOAK_KILLS`` scale it down for a quick try). The
batch goes through ``orchestrator run`` subprocesses, each SIGKILLed once it has made progress,
never after a stretch of wall time (start-up alone, imports and a 10,000-job plan, can take
longer than any such stretch on a slow machine, and a kill before the first request tests
nothing). Progress is a random number of ledger state changes, read from the life's
``--progress json`` lines; for the lives that meet a full API outage, where nothing can change,
it is a random number of requests the outage refused, read from the simulator's counters. Then
one last run with the network faults off finishes the batch, and ``checker.check_history``
compares ledger, disk and the simulator's bill. The figures are printed for the README and kept
in ``soak-figures.json`` beside the run's files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import statistics
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.ledger import Ledger
from orchestrator.simulator import RunningSimulator
from tests.conftest import StartSimulator
from tests.e2e.cli_support import JOB_EVENT, EndedEarly, lines_until, orchestrator
from tests.hostile.support import free_port
from tests.integration.pipeline_support import ledger_rows
from tests.soak.checker import Part, check_history

pytestmark = [pytest.mark.soak, pytest.mark.timeout(3600)]

JOBS = int(os.environ.get("SOAK_JOBS", "10000"))
KILLS = int(os.environ.get("SOAK_KILLS", "100"))
#: A life is killed after 1 to this many state changes. The progress lines show three or more
#: per job (sent, finished, downloaded), and the killed lives make a little over half of them
#: (16,185 for the seeded draws of 10,000 jobs), so the last life has work left too.
MAX_CHANGES = max(1, 3 * JOBS // KILLS)
MAX_REFUSALS = 40  #: an outage life is killed after 1 to this many refused requests
SCALE = 1000.0
#: Every fault the simulator has, at rates a long batch meets many times over.
NETWORK_FAULTS: dict[str, Any] = {
    "fault_5xx_rate": 0.02,
    "fault_reset_rate": 0.01,
    "fault_slow_rate": 0.005,
    "fault_ambiguous_rate": 0.02,
    "fault_malformed_rate": 0.01,
    "fault_truncate_rate": 0.05,
}
OTHER_FAULTS: dict[str, Any] = {
    "slow_delay_s": 0.3,
    "malformed_forms": "truncated,html,empty,weird_status,missing_fields",
    "moderation_rate": 0.01,
    "provider_error_rate": 0.01,
    "system_cancel_rate": 0.005,
    "timeout_rate": 0.002,
    "job_timeout_s": 300.0,
    "intermediate_rate": 0.05,
    "url_ttl_s": 60.0,
    "rate_limit_rps": 400.0,
    "retry_after_s": 1.0,
    "retry_after_form": "http-date",
    "renamed_statuses": "sampling=upscaling",
    "urls_shape": "objects",
    "pending_shape": "null",
    "webhook_duplicates": True,
}


def _manifest(root: Path, batch: str, count: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "jobs.yaml"
    jobs = "\n".join(f"  - id: c{i:05d}\n    prompt: {batch} {i}, slow pan" for i in range(count))
    path.write_text(
        f"batch: {batch}\ndefaults:\n  model: kling/kling-2.5\n  duration: 5\njobs:\n{jobs}\n"
    )
    return path


@dataclass
class Life:
    """One `orchestrator run` of the soak, and the progress it made before it was killed."""

    outage: bool
    kill_after: int | None  #: changes (or, in an outage, refused requests); None: to its end
    changes: int = 0  #: ledger state changes it reported (its JSON ``job`` lines)
    refused: int = 0  #: its requests the outage refused
    requests: int = 0  #: API requests the simulator answered while it ran
    exit_code: int | None = None  #: None: killed

    @property
    def progress(self) -> int:
        """What its kill waited for: refused requests in an outage, state changes otherwise."""
        return self.refused if self.outage else self.changes


class Harness:
    """Starts `orchestrator run` lives against one simulator, all output into one log file."""

    def __init__(
        self, sim: RunningSimulator, root: Path, key: str, port: int, batch: str, jobs: int
    ) -> None:
        self.sim, self.root, self.batch = sim, root, batch
        self.env = {**os.environ, "KREA_API_KEY": key}
        self.log = root / "runs.log"
        self.args = orchestrator(
            "run", str(_manifest(root, batch, jobs)), "--api-base", sim.url,
            "--ledger", str(root / "ledger.db"), "--out", str(root / "out"),
            "--time-scale", str(SCALE), "--max-in-flight", "256", "--download-workers", "8",
            "--webhook-url", f"http://127.0.0.1:{port}/hook",
            "--webhook-listen", f"127.0.0.1:{port}", "--progress", "json",
        )  # fmt: skip

    async def life(self, kill_after: int | None, *, outage: bool = False) -> Life:
        """One run, SIGKILLed after ``kill_after`` units of progress (None: until it ends)."""
        self.sim.configure(outage=outage)
        before = self.sim.stats()
        life = Life(outage, kill_after)
        unit = "refused requests" if outage else "state changes"
        with self.log.open("ab") as log:
            log.write(f"\n=== life: kill after {kill_after} {unit} ===\n".encode())
            log.flush()
            proc = await asyncio.create_subprocess_exec(
                *self.args, env=self.env, stdout=log, stderr=asyncio.subprocess.PIPE
            )  # stdout stays empty in JSON mode
        assert proc.stderr is not None
        lines: list[str] = []
        counting = kill_after is not None and not outage  # read line by line, else drained
        drained = None if counting else asyncio.ensure_future(proc.stderr.read())
        try:
            if kill_after is None:
                await proc.wait()
            elif outage:
                await self._until_refused(proc, before["faults"].get("outage", 0) + kill_after)
            else:
                with contextlib.suppress(EndedEarly):  # the batch ended before the kill
                    await lines_until(proc.stderr, JOB_EVENT, lines, count=kill_after)
        finally:
            if proc.returncode is None:
                proc.kill()
            rest = await (drained if drained is not None else proc.stderr.read())
            lines += rest.decode(errors="replace").splitlines(True)
            code = await proc.wait()
        after = self.sim.stats()
        life.exit_code = None if code == -signal.SIGKILL else code
        life.changes = sum(JOB_EVENT in line for line in lines)
        life.refused = after["faults"].get("outage", 0) - before["faults"].get("outage", 0)
        life.requests = sum(after["requests"].values()) - sum(before["requests"].values())
        with self.log.open("a") as log:
            log.writelines(lines)
        return life

    async def _until_refused(self, proc: asyncio.subprocess.Process, refused: int) -> None:
        """Return once the outage has refused ``refused`` requests in all, or the run ended."""
        reached = asyncio.ensure_future(
            self.sim.wait_until(lambda stats: stats["faults"].get("outage", 0) >= refused)
        )
        ended = asyncio.ensure_future(proc.wait())
        await asyncio.wait({reached, ended}, return_when=asyncio.FIRST_COMPLETED)
        reached.cancel()
        ended.cancel()


@pytest.mark.parametrize("batches", [1, 2], ids=["one batch", "two batches at once"])
async def test_ten_thousand_jobs_through_faults_and_kills_agree_exactly(
    simulator: StartSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, batches: int
) -> None:
    """P5.1: after 100 SIGKILLs, each after progress, and every fault: all records agree.

    Two batches at once: two runs on one key, each with half the jobs, its own ledger, folder
    and kills, side by side (no outage lives: an outage is the account's, not one run's).
    """
    # deliveries to a killed run fail by design; thousands of such warnings say nothing
    caplog.set_level(logging.ERROR, logger="orchestrator.simulator.webhooks")
    key = f"sk-canary-{uuid.uuid4()}"
    sim = await simulator(
        time_scale=SCALE, tokens=key, concurrency=64, backlog=128, seed=2026,
        balance_usd="100000", **NETWORK_FAULTS, **OTHER_FAULTS,
    )  # fmt: skip
    harnesses = [
        Harness(sim, tmp_path / f"b{n}", key, free_port(), f"soak{n}", JOBS // batches)
        for n in range(batches)
    ]
    started = time.monotonic()
    lives = await asyncio.gather(
        *(_kill_loop(h, random.Random(2026 + n), KILLS // batches, batches == 1)
          for n, h in enumerate(harnesses))
    )  # fmt: skip
    sim.configure(**{name: 0.0 for name in NETWORK_FAULTS})
    finals = await asyncio.gather(*(h.life(None) for h in harnesses))
    wall_s = time.monotonic() - started

    stats = sim.stats()
    parts = [
        Part(
            await ledger_rows(h.root / "ledger.db", h.batch), h.root / "out", h.root / "ledger.db",
            await _doubts(h.root / "ledger.db"),
        )
        for h in harnesses
    ]  # fmt: skip
    verdict = check_history(sim.jobs(), stats["billed_micro"], *parts)
    killed = [life for each in lives for life in each]
    log = "".join(h.log.read_text(errors="replace") for h in harnesses)
    figures = {
        "jobs": JOBS, "batches": batches, "kills": len(killed),
        **_lives(killed, finals), "final_exits": [f.exit_code for f in finals],
        "wall_s": round(wall_s, 1), **verdict.figures,
        "billed_equals_ledger_plus_possible_duplicates": stats["billed_micro"]
        == verdict.figures["ledger_cost_micro"]
        + verdict.figures["possible_duplicates_billed_micro"],
        "cancelled_on_the_account": stats["requests"].get("DELETE /jobs/{id}", 0),
        "faults": stats["faults"], "requests": stats["requests"],
        "rate_limited": stats["rate_limited"], "webhooks": stats["webhooks"],
    }  # fmt: skip
    (tmp_path / "soak-figures.json").write_text(json.dumps(figures, indent=2))
    (tmp_path / "soak-lives.json").write_text(json.dumps([asdict(x) for x in killed], indent=1))
    print("\nsoak figures:", json.dumps(figures, indent=2), file=sys.__stdout__, flush=True)

    assert verdict.problems == [], verdict.problems
    if batches == 1:  # one run's POSTs never share a window: every doubt is settled exactly
        assert verdict.figures["possible_duplicates"] == 0, figures
    assert all(f.exit_code in (0, 1) for f in finals), log[-3000:]  # 1: jobs failed (free)
    assert len(killed) >= min(KILLS, 100) or JOBS < 10000, figures
    idle = [(i, life) for i, life in enumerate(killed) if life.progress < 1]
    assert not idle, f"lives killed before making progress: {idle[:5]}"
    assert "Traceback" not in log
    assert "internal error" not in log
    assert key not in log
    for h in harnesses:
        assert key.encode() not in (h.root / "ledger.db").read_bytes()
    kinds: tuple[str, ...] = ("5xx", "reset", "slow", "ambiguous", "malformed", "truncate")
    kinds += ("outage",) if batches == 1 else ()
    assert all(stats["faults"].get(kind, 0) > 0 for kind in kinds), stats["faults"]


async def _doubts(ledger_path: Path) -> frozenset[str]:
    async with Ledger.open(ledger_path, readonly=True) as ledger:
        return frozenset(
            d.remote_id for d in await ledger.unattributed() if d.kind == "possible_duplicate"
        )


async def _kill_loop(harness: Harness, rng: random.Random, kills: int, outages: bool) -> list[Life]:
    """Lives killed after progress until ``kills`` of them, or until the batch ended."""
    killed: list[Life] = []
    while len(killed) < kills:
        if outages and len(killed) % 10 == 5:  # every tenth life meets a full outage, killed in it
            life = await harness.life(rng.randint(1, MAX_REFUSALS), outage=True)
        else:
            life = await harness.life(rng.randint(1, MAX_CHANGES))
        if life.exit_code is not None:
            break  # the batch finished between two kills
        killed.append(life)
    return killed


def _lives(killed: list[Life], finals: list[Life]) -> dict[str, Any]:
    """How much the lives did: the figures the README's soak table shows."""
    normal = [life.changes for life in killed if not life.outage] or [0]
    return {
        "lives": len(killed) + len(finals),
        "lives_killed_in_outage": sum(life.outage for life in killed),
        "killed_lives_with_progress": sum(life.progress > 0 for life in killed),
        "changes_per_killed_life_min_median_max": [
            min(normal), statistics.median(normal), max(normal),
        ],
        "refused_per_outage_life": [life.refused for life in killed if life.outage],
        "changes_in_killed_lives": sum(life.changes for life in killed),
        "changes_in_final_life": sum(final.changes for final in finals),
        "requests_in_killed_lives": sum(life.requests for life in killed),
        "requests_in_final_life": sum(final.requests for final in finals),
    }  # fmt: skip
