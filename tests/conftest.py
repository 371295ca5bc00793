"""Shared fixtures: an isolated environment for every test and a factory for real simulators."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from orchestrator.simulator import RunningSimulator, running_simulator

StartSimulator = Callable[..., Awaitable[RunningSimulator]]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's key, API base or output folders."""
    for name in ("KREA_API_KEY", "KREA_API_KEY_FILE", "KREA_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCHESTRATOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # the account registries


@pytest.fixture
async def simulator() -> AsyncIterator[StartSimulator]:
    """Factory: ``sim = await simulator(concurrency=2, ...)``; each is stopped after the test."""
    async with AsyncExitStack() as stack:

        async def start(**options: Any) -> RunningSimulator:
            return await stack.enter_async_context(running_simulator(**options))

        yield start
