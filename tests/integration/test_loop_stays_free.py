"""Blocking file work runs in threads: a large re-hash never stalls the event loop.

asyncio's debug mode logs every callback that holds the loop longer than
``slow_callback_duration``. Re-hashing a 512 MiB file takes a second or more; with the work in a
thread no callback comes near the quarter second allowed here, on the loop the hash would be one.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from pathlib import Path

import pytest

from orchestrator.budget import Budget
from orchestrator.client import KreaClient
from orchestrator.clock import Clock
from orchestrator.jobs import JobState
from orchestrator.ledger import Batch, Ledger
from orchestrator.limits import InFlightWindow, Pacer
from orchestrator.pipeline import Pipeline
from orchestrator.startup import recover
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import TOKEN
from tests.integration.test_ledger import spec

S = JobState
SIZE = 512 << 20  # sparse: no disk space used, every byte still read and hashed


async def test_re_hashing_a_changed_file_at_start_up_leaves_the_loop_free(
    simulator: StartSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Recovery re-hashes a done file whose time changed, in a thread: no slow callback."""
    sim = await simulator()
    one = spec(0)
    big = tmp_path / "out" / (one.output_path or "")
    big.parent.mkdir(parents=True)
    with big.open("wb") as handle:
        handle.truncate(SIZE)
    async with Ledger.open(tmp_path / "ledger.db") as ledger:
        await ledger.save_batch(Batch("b", "/m.yaml", "sha", str(tmp_path / "out")))
        await ledger.sync_plan("b", [one], {})
        walk = [S.PENDING, S.SUBMITTING, S.SUBMITTED, S.COMPLETED, S.DOWNLOADING]
        for old, new in itertools.pairwise(walk):
            await ledger.transition(one.key, new, expect=old, cause="t")
        await ledger.transition(
            one.key, S.DONE, expect=S.DOWNLOADING, cause="t", bytes=SIZE, sha256="0" * 64,
            file_mtime_ns=1,  # not the file's: its content must be read to be trusted
        )  # fmt: skip
        async with KreaClient.connect(sim.url, TOKEN) as client:
            pipe = Pipeline(ledger=ledger, client=client, batch="b", out_dir=tmp_path / "out",
                            clock=Clock(1.0), window=InFlightWindow(10), pacer=Pacer(None),
                            budget=Budget(), rng=random.Random(1))  # fmt: skip
            loop = asyncio.get_running_loop()
            loop.set_debug(True)
            loop.slow_callback_duration = 0.25
            try:
                with caplog.at_level(logging.WARNING, logger="asyncio"):
                    await recover(pipe)
            finally:
                loop.set_debug(False)
        (row,) = await ledger.jobs(batch="b")
    assert row.state is S.COMPLETED, "the file was read and found changed"
    slow = [r.getMessage() for r in caplog.records if "Executing" in r.getMessage()]
    assert not slow, slow
