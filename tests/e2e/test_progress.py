"""What a run prints for CI: `--json` events ending in `end`, `--quiet`'s one line, `--simulate`."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartSimulator
from tests.e2e.cli_support import Workdir, orchestrator, write_manifest

pytestmark = pytest.mark.e2e
README = (Path(__file__).parents[2] / "README.md").read_text()


def _events(err: str) -> list[dict[str, Any]]:
    """The JSON lines of stderr (the CLI's own `Error:` line, if any, is not one)."""
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def _readme_end_event() -> dict[str, Any]:
    block = README.split('"event": "end"', 1)[0].rsplit("```json\n", 1)[1]
    block += '"event": "end"' + README.split('"event": "end"', 1)[1].split("```", 1)[0]
    return dict(json.loads(block))


async def test_json_progress_prints_spend_events_and_ends_with_an_end_event(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """--json: stdout empty, every stderr line JSON, spend events, last `end` with the bill."""
    sim = await simulator(time_scale=200)
    work = Workdir(tmp_path, sim, 200, progress=("--json",))
    write_manifest(tmp_path, 3)
    code, out, err = await work.run()
    assert code == 0, err
    assert out == ""
    events = _events(err)
    assert len(events) == len(err.splitlines())
    assert {"start", "job", "spend", "end"} <= {e["event"] for e in events}
    end = events[-1]
    billed = sum(j["charged_micro"] for j in sim.jobs())
    assert end["event"] == "end"
    assert (end["exit_code"], end["done"], end["planned"]) == (0, 3, 3)
    assert end["billed_micro"] == billed
    assert end["billed_usd"] == pytest.approx(billed / 1e6)
    spends = [e for e in events if e["event"] == "spend"]
    assert spends[-1]["billed_micro"] == billed
    assert set(end) == set(_readme_end_event())


async def test_json_progress_ends_with_an_end_event_when_an_error_stops_the_run(
    tmp_path: Path,
) -> None:
    """A bad manifest under --json: exit 2, and the last JSON line is `end` holding the error."""
    manifest = tmp_path / "jobs.yaml"
    manifest.write_text(
        "batch: b\njobs:\n  - prompt: a fox\n    model: kling/kling-2.5\n    x: 1\n"
    )
    proc = await asyncio.create_subprocess_exec(
        *orchestrator("run", str(manifest), "--json", "--ledger", str(tmp_path / "l.db")),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "KREA_API_KEY": "k"},
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 2, err
    end = _events(err.decode())[-1]
    assert end["event"] == "end"
    assert end["exit_code"] == 2
    assert "'x'" in end["error"]
    assert out == b""


async def test_quiet_prints_no_warnings_and_one_summary_line(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """--quiet: failed jobs are counted, not warned about; stdout is one line with the exit code."""
    sim = await simulator(time_scale=200, moderation_rate=1.0)
    work = Workdir(tmp_path, sim, 200, progress=("--quiet",))
    write_manifest(tmp_path, 2)
    code, out, err = await work.run()
    assert code == 1
    assert err == ""
    assert out.splitlines() == ["batch e2e: 0 of 2 done (2 failed), $0.00 billed, exit 1"]


async def in_folder(folder: Path, *args: str) -> tuple[int, str, str]:
    """``orchestrator <args>`` run in ``folder``, as typed there: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        *orchestrator(*args), cwd=folder,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_simulate_keeps_its_own_ledger_and_files(tmp_path: Path) -> None:
    """`run --simulate` without --ledger/--out writes simulated.db and simulated-out/ only."""
    write_manifest(tmp_path, 2)
    code, out, err = await in_folder(tmp_path, "run", "jobs.yaml", "--simulate", "--quiet")
    assert code == 0, err
    assert out.startswith("batch e2e: 2 of 2 done")
    assert (tmp_path / "simulated.db").is_file()
    assert len(list((tmp_path / "simulated-out").rglob("*.mp4"))) == 2
    assert not (tmp_path / "orchestrator.db").exists()
    assert not (tmp_path / "out").exists()


async def test_the_summary_says_where_the_results_are_and_the_commands_that_read_them(
    tmp_path: Path,
) -> None:
    """After `run --simulate`, the summary names the ledger and the folder, and its `next:`
    commands carry this run's --ledger: each of them, run as printed, answers; `status` without
    it names the ledger it did find there."""
    write_manifest(tmp_path, 2)
    args = ("run", "jobs.yaml", "--simulate", "--progress", "plain")
    code, out, err = await in_folder(tmp_path, *args)
    assert code == 0, err
    lines = out.splitlines()
    assert "ledger simulated.db (every job, its history and cost); files under simulated-out/" in (
        lines
    )
    review = "review the clips in a browser (play, pick, reject): orchestrator view"
    assert lines[lines.index("next:") - 1] == f"{review} --ledger simulated.db"
    commands = lines[lines.index("next:") + 1 :]
    assert commands == [
        "  orchestrator status --ledger simulated.db",
        "  orchestrator report --ledger simulated.db --batch e2e",
        "  orchestrator export --ledger simulated.db --batch e2e --format csv",
    ]
    for command in commands:
        shown, answer, problem = await in_folder(tmp_path, *command.split()[1:])  # as printed
        assert shown == 0, (command, problem)
        assert answer.strip(), command
    code, _, err = await in_folder(tmp_path, "status")  # the default ledger: not this one
    assert code == 2
    assert "no ledger at orchestrator.db" in err
    assert "ledgers in that folder: simulated.db" in err


async def test_a_budget_stop_is_one_warning_and_a_summary_that_says_what_finishing_needs(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """A $1.00 cap on 6 clips of $0.3667: one warning line however many are held back, then
    the summary counts them and names the budget that sends them all, which does (exit 0)."""
    sim = await simulator(time_scale=200)
    work = Workdir(tmp_path, sim, 200)
    write_manifest(tmp_path, 6)
    code, out, err = await work.run("--budget", "1")
    assert code == 3, err
    assert err.count("the budget cap holds back") == 1
    quiet = await Workdir(tmp_path, sim, 200, progress=("--quiet",)).run("--budget", "1")
    assert quiet[1].splitlines() == [
        "batch e2e: 2 of 6 done (4 pending), $0.73 billed, stopped by the budget cap, exit 3"
    ]
    assert "held back by the budget: 4 jobs ($1.47); a budget $1.47 higher sends them all" in out
    code, out, err = await work.run("--budget", "2.47")  # $1.4668 held back: rounded up
    assert code == 0, err
    assert "held back" not in out + err
