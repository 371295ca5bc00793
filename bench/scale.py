"""CPU and memory per job at 1,000, 10,000 and 100,000 jobs, and the start-up of a resume.

Every size runs the full ``orchestrator run`` (plan, submit, sweep, download, verify) against a
very fast account (see ``config``), so the orchestrator is the bottleneck. Sizes up to
``full_run_max`` run to completion. Larger ones (100,000: about seven minutes of pipeline on two
cores, more than the whole bench may take) plan and sync the entire manifest, then run the
pipeline for ``bounded_run_s`` after their first API request and are stopped with SIGTERM, as a
user's Ctrl-C would. What each figure covers:

* peak RSS: ``ru_maxrss`` of the whole process, planning included (for 100,000, the full plan
  plus the part of the pipeline that ran);
* CPU per job: the child's user + system time / jobs done, start-up included, for full runs;
  ``steady_cpu_ms_per_job`` excludes the start-up (CPU at the first API request, read from
  ``/proc``) and is the only per-job figure given for a bounded run;
* resume start-up: the 100,000-job ledger the bounded run left behind (some done, some in
  flight, most pending) is run again with the same manifest; the figure is the time from spawning
  the process until its first API request reaches the relay in front of the simulator (or until
  it exits, if it had nothing to send). It is stopped right after.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench import workload
from bench.config import Plan
from bench.procs import Relay, RunResult, SimProcess, Stop, run_orchestrator
from bench.scenarios import Figures, Workspace, client_env


def fast_options(plan: Plan) -> dict[str, Any]:
    """The very fast account: the orchestrator, not Krea, limits the pace."""
    return {
        "time_scale": plan.fast_scale,
        "concurrency": plan.fast_concurrency,
        "backlog": plan.fast_backlog,
        "duration_s": plan.fast_duration_s,
    }


def _after_first_request(relay: Relay, seconds: float) -> Stop:
    async def stop() -> None:
        await relay.first.wait()
        await asyncio.sleep(seconds)

    return stop


async def _run(
    plan: Plan, space: Workspace, manifest: Path, url: str, log_dir: Path, stop_after: float | None
) -> RunResult:
    """One `orchestrator run` through a relay; stopped ``stop_after`` s after its first request."""
    workload.ensure_dir(log_dir)
    async with Relay(url) as relay:
        in_flight = str(plan.fast_concurrency + plan.fast_backlog)
        args = space.run_args(manifest, relay.url, plan.fast_scale, "--max-in-flight", in_flight)
        stop = None if stop_after is None else _after_first_request(relay, stop_after)
        return await run_orchestrator(
            args, client_env("bench-scale"), log_dir, timeout_s=600, relay=relay, stop=stop
        )


def _per_job(run: RunResult, done: int, bounded: bool) -> Figures:
    startup_cpu = run.startup_cpu_s or 0.0
    pipeline_s = run.wall_s - (run.first_request_s or 0.0)
    return {
        "cpu_ms_per_job": None if bounded or not done else 1000 * run.cpu_s / done,
        "steady_cpu_ms_per_job": 1000 * (run.cpu_s - startup_cpu) / done if done else None,
        "jobs_per_s": done / pipeline_s if pipeline_s > 0 else None,
    }


def _run_figures(run: RunResult) -> Figures:
    return {
        "exit_code": run.exit_code,
        "stopped": run.stopped,
        "wall_s": run.wall_s,
        "cpu_s": run.cpu_s,
        "peak_rss_mb": run.peak_rss_mb,
        "startup_s": run.first_request_s,
        "startup_cpu_s": run.startup_cpu_s,
        "startup_peak_rss_mb": run.startup_rss_mb,
        "rss_last_mb": run.rss_curve_mb[-1][1] if run.rss_curve_mb else None,
    }


async def one_size(plan: Plan, parent: Path, size: int) -> Figures:
    """The run of ``size`` jobs; for a bounded size, the resume of its ledger too."""
    bounded = size > plan.full_run_max
    space = Workspace.make(parent, f"scale-{size}")
    manifest = workload.write_manifest(space.root, size, f"scale{size}")
    with SimProcess(fast_options(plan), space.root / "sim.log") as sim:
        stop_after = plan.bounded_run_s if bounded else None
        run = await _run(plan, space, manifest, sim.url, space.root / "first", stop_after)
        counts = workload.state_counts(space.ledger)
        resume = await _resume(plan, space, manifest, sim.url) if bounded else None
    done = counts.get("done", 0)
    figures = {"jobs": size, "bounded": bounded, "done": done, "states": counts}
    figures |= _run_figures(run) | _per_job(run, done, bounded)
    if resume is not None:
        figures["resume"] = resume
    return figures


async def _resume(plan: Plan, space: Workspace, manifest: Path, url: str) -> Figures:
    """Run the same manifest on the same ledger again; stop at its first API request."""
    run = await _run(plan, space, manifest, url, space.root / "resume", stop_after=0.0)
    sent = run.first_request_s is not None
    return {
        **_run_figures(run),
        "resume_s": run.first_request_s if sent else run.wall_s,
        "measured_until": "first API request" if sent else "process exit (nothing to send)",
    }


async def plan_cost(parent: Path, size: int) -> Figures:
    """`orchestrator validate` on the ``size``-job manifest: what loading the plan alone costs."""
    space = Workspace.make(parent, f"validate-{size}")
    manifest = workload.write_manifest(space.root, size, f"validate{size}")
    run = await run_orchestrator(
        ["validate", str(manifest)], client_env("none"), space.root, timeout_s=300
    )
    return {"jobs": size, "wall_s": run.wall_s, "cpu_s": run.cpu_s, "peak_rss_mb": run.peak_rss_mb,
            "exit_code": run.exit_code}  # fmt: skip


async def all_sizes(plan: Plan, parent: Path) -> Figures:
    """Every size of ``plan.scale_sizes``, smallest first, and the plan cost of the largest."""
    figures: Figures = {str(size): await one_size(plan, parent, size) for size in plan.scale_sizes}
    figures["validate"] = await plan_cost(parent, max(plan.scale_sizes))
    return figures
