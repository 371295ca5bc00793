"""What the figures were measured on: CPU model, cores, memory, Python, SQLite, aiohttp, kernel.

Printed above the table and stored in the JSON, because every figure here is a property of the
machine as much as of the code.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from importlib import metadata
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
    except OSError:
        return None
    return round(int(first.split()[1]) / 1024 / 1024, 1)


def describe() -> dict[str, object]:
    """The machine, as a flat dict of short values."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "aiohttp": metadata.version("aiohttp"),
        "kernel": platform.release(),
    }


def one_line(machine: dict[str, object]) -> str:
    """``Intel Xeon, 2 cores, 23.5 GB, Python 3.11.7, SQLite 3.40.1, aiohttp 3.14.5``."""
    return (
        f"{machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, "
        f"Python {machine['python']}, SQLite {machine['sqlite']}, aiohttp {machine['aiohttp']}, "
        f"Linux {machine['kernel']}"
    )
