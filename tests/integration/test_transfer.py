"""One file from one URL: what a failed transfer leaves behind and how it is reported."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from orchestrator import errors
from orchestrator.transfer import fetch, part_paths
from tests.hostile.support import free_port


async def test_a_refused_connection_is_a_connection_error_not_a_truncation(tmp_path: Path) -> None:
    """A media host that refuses the connection is reported as such, and leaves no file."""
    target = tmp_path / "clip.mp4"
    url = f"http://127.0.0.1:{free_port()}/videos/clip.mp4?sig=secret"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(errors.DownloadError) as caught:
            await fetch(session, url, target)
    assert not isinstance(caught.value, errors.Truncated)
    assert "cannot connect to the media host" in caught.value.message
    assert "secret" not in str(caught.value)  # signatures stay out of messages
    assert not target.exists()
    assert not any(p.exists() for p in part_paths(target))
