"""Soak: two runs on one key with lost answers and kills, over many seeds.

``tests/e2e/test_shared_account.py`` runs this race-prone case (two runs of 50 on one key, 10 %
of POST answers lost, 5 ``kill -9`` each) with one seed. The races it guards against showed in
about one run in twenty (stop 26: a POST registered outside its run's turn, a killed holder taken
for alive), so one run of the suite seldom catches a regression. This runs it for
``SOAK_LOOPS`` seeds from ``SOAK_FIRST_SEED`` (default 50 from 1001; each draws the simulator's
faults and the kill points), each a test of its own; ``--basetemp`` keeps a failing seed's files:
``make soak PYTEST_ARGS="-k loops --basetemp=/tmp/loops"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.test_shared_account import two_batches_pay_each_clip_once

pytestmark = [pytest.mark.soak, pytest.mark.e2e]

FIRST = int(os.environ.get("SOAK_FIRST_SEED", "1001"))
SEEDS = range(FIRST, FIRST + int(os.environ.get("SOAK_LOOPS", "50")))


@pytest.mark.parametrize("seed", SEEDS)
async def test_two_batch_loops_pay_each_clip_once(
    simulator: StartSimulator, tmp_path: Path, seed: int
) -> None:
    await two_batches_pay_each_clip_once(simulator, tmp_path, seed)
