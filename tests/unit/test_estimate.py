"""costs.estimate: integer sums of the jobs' prices, in a stable JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.manifest.manifest import Manifest, load_manifest
from orchestrator.money.costs import estimate, estimate_json
from tests.samples import MINIMAL

#: The minimal manifest plus a job on a second model.
WITH_CITY = (
    MINIMAL
    + """\
  - id: city
    model: kling/kling-1
    prompt: a neon city
"""
)


def manifest(tmp_path: Path, extra: str = "") -> Manifest:
    path = tmp_path / "jobs.yaml"
    path.write_text(extra + WITH_CITY)
    return load_manifest(path)


def test_estimate_json_has_the_documented_shape(tmp_path: Path) -> None:
    """Every documented key, with integer micro-USD and usd = micro / 1e6."""
    shape = estimate_json(estimate(manifest(tmp_path)))
    assert list(shape) == [
        "batch", "total_usd", "total_micro", "jobs_count", "by_model", "jobs",
        "budget_usd", "fits_budget", "spec_date", "usd_per_cu",
    ]  # fmt: skip
    assert shape["batch"] == "demo"
    assert shape["total_micro"] == 366_700 + 735_234 + 110_193
    assert shape["total_usd"] == 1.212127
    assert shape["jobs_count"] == 3
    assert shape["by_model"] == {
        "kling/kling-1": {"jobs": 1, "usd": 0.110193, "micro": 110_193},
        "kling/kling-2.5": {"jobs": 2, "usd": 1.101934, "micro": 1_101_934},
    }
    assert shape["jobs"][0] == {
        "id": "eagle",
        "model": "kling/kling-2.5",
        "usd": 0.3667,
        "micro": 366_700,
    }
    assert [job["id"] for job in shape["jobs"]] == ["eagle", "harbour", "city"]
    assert shape["budget_usd"] is None
    assert shape["fits_budget"] is None
    assert shape["spec_date"] == "2026-05"
    assert shape["usd_per_cu"] == "0.0018335"
    assert json.loads(json.dumps(shape)) == shape


def test_totals_are_exact_integer_sums(tmp_path: Path) -> None:
    """The total is the sum of the jobs' micro-USD, and of the models' totals."""
    result = estimate(manifest(tmp_path))
    assert result.total_micro == sum(job.micro for job in result.jobs)
    assert result.total_micro == sum(cost.micro for cost in result.by_model.values())
    assert all(isinstance(job.micro, int) for job in result.jobs)


def test_the_manifest_budget_is_used_and_compared(tmp_path: Path) -> None:
    """budget_usd from the manifest fills budget_usd / fits_budget."""
    shape = estimate_json(estimate(manifest(tmp_path, "budget_usd: 1\n")))
    assert shape["budget_usd"] == 1.0
    assert shape["fits_budget"] is False


def test_an_explicit_budget_wins_over_the_manifest(tmp_path: Path) -> None:
    """estimate(manifest, budget_micro=...) replaces the manifest's budget."""
    result = estimate(manifest(tmp_path, "budget_usd: 1\n"), budget_micro=1_212_127)
    assert result.fits_budget is True
    assert estimate_json(result)["budget_usd"] == 1.212127


def test_estimate_accepts_a_list_of_specs(tmp_path: Path) -> None:
    """A plain list of JobSpecs is estimated too (batch from the first); empty is zero."""
    specs = manifest(tmp_path).specs
    assert estimate(specs[:1]).total_micro == 366_700
    assert estimate(specs[:1]).batch == "demo"
    empty = estimate_json(estimate([]))
    assert (empty["total_micro"], empty["jobs_count"], empty["by_model"]) == (0, 0, {})
