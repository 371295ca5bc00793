"""Slow and stalling media hosts: an inactivity timeout cuts a stall, and Range resumes the rest.

A "slowloris" host sends a chunk, then nothing for longer than ``download_timeout_s``. The
download must neither hang on it nor start from zero each time (RELIABILITY P4.3, P4.4): what
arrived before each stall is kept and the next attempt asks only for the rest.

The host runs in the test's own event loop, beside the run, so a busy machine can delay either
side by a fraction of a second. So each test keeps its host's gaps twenty times longer (a
stall) or shorter (a steady host) than the timeout: a delay of that size changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import StartSimulator
from tests.hostile.support import Recorder, run_recorded
from tests.integration.pipeline_support import assert_exactly_once, manifest_text

#: A file of four chunks: three full ones (a stall after each) and a short last one.
MEDIA_BYTES, CHUNK_BYTES = 200_000, 65_536


async def test_a_stalling_media_host_is_cut_by_the_timeout_and_resumed_to_the_end(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P4.4: a chunk, then 10 s of silence, timeout 0.5 s: each try keeps its bytes; files whole."""
    sim = await simulator(
        time_scale=1000, media_bytes=MEDIA_BYTES, media_chunk_bytes=CHUNK_BYTES,
        media_chunk_delay_s=10.0,
    )  # fmt: skip
    recorder = Recorder()
    outcome = await run_recorded(
        sim, tmp_path, manifest_text(2), recorder, download_timeout_s=0.5, download_workers=2
    )
    await assert_exactly_once(sim, outcome, 2)
    stalls = recorder.noted("download failed (SocketTimeoutError)")
    # One stall after each full chunk when every try keeps its bytes: 3 per file (a try cut
    # before its first byte, on a very busy machine, adds one); starting over never finishes.
    full_chunks = MEDIA_BYTES // CHUNK_BYTES
    assert 2 * full_chunks <= len(stalls) <= 2 * (full_chunks + 2), recorder.notes


async def test_a_slow_but_steady_host_is_never_cut(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P4.4: a chunk every 0.05 s for 2.4 s under a 1 s inactivity timeout: never cut or retried."""
    chunk_bytes, gap_s, timeout_s = 4_096, 0.05, 1.0
    assert (MEDIA_BYTES // chunk_bytes) * gap_s > 2 * timeout_s  # the whole transfer is longer
    sim = await simulator(
        time_scale=1000, media_bytes=MEDIA_BYTES, media_chunk_bytes=chunk_bytes,
        media_chunk_delay_s=gap_s,
    )  # fmt: skip
    recorder = Recorder()
    outcome = await run_recorded(
        sim, tmp_path, manifest_text(2), recorder, download_timeout_s=timeout_s,
        download_workers=2,
    )  # fmt: skip
    await assert_exactly_once(sim, outcome, 2)
    assert not recorder.noted("download failed"), recorder.notes
