"""The Python API (`import orchestrator`) against a real simulator: run, jobs, report, estimate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import orchestrator
from orchestrator.errors import ConfigError, InputError
from orchestrator.jobs import JobState
from tests.conftest import StartSimulator

TOKEN = "sk-test-api-0000"


def _manifest(root: Path, count: int = 3) -> Path:
    path = root / "jobs.yaml"
    jobs = "\n".join(f"  - id: c{i}\n    prompt: scene {i}" for i in range(count))
    path.write_text(
        f"batch: api\ndefaults:\n  model: kling/kling-2.5\n  duration: 5\njobs:\n{jobs}\n"
    )
    return path


async def test_run_then_read_jobs_and_report_match_the_simulators_bill(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """The blocking functions (from a thread, as a script would) agree with Krea's records."""
    sim = await simulator(time_scale=200)
    manifest, ledger = _manifest(tmp_path), tmp_path / "ledger.db"
    summary = await asyncio.to_thread(
        orchestrator.run, manifest, ledger=ledger, out=tmp_path / "out", api_key=TOKEN,
        api_base=sim.url, time_scale=200,
    )  # fmt: skip
    assert summary.exit_code == 0
    assert summary.counts == {JobState.DONE: 3}
    billed = sum(j["charged_micro"] for j in sim.jobs())

    rows = await asyncio.to_thread(orchestrator.jobs, ledger, batch="api")
    assert [r.entry_id for r in rows] == ["c0", "c1", "c2"]
    assert all((tmp_path / "out" / (r.output_path or "")).is_file() for r in rows)
    figures = await asyncio.to_thread(orchestrator.report, ledger)
    assert figures["totals"]["billed_micro"] == billed
    assert (await orchestrator.areport(ledger, batch="api"))["totals"] == figures["totals"]
    assert len(await orchestrator.ajobs(ledger)) == 3


def test_estimate_prices_a_loaded_manifest(tmp_path: Path) -> None:
    """`estimate(load_manifest(...))`: jobs and a total that is the sum of its models."""
    result = orchestrator.estimate(orchestrator.load_manifest(_manifest(tmp_path, 2)))
    assert result.jobs_count == 2
    assert result.total_micro > 0
    assert result.total_micro == sum(c.micro for c in result.by_model.values())


async def test_blocking_calls_inside_an_event_loop_point_to_the_async_ones(tmp_path: Path) -> None:
    """In Jupyter's loop, `jobs()` refuses with a hint instead of deadlocking."""
    with pytest.raises(ConfigError, match=r"await orchestrator\.arun"):
        orchestrator.jobs(tmp_path / "ledger.db")


async def test_a_missing_ledger_or_batch_is_input_error(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """As the CLI's exit 2: InputError naming what is missing; no ledger file is created."""
    with pytest.raises(InputError, match="no ledger at"):
        await orchestrator.ajobs(tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()
    sim = await simulator(time_scale=200)
    ledger = tmp_path / "ledger.db"
    await orchestrator.arun(
        _manifest(tmp_path, 1), ledger=ledger, out=tmp_path / "out", api_key=TOKEN,
        api_base=sim.url, time_scale=200,
    )  # fmt: skip
    with pytest.raises(InputError, match="no batch 'nope'"):
        await orchestrator.areport(ledger, batch="nope")


def test_without_a_key_the_error_says_how_to_give_one(tmp_path: Path) -> None:
    """The hint names the API's own way (api_key=), not a CLI flag."""
    with pytest.raises(ConfigError, match="api_key="):
        orchestrator.run(_manifest(tmp_path), ledger=tmp_path / "l.db", out=tmp_path / "out")
