"""Hostile manifests are refused quickly, in bounded memory, and `validate` says so in one line.

Memory is measured in a fresh subprocess (``ru_maxrss`` before and after the load), so neither
pytest's own footprint nor an earlier test's garbage can hide a blow-up.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from orchestrator.manifest.yaml_safe import DEFAULT_MAX_BYTES, MAX_VALUES
from tests.hostile.support import run_cli
from tests.samples import LOL_BOMB

MiB = 1024 * 1024
MEASURE = """\
import json, resource, sys, time
from orchestrator.errors import InputError
from orchestrator.manifest.manifest import load_manifest
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    load_manifest(sys.argv[1])
    error = None
except InputError as caught:
    error = str(caught)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"error": error, "grew_kib": peak - before,
                  "seconds": time.perf_counter() - started}))
"""


async def measure(path: Path) -> dict[str, object]:
    """Load ``path`` in a fresh interpreter: the error text, peak RSS growth and time taken."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", MEASURE, str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    result: dict[str, object] = json.loads(out)
    return result


async def test_the_alias_bomb_is_refused_in_a_second_with_little_memory(tmp_path: Path) -> None:
    """P6.2: the 9-level 'lol' bomb is a ManifestError in < 1 s, growing RSS by < 20 MB."""
    path = tmp_path / "bomb.yaml"
    path.write_text(LOL_BOMB)
    result = await measure(path)
    assert "anchors (&a) are not allowed" in str(result["error"])
    assert f"{path}:1:" in str(result["error"])
    assert int(result["grew_kib"]) < 20 * 1024  # type: ignore[call-overload]
    assert float(result["seconds"]) < 1.0  # type: ignore[arg-type]


async def test_a_file_over_the_size_cap_is_refused_without_reading_past_the_cap(
    tmp_path: Path,
) -> None:
    """A 1 GiB (sparse) manifest is refused before parsing; memory grows by the cap at most."""
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        handle.write(b"batch: b\njobs:\n")
        handle.truncate(1024 * MiB)  # sparse: costs no disk
    result = await measure(path)
    assert "larger than the 64 MiB limit" in str(result["error"])
    assert int(result["grew_kib"]) * 1024 < DEFAULT_MAX_BYTES + 32 * MiB  # type: ignore[call-overload]


async def test_a_document_of_millions_of_tiny_values_is_refused_in_bounded_memory(
    tmp_path: Path,
) -> None:
    """4M empty lists in 12 MB (~900 MB once built) stop at MAX_VALUES, in < 400 MB, with a line."""
    path = tmp_path / "wide.yaml"
    path.write_text("[" + "[]," * 4_000_000 + "[]]\n")
    result = await measure(path)
    assert f"{path}:1: more than {MAX_VALUES:,} values" in str(result["error"])
    assert int(result["grew_kib"]) < 400 * 1024  # type: ignore[call-overload]


def _hostile_manifests(root: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the text its single error line must contain)."""
    canary = root / "canary"
    cases = {
        "python_tag": (
            f"batch: b\njobs:\n  - !!python/object/apply:os.system ['touch {canary}']\n",
            ":3: the tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
        ),
        "alias_bomb": (LOL_BOMB, ":1: anchors (&a) are not allowed"),
        "deep_nesting": ("[" * 5000, ":1: "),  # libyaml's or our own depth limit, both say "nest"
        "duplicate_keys": (
            "batch: b\njobs:\n  - prompt: a\n    prompt: b\n",
            ":4: duplicate key 'prompt' at lines 3 and 4",
        ),
        "bad_utf8": (b"batch: b\njobs: [\xff\xfe]\n", ":2: not UTF-8 text (byte 0xff)"),
        "not_a_mapping": ("- just\n- a list\n", ": a manifest must be a mapping"),
    }
    made = {}
    for name, (content, expected) in cases.items():
        path = root / f"{name}.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        made[name] = (path, f"{path}{expected}")
    return made


@pytest.mark.parametrize(
    "name",
    ["python_tag", "alias_bomb", "deep_nesting", "duplicate_keys", "bad_utf8", "not_a_mapping"],
)
async def test_validate_refuses_hostile_yaml_with_exit_2_and_one_line(
    tmp_path: Path, name: str
) -> None:
    """`orchestrator validate` on hostile YAML: exit 2, one `Error: file:line: ...`, no trace."""
    path, expected = _hostile_manifests(tmp_path)[name]
    done = await run_cli(["validate", str(path)])
    assert done.code == 2, done.err
    assert done.out == ""
    assert done.err.startswith(f"Error: {expected}"), done.err
    assert done.err.count("\n") == 1, done.err
    assert "Traceback" not in done.err
    assert name != "deep_nesting" or "nest" in done.err
    assert not (tmp_path / "canary").exists()
