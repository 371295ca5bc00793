"""A command pays for what it uses: `--help`, `status` and `validate` load no more than they need.

Two kinds of check. Which heavy libraries a command loads is exact (``-X importtime`` lists every
module). How long its imports take is held to a budget measured as a ratio to a bare
``python -c pass`` run just before it: a slower or busier machine slows both sides of a pair,
and the median of several pairs drops a pair a burst of load hit on one side. The budget is
well above today's figure (15 to 30 here, beside other work) and well below what eager imports
cost (the package root importing everything made `status` about 60 to 140 times a bare
interpreter).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Times a bare interpreter's import time each command may take (see the docstring).
BUDGET = 50
PAIRS = 7
HEAVY = ("aiohttp", "aiosqlite", "av", "jsonschema", "rich", "yaml")
COMMANDS = {
    "--help": ["--help"],
    "status": ["status", "--ledger", "no-such-ledger.db"],  # exits 2 after loading the command
    "validate": ["validate", str(ROOT / "jobs.yaml.example")],
}
#: What each command may load of HEAVY: status reads SQLite; validate YAML and the schemas.
ALLOWED = {
    "--help": set(),
    "status": {"aiosqlite"},
    "validate": {"aiosqlite", "jsonschema", "yaml"},  # commands.py reads ledgers too
}


def _imports(*args: str) -> dict[str, int]:
    """Each module imported by ``python -X importtime ARGS`` -> its own import time (us)."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", *args], capture_output=True, text=True, cwd=ROOT
    ).stderr
    found = {}
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line:
            own, _, name = line.removeprefix("import time:").split("|")
            if own.strip().isdigit():
                found[name.strip()] = int(own)
    return found


def _total(*args: str) -> int:
    return sum(_imports(*args).values())


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_loads_only_the_libraries_it_uses(command: str) -> None:
    loaded = {name.split(".")[0] for name in _imports("-m", "orchestrator", *COMMANDS[command])}
    assert loaded & set(HEAVY) == ALLOWED[command]


@pytest.mark.parametrize("command", ["--help", "status"])
def test_a_command_imports_within_a_budget_of_a_bare_interpreter(command: str) -> None:
    ratios = sorted(
        _total("-m", "orchestrator", *COMMANDS[command]) / _total("-c", "pass")
        for _ in range(PAIRS)
    )
    median = ratios[PAIRS // 2]
    assert median <= BUDGET, f"{median:.1f} times a bare interpreter (pairs: {ratios})"
