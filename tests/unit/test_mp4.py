"""The MP4 box walker accepts a complete file and refuses any cut, and HTML under a .mp4 name."""

from __future__ import annotations

import struct
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import NotMp4
from orchestrator.mp4 import check_mp4

SAMPLE = resources.files("orchestrator").joinpath("data/sample.mp4").read_bytes()


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    return path


def test_the_sample_clip_is_complete(tmp_path: Path) -> None:
    """The packaged clip walks as ftyp, moov, free, mdat."""
    assert check_mp4(write(tmp_path, SAMPLE)) == ["ftyp", "moov", "free", "mdat"]


def test_an_appended_free_box_is_still_complete(tmp_path: Path) -> None:
    """Padding appended as a top-level free box (what the simulator serves) is valid."""
    pad = b"job-123" + bytes(1000)
    data = SAMPLE + struct.pack(">I4s", 8 + len(pad), b"free") + pad
    assert check_mp4(write(tmp_path, data))[-1] == "free"


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(SAMPLE) - 1))
def test_every_truncation_is_refused(tmp_path_factory: pytest.TempPathFactory, cut: int) -> None:
    """Cutting the file at any byte makes the walker refuse it."""
    path = tmp_path_factory.mktemp("cut") / "clip.mp4"
    path.write_bytes(SAMPLE[:cut])
    with pytest.raises(NotMp4):
        check_mp4(path)


def test_an_html_error_page_is_refused(tmp_path: Path) -> None:
    """A 403 page saved under the final name is not taken for a video."""
    with pytest.raises(NotMp4):
        check_mp4(write(tmp_path, b"<!DOCTYPE html><html><body>403 Forbidden</body></html>"))


def test_a_file_without_media_data_is_refused(tmp_path: Path) -> None:
    """ftyp and moov alone are not a video."""
    with pytest.raises(NotMp4, match="mdat"):
        check_mp4(write(tmp_path, SAMPLE[:982]))
