"""The run's messages, now log records, are shown by the CLI's display exactly as before: once,
in its format, on the line of the batch they are about, never again by Python's logging."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from tests.conftest import StartSimulator
from tests.e2e.cli_support import Workdir, orchestrator

pytestmark = pytest.mark.e2e
HELD = (
    "the budget cap holds back {id} and every job after it that does not fit; the summary "
    "counts them and says what sending them needs"
)


def _write(path: Path, batch: str, count: int, budget: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    jobs = "\n".join(f"  - id: {batch}{i}\n    prompt: {batch} scene {i}" for i in range(count))
    path.write_text(
        f"batch: {batch}\n{budget}defaults:\n  model: kling/kling-2.5\n  duration: 5\n"
        f"jobs:\n{jobs}\n"
    )


async def test_plain_lines_show_a_batchs_warning_once_on_its_own_line(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Two manifests, plain: beta's budget warning is one `[beta] warning:` line, nothing else
    says it (no `WARNING:orchestrator...` from Python's last-resort handler)."""
    sim = await simulator(time_scale=200)
    _write(tmp_path / "a" / "jobs.yaml", "alpha", 2)
    _write(tmp_path / "b" / "jobs.yaml", "beta", 4, budget="budget_usd: 0.5\n")
    work = Workdir(tmp_path, sim, 200)
    proc = await asyncio.create_subprocess_exec(
        *orchestrator("run", str(tmp_path / "a" / "jobs.yaml"), str(tmp_path / "b" / "jobs.yaml"),
                      "--api-base", sim.url, "--ledger", str(work.ledger), "--out", str(work.out),
                      "--time-scale", "200", "--progress", "plain"),
        env=work.env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, raw = await proc.communicate()
    err = raw.decode()
    assert proc.returncode == 3, err
    said = [line for line in err.splitlines() if "holds back" in line]
    pattern = r"\d\d:\d\d:\d\d \[beta\] warning: " + re.escape(HELD).replace(
        re.escape("{id}"), r"beta\d"
    )
    assert len(said) == 1, err
    assert re.fullmatch(pattern, said[0]), said
    assert "orchestrator." not in err


async def test_json_lines_carry_a_warning_as_a_note_event(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """--json: the warning is one `note` event with its severity and text; every line is JSON."""
    sim = await simulator(time_scale=200)
    _write(tmp_path / "jobs.yaml", "e2e", 4, budget="budget_usd: 0.5\n")
    code, out, err = await Workdir(tmp_path, sim, 200, progress=("--json",)).run()
    assert code == 3, err
    events = [json.loads(line) for line in err.splitlines()]
    notes = [e for e in events if e["event"] == "note"]
    assert len(notes) == 1, notes
    assert notes[0]["severity"] == "warning"
    assert re.fullmatch(
        re.escape(HELD).replace(re.escape("{id}"), r"e2e\d"), notes[0]["message"]
    ), notes
    assert out == ""
