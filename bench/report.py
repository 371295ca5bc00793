"""From the scenarios' figures to the headline numbers, the verdicts and the table.

``headline`` picks one number per figure under the keys the issue fixes (the JSON's top level);
``rows`` lays them out beside their reference (the naive client, the plain download loop) and
their target; ``markdown`` renders the table, which is both printed and written next to the JSON.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEYS = (
    "utilisation",
    "submit_rate_ratio",
    "status_calls_per_job",
    "naive_status_calls_per_job",
    "latency_p50_s",
    "latency_p99_s",
    "download_ratio",
    "cpu_ms_per_job",
    "rss_mb_1k",
    "rss_mb_10k",
    "rss_mb_100k",
    "resume_s_100k",
    "ledger_tps",
    "status_s_100k",
    "report_s_100k",
    "validate_s_100k",
    "export_rss_mb_100k",
)
#: The commands of ``interactive`` that should not grow with the ledger (``report`` in every
#: format; ``export`` in memory only).
REPORTS = ("report", "report_csv", "report_json", "report_html")
EXPORTS = ("export_csv", "export_json", "export_events")
SIZE_KEYS = ("rss_mb_1k", "rss_mb_10k", "rss_mb_100k")


def dig(details: dict[str, Any], *path: str) -> Any:
    """``details[a][b]...``, or None when any step is missing."""
    value: Any = details
    for step in path:
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return value


def sizes(details: dict[str, Any]) -> list[dict[str, Any]]:
    """The scale runs, smallest first."""
    runs = details.get("scale") or {}
    return sorted((v for k, v in runs.items() if k.isdigit()), key=lambda v: int(v["jobs"]))


def interactive_sizes(details: dict[str, Any]) -> list[dict[str, Any]]:
    """The ledgers of the interactive step, smallest first."""
    runs = details.get("interactive") or {}
    return sorted((v for k, v in runs.items() if k.isdigit()), key=lambda v: int(v["jobs"]))


def slowest(run: dict[str, Any], names: tuple[str, ...], figure: str = "wall_s") -> float | None:
    """The largest ``figure`` of the commands ``names`` in one interactive run."""
    values = [dig(run, name, figure) for name in names]
    known = [v for v in values if v is not None]
    return max(known) if known else None


def headline(details: dict[str, Any]) -> dict[str, float | None]:
    """One number per figure (None where a scenario failed)."""
    runs = sizes(details)
    full = [r for r in runs if not r.get("bounded")]
    values: dict[str, float | None] = {
        "utilisation": dig(details, "steady", "utilisation"),
        "submit_rate_ratio": dig(details, "rate", "submit_rate_ratio"),
        "status_calls_per_job": dig(details, "steady", "status_calls_per_job"),
        "naive_status_calls_per_job": dig(details, "naive", "status_calls_per_job"),
        "latency_p50_s": dig(details, "steady", "latency_p50_s"),
        "latency_p99_s": dig(details, "steady", "latency_p99_s"),
        "download_ratio": dig(details, "download", "download_ratio"),
        "cpu_ms_per_job": full[-1].get("cpu_ms_per_job") if full else None,
        "resume_s_100k": next((dig(r, "resume", "resume_s") for r in runs if "resume" in r), None),
        "ledger_tps": dig(details, "ledger", "transition_per_s"),
    }
    large = (interactive_sizes(details) or [{}])[-1]
    values["status_s_100k"] = slowest(large, ("status", "status_json"))
    values["report_s_100k"] = slowest(large, REPORTS)
    values["validate_s_100k"] = slowest(large, ("validate", "estimate"))
    values["export_rss_mb_100k"] = slowest(large, EXPORTS, "peak_rss_mb")
    for key, run in zip(SIZE_KEYS, runs, strict=False):
        values[key] = run.get("peak_rss_mb")
    return {key: values.get(key) for key in KEYS}


def configured_429s(details: dict[str, Any]) -> int | None:
    """429s served while the limits were configured (steady, limits-configured and rate runs)."""
    counts = [
        dig(details, name, "rate_limited") for name in ("steady", "limits_configured", "rate")
    ]
    known = [c for c in counts if c is not None]
    return sum(known) if known else None


def rss_growth(details: dict[str, Any]) -> list[float]:
    """Peak RSS added per 1,000 more jobs between consecutive sizes (MB)."""
    runs = sizes(details)
    return [
        (b["peak_rss_mb"] - a["peak_rss_mb"]) / ((b["jobs"] - a["jobs"]) / 1000)
        for a, b in itertools.pairwise(runs)
    ]


def _at_most(limit: float) -> Callable[[Any], bool | None]:
    return lambda v: None if v is None else v <= limit


def _at_least(limit: float) -> Callable[[Any], bool | None]:
    return lambda v: None if v is None else v >= limit


def _recovered_in(details: dict[str, Any], limit_s: float) -> bool | None:
    """Whether the unconfigured run got back to >= 90 % utilisation within ``limit_s``."""
    if dig(details, "limits_unconfigured", "recovered") is False:
        return False  # measured, and it never did
    return _at_most(limit_s)(dig(details, "limits_unconfigured", "recovery_s"))


def _realtime_wall_ok(details: dict[str, Any]) -> bool | None:
    """Whether the orchestrator finished the small real-time batch no later than the naive one."""
    naive = dig(details, "realtime", "naive", "wall_s")
    if naive is None:
        return None
    return _at_most(naive)(dig(details, "realtime", "orchestrator", "wall_s"))


def _export_flat(details: dict[str, Any]) -> bool | None:
    """Whether export's peak RSS at the largest ledger is within 1.5 x the smallest's."""
    runs = interactive_sizes(details)
    if len(runs) < 2:
        return None
    small, large = (slowest(run, EXPORTS, "peak_rss_mb") for run in (runs[0], runs[-1]))
    return None if small is None or large is None else large <= 1.5 * small


def verdicts(values: dict[str, Any], details: dict[str, Any]) -> dict[str, bool | None]:
    """Each target of the issue: met (True), missed (False) or not measured (None)."""
    growth = rss_growth(details)
    return {
        "utilisation >= 95%": _at_least(0.95)(values["utilisation"]),
        "zero 429s with limits configured": _at_most(0)(configured_429s(details)),
        "recovery to >= 90% within 60 s": _recovered_in(details, 60.0),
        "<= 0.2 status requests per job": _at_most(0.2)(values["status_calls_per_job"]),
        "CPU <= 1 ms per job": _at_most(1.0)(values["cpu_ms_per_job"]),
        "peak RSS <= 200 MB at 100k": _at_most(200)(values["rss_mb_100k"]),
        "RSS grows at most linearly": None if len(growth) < 2 else growth[1] <= 1.1 * growth[0],
        "resume start-up <= 2 s at 100k": _at_most(2.0)(values["resume_s_100k"]),
        "download >= 90% of plain loop": _at_least(0.9)(values["download_ratio"]),
        "real time: completion -> noticed p99 <= 3 s": _at_most(3.0)(
            dig(details, "realtime", "orchestrator", "noticed_p99_s")
        ),
        "real time: last file -> exit <= 0.5 s": _at_most(0.5)(
            dig(details, "realtime", "orchestrator", "last_file_to_exit_s")
        ),
        "real time: wall time <= naive": _realtime_wall_ok(details),
        "status <= 1 s at 100k": _at_most(1.0)(values["status_s_100k"]),
        "report <= 1 s at 100k": _at_most(1.0)(values["report_s_100k"]),
        "validate and estimate <= 3 s at 100k": _at_most(3.0)(values["validate_s_100k"]),
        "export memory constant": _export_flat(details),
        "view pages <= 1 s at 100k": _view_pages_ok(details),
        "view server <= 200 MB at 100k": _at_most(200)(dig(details, "view", "peak_rss_mb")),
    }


#: The view's pages the issue times (bench/view.py).
VIEW_PAGES = ("batches_page", "gallery_first_page")


def _view_pages_ok(details: dict[str, Any]) -> bool | None:
    """Whether each view page answers within 1 s, cold (the first ask) and warm (the median)."""
    times = [
        dig(details, "view", page, key) for page in VIEW_PAGES for key in ("cold_s", "median_s")
    ]
    return None if None in times else max(times) <= 1.0


def fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    """A number for the table: ``n/a`` when missing, thousands separators, a unit."""
    if value is None:
        return "n/a"
    if isinstance(value, float) and unit == "%":
        return f"{100 * value:.1f} %"
    text = f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"
    return f"{text} {unit}".rstrip()


@dataclass(frozen=True)
class Row:
    figure: str
    measured: str
    reference: str
    target: str
    verdict: str = ""


def mark(ok: bool | None) -> str:
    return {True: "met", False: "MISSED", None: ""}[ok]


def markdown(rows: list[Row], header: list[str]) -> str:
    """A GitHub table, aligned so it also reads well on a terminal."""
    cells = [["figure", "orchestrator", "reference", "target", "verdict"]]
    cells += [[r.figure, r.measured, r.reference, r.target, r.verdict] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(5)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join([*header, "", *lines, ""])


def write(results: dict[str, Any], table: str, folder: Path, name: str) -> tuple[Path, Path]:
    """``<name>.json`` and ``<name>.md`` in ``folder`` (written whole, then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / f"{name}.json", folder / f"{name}.md"
    for path, text in zip(
        paths, (json.dumps(results, indent=2, default=str) + "\n", table), strict=True
    ):
        temp = path.with_suffix(path.suffix + ".tmp")
        temp.write_text(text)
        temp.replace(path)
    return paths
