"""Entries of one shape are unrolled, checked and priced once: each job still comes out as if alone.

entries.py keeps a valid entry's shape (all of it but its id and text prompt) and planning.py the
results of a shape's first job; these tests hold every later job of a shape to what loading its
entry alone gives, and every problem to its own entry's line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ManifestErrors
from orchestrator.jobs import JobSpec
from orchestrator.manifest.manifest import load_manifest
from orchestrator.money.costs import estimate, estimate_json

HEAD = "batch: shapes\nprices: {runway/aleph: 0.5}\ndefaults:\n  model: kling/kling-2.5\njobs:\n"
#: Entries that share shapes, differing in id, prompt text, key order and value types.
ENTRIES = [
    "  - id: a1\n    prompt: first\n    duration: 5\n",
    "  - id: a2\n    prompt: 'quote \" back \\ tab\t é 😀 \u2028'\n    duration: 5\n",
    "  - id: a3\n    duration: 5\n    prompt: order differs\n",
    "  - id: a4\n    prompt: five as a float\n    duration: 5.0\n",
    "  - prompt: no id, so named after this prompt\n    duration: 5\n",
    "  - id: e1\n    prompt: expanded\n    model: kling/kling-1\n    expand: {duration: [5, 10]}\n"
    "    takes: 2\n",
    "  - id: e2\n    prompt: expanded again\n    model: kling/kling-1\n"
    "    expand: {duration: [5, 10]}\n    takes: 2\n",
    "  - id: o1\n    prompt: own output\n    output: '{batch}/{base_id}/{take}-{prompt}'\n",
    "  - id: o2\n    prompt: own output too\n    output: '{batch}/{base_id}/{take}-{prompt}'\n",
]


def _write(tmp_path: Path, name: str, entries: list[str]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(HEAD + "".join(entries))
    return path


def _job(spec: JobSpec) -> tuple[object, ...]:
    """Everything a job is but its position (the request's key order included)."""
    request = list(spec.request.items())
    return spec.key, spec.entry_id, spec.model, request, spec.price_micro, spec.output_path


def test_every_job_of_a_shape_is_what_its_entry_alone_gives(tmp_path: Path) -> None:
    together = load_manifest(_write(tmp_path, "all", ENTRIES)).specs
    alone = [
        _job(spec)
        for index, entry in enumerate(ENTRIES)
        for spec in load_manifest(_write(tmp_path, f"one{index}", [entry])).specs
    ]
    assert [_job(spec) for spec in together] == alone
    assert len({spec.key for spec in together}) == len(together)


def test_values_equal_in_python_but_not_in_json_are_different_shapes(tmp_path: Path) -> None:
    entries = [f"  - id: s{n}\n    prompt: p\n    params: {{x: {v}}}\n" for n, v in enumerate(
        ["0.0", "-0.0", "1", "1.0", "true"]
    )]  # fmt: skip
    path = _write(tmp_path, "values", entries)
    with pytest.raises(ManifestErrors) as caught:  # kling has no field x: one message per job
        load_manifest(path)
    assert [e.job for e in caught.value.errors] == ["s0", "s1", "s2", "s3", "s4"]
    seeds = [
        f"  - id: s{n}\n    prompt: p\n    duration: {v}\n" for n, v in enumerate(["5", "5.0"])
    ]
    specs = load_manifest(_write(tmp_path, "seeds", seeds)).specs
    assert [spec.request["duration"] for spec in specs] == [5, 5.0]
    assert [type(spec.request["duration"]) for spec in specs] == [int, float]


def test_a_later_entry_of_a_valid_shape_reports_its_own_problems(tmp_path: Path) -> None:
    entries = [
        "  - id: good\n    prompt: fine\n",
        "  - id: .dot\n    prompt: fine\n",
        "  - id: typed\n    prompt: 7\n",
        "  - id: good\n    prompt: again\n",
        "  - id: runway0\n    prompt: short\n    model: runway/aleph\n"
        "    init_video: https://example.com/a.mp4\n",
        "  - id: runway\n    prompt: '" + "x" * 1001 + "'\n    model: runway/aleph\n"
        "    init_video: https://example.com/a.mp4\n",
        "  - id: runway2\n    prompt: '" + "y" * 1001 + "'\n    model: runway/aleph\n"
        "    init_video: https://example.com/a.mp4\n",
    ]
    with pytest.raises(ManifestErrors) as caught:
        load_manifest(_write(tmp_path, "problems", entries))
    found = [(e.line, e.job, e.field) for e in caught.value.errors]
    assert found == [
        (8, ".dot", "id"),
        (11, "typed", "prompt"),
        (12, "good", None),
        (19, "runway", "prompt"),
        (23, "runway2", "prompt"),
    ]


def test_validate_and_estimate_need_no_keys_nor_a_list_of_jobs(tmp_path: Path) -> None:
    path = _write(tmp_path, "all", ENTRIES)
    keyed, unkeyed = load_manifest(path), load_manifest(path, keyed=False)
    assert {spec.key for spec in unkeyed.specs} == {""}
    assert [_job(spec)[1:] for spec in unkeyed.specs] == [_job(spec)[1:] for spec in keyed.specs]
    full, totals = estimate(keyed), estimate(unkeyed, itemized=False)
    assert totals.jobs == []
    assert estimate_json(totals) == {**estimate_json(full), "jobs": []}
