"""``python -m bench [--quick] [--only NAME ...] [--keep]``: run the scenarios, print and save.

Each scenario runs in turn (they would disturb each other's timings on two cores); one that
fails is recorded with its error and the rest still run, so a table always comes out. The full
run writes ``bench/results/latest.{json,md}``; ``--quick`` (a smoke test at a tenth of the size)
and ``--only`` write ``quick.*`` / ``partial.*`` instead, so they never overwrite the figures the
README quotes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import interactive, ledger_tps, machine, realtime, report, rows, scale, scenarios, view
from bench.config import Plan

RESULTS = Path(__file__).parent / "results"
Step = Callable[[Plan, Path], Awaitable[dict[str, Any]]]


async def _ledger(plan: Plan, tmp: Path) -> dict[str, Any]:
    return asdict(await ledger_tps.measure(tmp / "ledger"))


async def _limits_configured(plan: Plan, tmp: Path) -> dict[str, Any]:
    return await scenarios.limits(plan, tmp, configured=True)


async def _limits_unconfigured(plan: Plan, tmp: Path) -> dict[str, Any]:
    return await scenarios.limits(plan, tmp, configured=False)


async def _sim_throughput(plan: Plan, tmp: Path) -> dict[str, Any]:
    """The existing simulator benchmark, in a child process (it pins CPUs)."""
    args = [
        sys.executable,
        "-m",
        "bench.sim_throughput",
        "--jobs",
        "3000",
        "--seconds",
        "2",
        "--json",
    ]
    root = Path(__file__).parent.parent
    done = await asyncio.to_thread(subprocess.run, args, cwd=root, capture_output=True, text=True)
    rates: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return rates


STEPS: dict[str, Step] = {
    "ledger": _ledger,
    "steady": scenarios.steady,
    "naive": scenarios.naive,
    "limits_configured": _limits_configured,
    "limits_unconfigured": _limits_unconfigured,
    "rate": scenarios.rate,
    "download": scenarios.download,
    "scale": scale.all_sizes,
    "sim_throughput": _sim_throughput,
    "realtime": realtime.realtime,
    "interactive": interactive.interactive,
    "view": view.view,
}


async def run_steps(plan: Plan, names: list[str], tmp: Path) -> dict[str, Any]:
    """Every named step; a failing one is kept as ``{"error": ...}``."""
    details: dict[str, Any] = {}
    for name in names:
        started = time.perf_counter()
        try:
            details[name] = await STEPS[name](plan, tmp)
        except Exception as exc:
            traceback.print_exc()
            details[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"[bench] {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return details


def _results(
    plan: Plan, details: dict[str, Any], wall_s: float, host: dict[str, object]
) -> dict[str, Any]:
    values = report.headline(details)
    return {
        **values,
        "targets": report.verdicts(values, details),
        "machine": host,
        "wall_s": wall_s,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench  (.venv/bin/python -m bench)",
        "plan": asdict(plan),
        "details": details,
    }


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A smoke test at a tenth of the size.")
    parser.add_argument("--only", nargs="+", choices=list(STEPS), help="Run only these steps.")
    parser.add_argument("--keep", action="store_true", help="Keep the temp folder (logs, ledgers).")
    return parser.parse_args()


def main() -> None:
    options = _parse()
    plan = Plan().quick() if options.quick else Plan()
    names = options.only or list(STEPS)
    host = machine.describe()
    print(f"[bench] {machine.one_line(host)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    os.environ["XDG_STATE_HOME"] = str(tmp / "state")  # the runs' account registries, not yours
    try:
        details = asyncio.run(run_steps(plan, names, tmp))
    finally:
        if options.keep:
            print(f"[bench] kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results = _results(plan, details, time.perf_counter() - started, host)
    header = [f"Machine: {machine.one_line(host)}", f"Wall time: {results['wall_s']:.0f} s"]
    table = report.markdown(rows.build(results, details, results["targets"], plan), header)
    name = "quick" if options.quick else "partial" if options.only else "latest"
    paths = report.write(results, table, RESULTS, name)
    print(table)
    print(f"wrote {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    main()
