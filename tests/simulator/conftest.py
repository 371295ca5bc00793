"""Fixtures for the simulator tests: one real aiohttp client session per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session over loopback, closed after the test."""
    async with aiohttp.ClientSession() as session:
        yield session
