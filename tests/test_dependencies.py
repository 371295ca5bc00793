"""The versions `make test-lowest` installs are the ``>=`` bounds of pyproject.toml, no others.

``.ci/lowest-versions.txt`` pins each runtime dependency and test extra at its lower bound; a
bound raised (or a dependency added) without its pin would leave that bound untested.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / ".ci" / "lowest-versions.txt"


def lower_bounds() -> dict[str, Version | None]:
    """Name -> its ``>=`` version (None without exactly one), for dependencies and test extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds: dict[str, Version | None] = {}
    for line in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(line)
        lows = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        bounds[canonicalize_name(requirement.name)] = lows[0] if len(lows) == 1 else None
    return bounds


def pins() -> dict[str, Version]:
    """Name -> version of each ``name==version`` line of the constraints file."""
    pinned: dict[str, Version] = {}
    for line in PINS.read_text().splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            name, equals, version = text.partition("==")
            assert equals, f"{PINS.name}: {line!r} is not name==version"
            pinned[canonicalize_name(name.strip())] = Version(version.strip())
    return pinned


def test_each_lower_bound_is_what_the_lowest_versions_run_installs() -> None:
    assert pins() == lower_bounds()
