"""Slow and stalling media hosts: an inactivity timeout cuts a stall, and Range resumes the rest.

A "slowloris" host sends a chunk, then nothing for longer than ``download_timeout_s``. The
download must neither hang on it nor start from zero each time (RELIABILITY P4.3, P4.4): what
arrived before each stall is kept and the next attempt asks only for the rest.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import StartSimulator
from tests.hostile.support import Recorder, run_recorded
from tests.integration.pipeline_support import assert_exactly_once, manifest_text


async def test_a_stalling_media_host_is_cut_by_the_timeout_and_resumed_to_the_end(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P4.4: a chunk, 0.4 s of silence, timeout 0.15 s: each try keeps its bytes; files whole."""
    sim = await simulator(
        time_scale=1000, media_bytes=200_000, media_chunk_bytes=65_536, media_chunk_delay_s=0.4
    )
    recorder = Recorder()
    outcome = await run_recorded(
        sim, tmp_path, manifest_text(2), recorder, download_timeout_s=0.15, download_workers=2
    )
    await assert_exactly_once(sim, outcome, 2)
    stalls = recorder.noted("download failed (SocketTimeoutError)")
    # 200,000 bytes in 65,536-byte chunks: about 3 stalls per file when each keeps its chunk
    # (a stall may also come before the first byte); starting over each time never finishes.
    assert 2 * 3 <= len(stalls) <= 2 * 5, recorder.notes


async def test_a_slow_but_steady_host_is_never_cut(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P4.4: chunks every 0.05 s under a 0.15 s inactivity timeout: never cut, never retried."""
    sim = await simulator(
        time_scale=1000, media_bytes=200_000, media_chunk_bytes=16_384, media_chunk_delay_s=0.05
    )
    recorder = Recorder()
    outcome = await run_recorded(
        sim, tmp_path, manifest_text(2), recorder, download_timeout_s=0.15, download_workers=2
    )
    await assert_exactly_once(sim, outcome, 2)
    assert not recorder.noted("download failed"), recorder.notes
