"""Stills end to end against the simulator: image models sent, verified, named by format."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from orchestrator.image_file import check_image
from orchestrator.simulator import image_bytes_for
from tests.integration.pipeline_support import ledger_rows, run_manifest

STILLS = """\
batch: b
defaults: {aspect_ratio: "16:9", duration: 5}
jobs:
  - id: frame
    model: image/google/nano-banana-pro
    prompt: an old lighthouse keeper on a spiral staircase
  - id: poster
    model: image/luma/uni-1
    prompt: a lighthouse at night, poster style
    output_format: jpeg
    aspect_ratio: null
  - id: shot
    model: kling/kling-2.5
    prompt: the keeper climbs slowly, dust in the light
"""


def media_gets(sim) -> int:  # type: ignore[no-untyped-def]
    requests = sim.stats()["requests"]
    return sum(n for route, n in requests.items() if route.startswith("GET /images/"))


async def test_stills_and_a_clip_land_verified_under_their_formats(
    simulator, tmp_path: Path
) -> None:
    """A PNG still, a JPEG still and a clip: each file is what Krea served, named by format."""
    sim = await simulator(time_scale=1000)
    outcome = await run_manifest(sim, tmp_path, STILLS)
    assert outcome.summary.exit_code == 0
    rows = {r.entry_id: r for r in await ledger_rows(outcome.ledger_path)}
    assert {k: r.output_path for k, r in rows.items()} == {
        "frame": "b/frame.png",
        "poster": "b/poster.jpg",
        "shot": "b/shot.mp4",
    }
    for entry, ext in (("frame", "png"), ("poster", "jpg")):
        path = outcome.out_dir / "b" / f"{entry}.{ext}"
        expected = image_bytes_for(rows[entry].remote_id or "", ext)
        assert path.read_bytes() == expected
        assert rows[entry].sha256 == hashlib.sha256(expected).hexdigest()
        assert check_image(path) == {"png": "png", "jpg": "jpeg"}[ext]
    assert not list((outcome.out_dir / "b").glob("*{ext}*")), "no file under the planned name"
    kinds = {j["job_id"]: j["kind"] for j in sim.jobs()}
    assert [kinds[rows[e].remote_id or ""] for e in ("frame", "poster", "shot")] == [
        "image",
        "image",
        "video",
    ]
    assert outcome.summary.billed_micro == sim.stats()["billed_micro"]


async def test_a_second_run_keeps_the_stills_where_they_are(simulator, tmp_path: Path) -> None:
    """Rerun: the saved x.png is where the plan's x.{ext} wants it, so nothing is fetched."""
    sim = await simulator(time_scale=1000)
    first = await run_manifest(sim, tmp_path, STILLS)
    frame = first.out_dir / "b" / "frame.png"
    stamp, fetched = os.stat(frame).st_mtime_ns, media_gets(sim)
    again = await run_manifest(sim, tmp_path, STILLS)
    assert again.summary.exit_code == 0
    assert media_gets(sim) == fetched == 2
    assert os.stat(frame).st_mtime_ns == stamp
    assert sim.stats()["jobs_created"] == 3


async def test_a_moved_still_is_fetched_to_its_new_folder(simulator, tmp_path: Path) -> None:
    """A new output template moves the still: fetched again, named by its format there."""
    sim = await simulator(time_scale=1000)
    await run_manifest(sim, tmp_path, STILLS)
    moved = await run_manifest(sim, tmp_path, 'output: "stills/{id}"\n' + STILLS)
    assert moved.summary.exit_code == 0
    rows = {r.entry_id: r for r in await ledger_rows(moved.ledger_path)}
    assert rows["frame"].output_path == "stills/frame.png"
    assert rows["shot"].output_path == "stills/shot.mp4"
    assert check_image(moved.out_dir / "stills" / "frame.png") == "png"
    assert sim.stats()["jobs_created"] == 3  # moved, not made again


async def test_a_cut_still_download_is_fetched_again_whole(simulator, tmp_path: Path) -> None:
    """Media GETs cut short (the simulator's truncate fault): never a partial still on disk."""
    sim = await simulator(time_scale=1000, seed=5, fault_truncate_rate=0.5)
    text = STILLS.split("  - id: shot")[0].replace(
        "    output_format", "    takes: 4\n    output_format"
    )
    outcome = await run_manifest(sim, tmp_path, text)
    assert outcome.summary.exit_code == 0
    assert sim.stats()["faults"].get("truncate", 0) >= 2
    names = sorted(path.name for path in (outcome.out_dir / "b").iterdir())
    assert names == ["frame.png", *(f"poster_t{n}.jpg" for n in range(1, 5))]
    for row in await ledger_rows(outcome.ledger_path):
        path = outcome.out_dir / (row.output_path or "")
        assert path.read_bytes() == image_bytes_for(row.remote_id or "", path.suffix[1:])


async def test_an_edited_still_in_another_format_replaces_the_old_file(
    simulator, tmp_path: Path
) -> None:
    """The poster's entry edited from JPEG to PNG: a new job, saved as poster.png, and the old
    poster.jpg is gone, as an edited clip's file is overwritten; the other files stay."""
    sim = await simulator(time_scale=1000)
    first = await run_manifest(sim, tmp_path, STILLS)
    frame = (first.out_dir / "b" / "frame.png").read_bytes()
    edited = await run_manifest(sim, tmp_path, STILLS.replace("output_format: jpeg", ""))
    assert edited.summary.exit_code == 0
    rows = {r.entry_id: r for r in await ledger_rows(edited.ledger_path)}
    assert rows["poster"].output_path == "b/poster.png"
    assert check_image(edited.out_dir / "b" / "poster.png") == "png"
    assert sorted(p.name for p in (edited.out_dir / "b").iterdir()) == [
        "frame.png",
        "poster.png",
        "shot.mp4",
    ]
    assert (edited.out_dir / "b" / "frame.png").read_bytes() == frame
    assert sim.stats()["jobs_created"] == 4


async def test_an_old_still_changed_by_hand_is_left_alone(simulator, tmp_path: Path) -> None:
    """Only a file still as the ledger recorded it is removed: one the user changed is theirs."""
    sim = await simulator(time_scale=1000)
    first = await run_manifest(sim, tmp_path, STILLS)
    old = first.out_dir / "b" / "poster.jpg"
    old.write_bytes(b"retouched by hand")
    edited = await run_manifest(sim, tmp_path, STILLS.replace("output_format: jpeg", ""))
    assert edited.summary.exit_code == 0
    assert old.read_bytes() == b"retouched by hand"
    assert check_image(edited.out_dir / "b" / "poster.png") == "png"
