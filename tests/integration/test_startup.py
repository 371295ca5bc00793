"""A run's start: an unchanged manifest is not loaded again; syncs are atomic; recovery in sets.

Plans are synced into a real ledger on ``tmp_path``; the recovery test drives a real simulator.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.budget import Budget
from orchestrator.client import KreaClient
from orchestrator.clock import Clock
from orchestrator.config import Settings
from orchestrator.errors import InputError, ManifestErrors
from orchestrator.jobs import JobSpec, JobState
from orchestrator.ledger import Batch, Ledger
from orchestrator.limits import InFlightWindow, Pacer
from orchestrator.manifest.manifest import load_manifest
from orchestrator.pipeline import Pipeline
from orchestrator.startup import Plan, prepare, recover, sync_manifest
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import manifest_text

S = JobState
ROOT = Path(__file__).resolve().parents[2]
PNG = ROOT / "data" / "start-frame.png"


def settings(tmp_path: Path, out: str = "out") -> Settings:
    return Settings(api_key="k", ledger_path=tmp_path / "ledger.db", out_dir=tmp_path / out)


def write(tmp_path: Path, text: str, name: str = "jobs.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def synced(path: Path, config: Settings) -> Plan:
    """Prepare and sync ``path`` as `run` does; returns the plan it started from."""
    plan = await prepare(path, config)
    async with Ledger.open(config.ledger_path) as ledger:
        await sync_manifest(ledger, plan, config)
    return plan


def dump(ledger_path: Path) -> list[tuple[object, ...]]:
    """Every batch and job row, for before/after comparisons."""
    with sqlite3.connect(ledger_path) as db:
        batches = db.execute("SELECT * FROM batches ORDER BY name").fetchall()
        jobs = db.execute("SELECT * FROM jobs ORDER BY key").fetchall()
    return [*batches, *jobs]


# -- an unchanged manifest --------------------------------------------------------------------


async def test_an_unchanged_manifest_is_not_loaded_again(tmp_path: Path) -> None:
    """The second prepare finds the plan in the ledger: no jobs loaded, the same header."""
    (tmp_path / "a.png").write_bytes(PNG.read_bytes())
    extra = "limits: {max_in_flight: 3, requests_per_second: 1.5}\nbudget_usd: 2\n"
    text = manifest_text(2, extra=extra) + "  - {id: img, prompt: x, start_image: a.png}\n"
    path, config = write(tmp_path, text), settings(tmp_path)
    first = await synced(path, config)
    assert first.manifest is not None
    again = await prepare(path, config)
    assert again.manifest is None
    assert again.header == load_manifest(path).header
    assert again.header.files == {first.header.local_files[str(tmp_path / "a.png")]: str(
        tmp_path / "a.png")}  # fmt: skip


def _append_comment(tmp_path: Path, config: Settings) -> Settings:
    with (tmp_path / "jobs.yaml").open("a") as out:
        out.write("# edited\n")
    return config


def _other_out_dir(tmp_path: Path, config: Settings) -> Settings:
    return config.with_(out_dir=tmp_path / "elsewhere")


def _new_local_file(tmp_path: Path, config: Settings) -> Settings:
    (tmp_path / "a.png").write_bytes(PNG.read_bytes() + b"\0")
    return config


def _new_planner(tmp_path: Path, config: Settings) -> Settings:
    with sqlite3.connect(config.ledger_path) as db:
        text = db.execute("SELECT synced_plan FROM batches").fetchone()[0]
        db.execute(
            "UPDATE batches SET synced_plan = ?", (text.replace('"planner": "', '"planner": "0'),)
        )
    return config


@pytest.mark.parametrize(
    "change",
    [_append_comment, _other_out_dir, _new_local_file, _new_planner],
    ids=lambda f: f.__name__,
)
async def test_any_change_loads_and_checks_the_manifest_again(tmp_path: Path, change) -> None:
    """Other bytes, folder, local file content or planning code: the plan is not reused."""
    (tmp_path / "a.png").write_bytes(PNG.read_bytes())
    path = write(tmp_path, manifest_text(2) + "  - {id: img, prompt: x, start_image: a.png}\n")
    config = settings(tmp_path)
    await synced(path, config)
    assert (await prepare(path, config)).manifest is None
    config = change(tmp_path, config)
    assert (await prepare(path, config)).manifest is not None
    await synced(path, config)
    assert (await prepare(path, config)).manifest is None  # recorded again


async def test_a_moved_manifest_is_loaded_again(tmp_path: Path) -> None:
    """Local paths are relative to the manifest's folder: the same bytes elsewhere are reloaded."""
    path, config = write(tmp_path, manifest_text(2)), settings(tmp_path)
    await synced(path, config)
    (tmp_path / "sub").mkdir()
    moved = Path(shutil.copy(path, tmp_path / "sub" / "jobs.yaml"))
    assert (await prepare(moved, config)).manifest is not None


async def test_a_bad_manifest_changes_nothing_even_when_its_batch_is_synced(
    tmp_path: Path,
) -> None:
    """A broken edit of a synced manifest is refused before anything is written."""
    path, config = write(tmp_path, manifest_text(2)), settings(tmp_path)
    await synced(path, config)
    before = dump(config.ledger_path)
    write(tmp_path, manifest_text(2).replace("duration: 5", "duration: 7"))
    with pytest.raises(ManifestErrors, match="duration"):
        await prepare(path, config)
    assert dump(config.ledger_path) == before


async def test_a_sync_that_fails_midway_leaves_the_previous_plan_whole(tmp_path: Path) -> None:
    """Batch row, synced_plan and jobs commit together: a failure rolls every one back."""
    path, config = write(tmp_path, manifest_text(2)), settings(tmp_path)
    await synced(path, config)
    before = dump(config.ledger_path)
    specs = load_manifest(write(tmp_path, manifest_text(3))).specs

    def failing() -> Iterator[JobSpec]:
        yield from specs
        raise OSError("the disk went away")

    async with Ledger.open(config.ledger_path) as ledger:
        record = Batch("b", str(path), "new-sha", str(tmp_path / "out"))
        with pytest.raises(OSError, match="disk went away"):
            await ledger.sync_plan("b", failing(), {}, record=record, synced_plan="{}")
    assert dump(config.ledger_path) == before


async def test_a_changed_output_path_sends_done_jobs_back_in_the_same_sync(tmp_path: Path) -> None:
    """A done job whose path the manifest changed is completed again, with its new path."""
    path, config = write(tmp_path, manifest_text(2)), settings(tmp_path)
    await synced(path, config)
    async with Ledger.open(config.ledger_path) as ledger:
        job = (await ledger.jobs(batch="b"))[0]
        for to, old in ((S.SUBMITTING, S.PENDING), (S.SUBMITTED, S.SUBMITTING),
                        (S.COMPLETED, S.SUBMITTED), (S.DOWNLOADING, S.COMPLETED),
                        (S.DONE, S.DOWNLOADING)):  # fmt: skip
            await ledger.transition(job.key, to, expect=old, cause="test")
    write(tmp_path, manifest_text(2, extra='output: "flat/{id}"\n'))
    await synced(path, config)
    async with Ledger.open(config.ledger_path, readonly=True) as ledger:
        moved = await ledger.job(job.key)
        assert moved is not None
        assert (moved.state, moved.output_path) == (S.COMPLETED, "flat/j0.mp4")
        causes = [e.cause for e in await ledger.events(key=job.key)]
    assert causes[-1] == "output path changed in the manifest"


# -- two batches, one folder ------------------------------------------------------------------


@pytest.mark.parametrize(("a_template", "c_out"), [("{id}", "out"), ("c/{id}", "out/c")])
async def test_another_batchs_file_is_refused_by_name_changing_nothing(
    tmp_path: Path, a_template: str, c_out: str
) -> None:
    """Batch c aiming at batch a's files (same folder, or one inside it) is refused whole."""
    config = settings(tmp_path)
    a = manifest_text(2, batch="a", extra=f'output: "{a_template}"\n')
    await synced(write(tmp_path, a), config)
    before = dump(config.ledger_path)
    c = write(tmp_path, manifest_text(3, batch="c", extra='output: "{id}"\n'), "c.yaml")
    with pytest.raises(InputError, match=r"'j0\.mp4'.*job 'j0' of batch 'a'"):
        await synced(c, settings(tmp_path, c_out))
    assert dump(config.ledger_path) == before


async def test_batches_in_their_own_folders_or_paths_share_nothing(tmp_path: Path) -> None:
    """The default template ({batch}/{id}) and separate folders never clash."""
    config = settings(tmp_path)
    await synced(write(tmp_path, manifest_text(2, batch="a")), config)
    await synced(write(tmp_path, manifest_text(2, batch="c"), "c.yaml"), config)
    flat = 'output: "{id}"\n'
    await synced(write(tmp_path, manifest_text(2, batch="d", extra=flat), "d.yaml"), config)
    e = write(tmp_path, manifest_text(2, batch="e", extra=flat), "e.yaml")
    await synced(e, settings(tmp_path, "other"))
    async with Ledger.open(config.ledger_path, readonly=True) as ledger:
        assert sorted(await ledger.batch_names()) == ["a", "c", "d", "e"]


async def test_jobs_a_manifest_dropped_own_no_file(tmp_path: Path) -> None:
    """A pending job no longer in its batch's manifest frees its path for another batch."""
    config, flat = settings(tmp_path), 'output: "{id}"\n'
    a = write(tmp_path, manifest_text(2, batch="a", extra=flat), "a.yaml")
    await synced(a, config)
    write(tmp_path, manifest_text(2, batch="a", extra=flat).replace("j1", "k1"), "a.yaml")
    await synced(a, config)
    c = write(tmp_path, manifest_text(2, batch="c", extra=flat).replace("j0", "x0"), "c.yaml")
    await synced(c, config)  # c's j1 writes j1.mp4, which a's dropped j1 will never write


# -- recovery ---------------------------------------------------------------------------------


async def test_recovery_moves_every_leftover_and_restores_the_accounts(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Crash leftovers move with their events; window, spend and download queue are restored."""
    sim = await simulator()
    path, config = write(tmp_path, manifest_text(7)), settings(tmp_path)
    await synced(path, config)
    async with Ledger.open(config.ledger_path) as ledger:
        keys = [r.key for r in await ledger.jobs(batch="b")]
        walks = {
            0: [S.SUBMITTING],  # crashed mid-POST -> ambiguous (in flight)
            1: [S.SUBMITTING, S.SUBMITTED],  # in flight
            2: [S.SUBMITTING, S.SUBMITTED, S.COMPLETED, S.DOWNLOADING],  # -> completed
            3: [S.SUBMITTING, S.SUBMITTED, S.COMPLETED, S.DOWNLOADING, S.DONE],  # file gone
            4: [S.SUBMITTING, S.SUBMITTED, S.FAILED],  # retried
            5: [S.SUBMITTING, S.SUBMITTED, S.COMPLETED],  # billed, to download
        }
        for index, states in walks.items():
            for old, new in zip([S.PENDING, *states], states, strict=False):
                status = {S.COMPLETED: "completed", S.FAILED: "failed"}.get(new)
                fields = {"remote_status": status} if status else {}
                if new is S.DONE:
                    fields |= {"bytes": 10, "output_path": "b/j3.mp4"}
                await ledger.transition(keys[index], new, expect=old, cause="test", **fields)
        events_before = len(await ledger.events(batch="b"))
        async with KreaClient.connect(sim.url, "k") as client:
            pipe = Pipeline(ledger=ledger, client=client, batch="b", out_dir=config.out_dir,
                            clock=Clock(1.0), window=InFlightWindow(10), pacer=Pacer(None),
                            budget=Budget(), rng=random.Random(1), retry_failed=1)  # fmt: skip
            await recover(pipe)
        states = {r.key: r.state for r in await ledger.jobs(batch="b")}
        events_after = len(await ledger.events(batch="b"))
    assert [states[k] for k in keys] == [S.AMBIGUOUS, S.SUBMITTED, S.COMPLETED, S.COMPLETED,
                                         S.PENDING, S.COMPLETED, S.PENDING]  # fmt: skip
    assert events_after - events_before == 4  # one event per job moved
    assert pipe.retried == {keys[4]: 1}
    assert pipe.window.in_flight == 2
    assert pipe.budget.exposure_micro == 2 * 366_700
    assert pipe.budget.billed_micro == 3 * 366_700  # jobs 2, 3 and 5 were completed remotely
    queued = [pipe.completed.get_nowait() for _ in range(pipe.completed.qsize())]
    assert queued == [keys[2], keys[3], keys[5]]


async def test_a_synced_plan_json_names_what_it_was_made_from(tmp_path: Path) -> None:
    """synced_plan records the planner, the manifest's path and sha256, and the output folder."""
    path, config = write(tmp_path, manifest_text(1)), settings(tmp_path)
    plan = await synced(path, config)
    with sqlite3.connect(config.ledger_path) as db:
        record = json.loads(db.execute("SELECT synced_plan FROM batches").fetchone()[0])
    assert record["sha256"] == plan.header.sha256
    assert record["manifest_path"] == str(path)
    assert record["out_dir"] == str(tmp_path / "out")
    assert set(record) >= {"planner", "limits", "budget_micro", "local_files", "batch"}
