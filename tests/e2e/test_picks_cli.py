"""`orchestrator export --batch B --picks --to DIR` as users type it, after a real run."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from orchestrator.ledger import Ledger
from tests.conftest import StartSimulator
from tests.e2e.cli_support import Workdir, write_manifest

pytestmark = pytest.mark.e2e


async def _finished(simulator: StartSimulator, tmp_path: Path, *picked: int) -> Workdir:
    """A run of three clips to its end, with clips ``picked`` marked as picks."""
    sim = await simulator(time_scale=1000)
    work = Workdir(tmp_path, sim, 1000)
    write_manifest(tmp_path, 3)
    code, _, err = await work.run()
    assert code == 0, err
    async with Ledger.open(work.ledger) as ledger:
        keys = {row.entry_id: row.key for row in await ledger.jobs(batch="e2e")}
        for n in picked:
            assert await ledger.set_mark(keys[f"clip{n:04d}"], "pick")
    return work


async def test_the_picks_land_in_the_folder_with_their_list(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """Exit 0, the picked clips linked at their paths, picks.csv listing them, a summary line."""
    work = await _finished(simulator, tmp_path, 0, 2)
    folder = tmp_path / "deliver"
    code, out, err = await work.call("export", "--batch", "e2e", "--picks", "--to", str(folder))
    assert code == 0, err
    assert "2 picked clips of batch 'e2e'" in out
    for name in ("clip0000.mp4", "clip0002.mp4"):
        assert (folder / "e2e" / name).samefile(work.out / "e2e" / name)
    assert not (folder / "e2e" / "clip0001.mp4").exists()
    listed = list(csv.DictReader(io.StringIO((folder / "picks.csv").read_text())))
    assert [(r["id"], r["file"]) for r in listed] == [
        ("clip0000", "e2e/clip0000.mp4"),
        ("clip0002", "e2e/clip0002.mp4"),
    ]
    assert listed[0]["prompt"] == "scene 0, slow pan"


async def test_a_missing_pick_is_reported_and_the_exit_code_says_so(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """A picked clip deleted from disk: one line on stderr naming it, exit 1, the rest exported."""
    work = await _finished(simulator, tmp_path, 0, 1)
    (work.out / "e2e" / "clip0001.mp4").unlink()
    folder = tmp_path / "deliver"
    code, out, err = await work.call("export", "--batch", "e2e", "--picks", "--to", str(folder))
    assert code == 1
    (left_out,) = [line for line in err.splitlines() if line.startswith("left out")]
    assert left_out.startswith("left out clip0001: ")
    assert "1 picked clip of batch 'e2e'" in out
    assert (folder / "e2e" / "clip0000.mp4").exists()


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--batch", "e2e", "--picks"], id="picks-without-to"),
        pytest.param(["--batch", "e2e", "--to", "somewhere"], id="to-without-picks"),
        pytest.param(["--picks", "--to", "somewhere"], id="without-batch"),
    ],
)
async def test_picks_and_to_go_together(tmp_path: Path, args: list[str]) -> None:
    """Half of `--picks --to DIR` is one usage error (exit 2), before any ledger is read."""
    work = Workdir(tmp_path, None, 1)  # type: ignore[arg-type]  # no simulator is needed
    code, _, err = await work.call("export", *args)
    assert code == 2
    assert "--picks, --to DIR and --batch go together" in err
    assert not (tmp_path / "somewhere").exists()
