"""`export --picks`: a real batch's picked clips linked into a folder with their list."""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import EXIT_JOBS_FAILED, EXIT_OK, InputError
from orchestrator.jobs import JobRecord
from orchestrator.ledger import Ledger
from orchestrator.ledger.review_queries import Picked
from orchestrator.picks import Exported, deliver, export_picks
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import Outcome, ledger_rows, manifest_text, run_manifest


async def _batch(simulator: StartSimulator, tmp_path: Path, count: int = 4) -> Outcome:
    """A finished batch ``b`` of ``count`` clips, ``b/j<n>.mp4`` under its out_dir."""
    sim = await simulator(time_scale=1000)
    outcome = await run_manifest(sim, tmp_path, manifest_text(count))
    assert outcome.summary.exit_code == 0
    return outcome


async def _rows(outcome: Outcome) -> dict[str, JobRecord]:
    return {row.entry_id: row for row in await ledger_rows(outcome.ledger_path)}


async def _mark(outcome: Outcome, **marks: Any) -> None:
    """``_mark(outcome, j0="pick", j1="reject")``."""
    rows = await _rows(outcome)
    async with Ledger.open(outcome.ledger_path) as ledger:
        for entry_id, mark in marks.items():
            assert await ledger.set_mark(rows[entry_id].key, mark)


async def _export(outcome: Outcome, folder: Path) -> Exported:
    async with Ledger.open(outcome.ledger_path, readonly=True) as ledger:
        return await export_picks(ledger, "b", folder)


def _listed(folder: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((folder / "picks.csv").read_text())))


async def test_the_picked_clips_are_linked_and_listed(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Picked clips only, hard-linked at their output paths, listed with prompt, params, price."""
    outcome = await _batch(simulator, tmp_path)
    await _mark(outcome, j0="pick", j1="reject", j2="pick")
    folder = tmp_path / "deliver"
    done = await _export(outcome, folder)
    assert (done.linked, done.copied, done.present, done.left_out) == (2, 0, 0, [])
    assert done.exit_code == EXIT_OK
    rows = await _rows(outcome)
    for entry_id in ("j0", "j2"):
        target = folder / "b" / f"{entry_id}.mp4"
        assert target.samefile(outcome.out_dir / "b" / f"{entry_id}.mp4")
    assert sorted(p.name for p in (folder / "b").iterdir()) == ["j0.mp4", "j2.mp4"]
    listed = _listed(folder)
    assert [line["id"] for line in listed] == ["j0", "j2"]
    first = listed[0]
    assert list(first) == ["id", "prompt", "model", "params", "price", "file", "sha256"]
    request = dict(rows["j0"].request)
    assert first["prompt"] == request.pop("prompt") == "shot number 0"
    assert json.loads(first["params"]) == request
    assert "prompt" not in first["params"]
    assert (first["model"], first["price"]) == ("kling/kling-2.5", "0.366700")  # 5 s of Kling
    assert first["price"] == f"{rows['j0'].price_micro / 1_000_000:.6f}"
    assert first["file"] == "b/j0.mp4"
    assert first["sha256"] == rows["j0"].sha256
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


async def test_exporting_again_changes_nothing(simulator: StartSimulator, tmp_path: Path) -> None:
    """A second export finds every clip already there and writes the same list."""
    outcome = await _batch(simulator, tmp_path)
    await _mark(outcome, j1="pick", j3="pick")
    folder = tmp_path / "deliver"
    await _export(outcome, folder)
    listed = (folder / "picks.csv").read_text()
    inode = (folder / "b" / "j1.mp4").stat().st_ino
    again = await _export(outcome, folder)
    assert (again.linked, again.copied, again.present) == (0, 0, 2)
    assert (folder / "picks.csv").read_text() == listed
    assert (folder / "b" / "j1.mp4").stat().st_ino == inode


async def test_a_clip_is_copied_where_it_cannot_be_linked(
    simulator: StartSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Across filesystems (EXDEV) the clip is copied whole; a later export knows it by content."""
    outcome = await _batch(simulator, tmp_path)
    await _mark(outcome, j0="pick")

    def cross_device(source: Any, target: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    folder = tmp_path / "deliver"
    done = await _export(outcome, folder)
    assert (done.linked, done.copied) == (0, 1)
    copy, source = folder / "b" / "j0.mp4", outcome.out_dir / "b" / "j0.mp4"
    assert not copy.samefile(source)
    assert copy.read_bytes() == source.read_bytes()
    again = await _export(outcome, folder)
    assert (again.copied, again.present) == (0, 1)


async def test_a_different_file_in_the_way_stops_the_export_before_anything_changes(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """A target holding other bytes is named in the error; nothing is linked, no list written."""
    outcome = await _batch(simulator, tmp_path)
    await _mark(outcome, j0="pick", j2="pick")
    folder = tmp_path / "deliver"
    (folder / "b").mkdir(parents=True)
    stranger = folder / "b" / "j2.mp4"
    stranger.write_bytes(b"someone else's clip")
    with pytest.raises(InputError, match=r"j2\.mp4 is already there") as raised:
        await _export(outcome, folder)
    assert str(stranger) in str(raised.value)
    assert sorted(p.name for p in (folder / "b").iterdir()) == ["j2.mp4"]
    assert stranger.read_bytes() == b"someone else's clip"
    assert not (folder / "picks.csv").exists()


async def test_a_missing_or_changed_clip_is_reported_and_left_out(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Picks whose file is gone or altered are named, one line each; the rest are delivered."""
    outcome = await _batch(simulator, tmp_path)
    await _mark(outcome, j0="pick", j1="pick", j2="pick")
    (outcome.out_dir / "b" / "j1.mp4").unlink()
    changed = outcome.out_dir / "b" / "j2.mp4"
    data = bytearray(changed.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte differs: only the sha256 tells
    changed.write_bytes(bytes(data))
    folder = tmp_path / "deliver"
    done = await _export(outcome, folder)
    assert done.exit_code == EXIT_JOBS_FAILED
    assert len(done.left_out) == 2
    assert done.left_out[0].startswith("left out j1: ")
    assert done.left_out[1].startswith("left out j2: ")
    assert all("not the file the ledger recorded" in line for line in done.left_out)
    assert [line["id"] for line in _listed(folder)] == ["j0"]
    assert sorted(p.name for p in (folder / "b").iterdir()) == ["j0.mp4"]


async def test_a_picked_job_that_is_not_done_is_left_out(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """A pick with no clip on disk yet (a new take still pending) is reported with its state."""
    outcome = await _batch(simulator, tmp_path, count=2)
    await _mark(outcome, j0="pick", j1="reject")
    async with Ledger.open(outcome.ledger_path) as ledger:
        (made,) = await ledger.add_rerolls("b")
    await _mark(outcome, **{made.take or "": "pick"})
    done = await _export(outcome, tmp_path / "deliver")
    assert done.left_out == [f"left out {made.take}: it is pending, not a clip on disk"]
    assert done.delivered == 1


async def test_an_unknown_batch_is_bad_input(simulator: StartSimulator, tmp_path: Path) -> None:
    """A batch the ledger does not know is refused, and no folder is made."""
    outcome = await _batch(simulator, tmp_path, count=1)
    async with Ledger.open(outcome.ledger_path, readonly=True) as ledger:
        with pytest.raises(InputError, match="no batch 'nope'"):
            await export_picks(ledger, "nope", tmp_path / "deliver")
    assert not (tmp_path / "deliver").exists()


def test_a_file_where_a_folder_must_be_made_is_refused(tmp_path: Path) -> None:
    """The checks run before any change: a file in place of the clips' folder is named."""
    source = tmp_path / "out" / "clips" / "a.mp4"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"clip")
    sha256 = hashlib.sha256(b"clip").hexdigest()
    folder = tmp_path / "deliver"
    folder.mkdir()
    (folder / "clips").write_text("not a folder")
    pick = Picked("k", "a", "m", '{"prompt": "p"}', "done", 1, "clips/a.mp4", 4, sha256)
    with pytest.raises(InputError, match="clips is a file, not a folder"):
        deliver([pick], tmp_path / "out", folder)
    assert os.listdir(folder) == ["clips"]
