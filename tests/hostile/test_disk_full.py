"""A full disk during downloads: pause with one clear message, keep no partial file, resume.

Three ways to run out of room, from the cheapest to the most real:

* ``/dev/full`` as the temp file's handle: the write path meets ENOSPC (any Linux, no root);
* ``RLIMIT_FSIZE`` on a CLI run: writes fail with EFBIG past the limit (no root); raising the
  limit from outside with ``prlimit`` is "space returns" for the same, still running process;
* a 1 MiB tmpfs as the output folder, grown while the run waits (root only; skipped otherwise,
  the two tests above cover the same behaviour without root).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import errors
from orchestrator.jobs import JobState
from orchestrator.simulator import media_sha256_for
from orchestrator.transfer import part_paths, room_for, write_chunk
from tests.conftest import StartSimulator
from tests.e2e.cli_support import TOKEN
from tests.hostile.support import Recorder, cli, lines_until, run_recorded
from tests.integration.pipeline_support import (
    assert_exactly_once,
    ledger_rows,
    manifest_text,
)

S = JobState
MB = 1_000_000


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_enospc_on_the_write_path_is_disk_full_and_drops_the_temp_file(tmp_path: Path) -> None:
    """P4.6: a write meeting ENOSPC (/dev/full) is DiskFull with its size; the temp file goes."""
    target = tmp_path / "clip.mp4"
    part, _ = part_paths(target)
    part.write_bytes(b"the first bytes of a download")
    with open("/dev/full", "wb") as full, pytest.raises(errors.DiskFull) as caught:
        write_chunk(full, part, target, b"x" * 65536, 300_000)
    assert caught.value.needed == 300_000
    assert caught.value.message.startswith(f"no space left on the device for {target}")
    assert not part.exists(), "the temp file of a failed write was kept"
    assert not target.exists()


def test_room_for_sees_a_per_file_size_limit_that_free_space_hides(tmp_path: Path) -> None:
    """EFBIG (ulimit -f) counts as no room although the disk has space; lifting it is room again."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    assert room_for(tmp_path, 10 * MB)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4 * MB, hard))
    try:
        assert not room_for(tmp_path, 10 * MB)
        assert room_for(tmp_path, 1 * MB)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert room_for(tmp_path, 10 * MB)


def _write_manifest(root: Path, count: int) -> Path:
    path = root / "jobs.yaml"
    path.write_text(manifest_text(count, batch="full"))
    return path


def _final_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*.mp4") if not p.name.startswith(".")]


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="needs Linux prlimit")
async def test_a_file_size_limit_pauses_downloads_and_the_same_run_resumes(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """EFBIG mid-download: one pause message, no final file; lifting the limit finishes the run."""
    sim = await simulator(time_scale=200, media_bytes=3 * MB, concurrency=4)
    manifest = _write_manifest(tmp_path, 1)  # one job: it completes before its download resumes
    out, ledger = tmp_path / "out", tmp_path / "ledger.db"

    def limit_file_size() -> None:  # in the child: 2 MB per file, the hard limit left open
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 * MB, resource.RLIM_INFINITY))

    proc = await asyncio.create_subprocess_exec(
        *cli("run", str(manifest), "--api-base", sim.url, "--ledger", str(ledger),
             "--out", str(out), "--time-scale", "200", "--progress", "plain"),
        env={**os.environ, "KREA_API_KEY": TOKEN, "ORCHESTRATOR_SEED": "1"},
        preexec_fn=limit_file_size, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        paused = await lines_until(proc.stderr, "downloads paused", seen)
        assert "no space left on the device for" in paused
        assert not _final_files(out), "a partial file was given its final name"
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        await lines_until(proc.stderr, "downloads resume", seen)
        _, rest = await proc.communicate()
        err = "".join(seen) + rest.decode()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert err.count("downloads paused") == 1, err
    rows = await ledger_rows(ledger, "full")
    assert all(r.state is S.DONE for r in rows)
    for row in rows:
        path = out / (row.output_path or "")
        assert path.stat().st_size == 3 * MB
        assert row.sha256 == media_sha256_for(row.remote_id or "", 3 * MB)
    assert not list(out.rglob(".*.part"))


@contextlib.contextmanager
def _tmpfs(mountpoint: Path, size: str) -> Iterator[None]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a tmpfs needs root"
)
async def test_a_full_tmpfs_pauses_downloads_until_it_grows(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P4.6 on a real filesystem: a 1 MiB tmpfs pauses 3 MB downloads; grown, all finish."""
    sim = await simulator(time_scale=1000, media_bytes=3 * MB, concurrency=3)
    out = tmp_path / "out"
    recorder = Recorder()
    with _tmpfs(out, "1m"):
        run = asyncio.create_task(
            run_recorded(sim, tmp_path, manifest_text(3), recorder, out_dir=out)
        )
        await recorder.wait_for(lambda r: bool(r.noted("downloads paused")) or run.done())
        assert not run.done(), "the run ended instead of pausing"
        assert not _final_files(out)
        assert (await ledger_rows(tmp_path / "ledger.db"))[0].state is not S.DONE
        await asyncio.to_thread(
            subprocess.run, ["mount", "-o", "remount,size=64m", str(out)], check=True
        )
        outcome = await run
        await assert_exactly_once(sim, outcome, 3)
    assert len(recorder.noted("downloads paused")) == 1
    assert recorder.noted("space is back")
