"""A small batch in real time: how long a user waits, the orchestrator beside the naive poller.

Why it exists: most runs people start are small, and the other API scenarios hide what a small
one costs. At time scale 20 with 400 jobs a 2-second sweep interval is a tenth of a real second
and a few seconds of start-up or shutdown vanish in a minutes-long batch; here 6 jobs of 23.3 s
on a 3-slot account (3 more backlogged) run at time scale 1, so every figure is in the seconds a
user sits waiting. Each client gets its own fresh simulator, one after the other (about 50 s of
real time each); the orchestrator is measured as it is, whatever its poller does.

For each client:

* ``wall_s``: spawn (or the start of ``run()``) → exit, split exactly into start-up (→ the
  first job created at the simulator) + the simulator's own span (first created → last
  completed: the ideal, what no client can beat) + last completion → last file + last file →
  exit;
* completion → noticed p50 / p99 (the ledger's first ``completed`` event, or the naive poll that
  saw it), in API seconds (= real seconds at scale 1, still mapped with ``simdata.clock_map``);
* status requests, per job, and list calls per second.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import analysis, simdata, workload
from bench.config import Plan
from bench.naive import NaiveClient
from bench.procs import SimProcess, run_orchestrator
from bench.scenarios import Figures, Workspace, client_env, run_figures

LIST_ROUTE = "GET /jobs"


@dataclass(frozen=True)
class Seen:
    """What one client run left behind, in wall-clock epoch seconds."""

    spawned: float  #: the process was spawned (orchestrator) / ``run()`` was called (naive)
    exited: float  #: the process was reaped / ``run()`` returned
    done: Sequence[tuple[str, float]]  #: (remote id, file complete)
    noticed: Sequence[tuple[str, float]]  #: (remote id, first seen finished by the client)


@dataclass(frozen=True)
class Sim:
    """The simulator's records after a run, and its clock mapped onto ours."""

    stats: dict[str, Any]
    jobs: list[dict[str, Any]]
    clock: simdata.ClockMap


def sim_options(plan: Plan) -> dict[str, Any]:
    """The small real-time account (see ``config``)."""
    return {
        "time_scale": 1.0,
        "concurrency": plan.realtime_concurrency,
        "backlog": plan.realtime_backlog,
        "duration_s": plan.realtime_duration_s,
        "seed": 1,
    }


def in_flight(plan: Plan) -> int:
    return plan.realtime_concurrency + plan.realtime_backlog


def ideal_s(plan: Plan) -> float:
    """Real seconds of whole waves (scale 1): the simulator's finish with instant submission."""
    waves = -(-plan.realtime_jobs // plan.realtime_concurrency)
    return waves * plan.realtime_duration_s


def _timeout_s(plan: Plan) -> float:
    return 3 * ideal_s(plan) + 60


def _stamps(sim: Sim, key: str) -> list[float]:
    """``key`` (created_at / completed_at) of every job that has it, as wall epoch seconds."""
    return [sim.clock.to_wall(simdata.epoch_s(j[key])) for j in sim.jobs if j.get(key)]


def _last(pairs: Sequence[tuple[str, float]]) -> float | None:
    return max((t for _, t in pairs), default=None)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def timeline_figures(seen: Seen, sim: Sim) -> Figures:
    """The wall time and the four parts it splits into (real seconds)."""
    created, completed = _stamps(sim, "created_at"), _stamps(sim, "completed_at")
    first_created = min(created, default=None)
    last_completed = max(completed, default=None)
    last_file = _last(seen.done)
    return {
        "wall_s": seen.exited - seen.spawned,
        "startup_s": _minus(first_created, seen.spawned),
        "sim_finish_s": _minus(last_completed, first_created),
        "last_completion_to_last_file_s": _minus(last_file, last_completed),
        "last_file_to_exit_s": _minus(seen.exited, last_file),
        "last_completion_to_exit_s": _minus(seen.exited, last_completed),
    }


def request_figures(seen: Seen, sim: Sim, jobs: int) -> Figures:
    """Status requests (list sweeps + per-job GETs), per job, and list calls per second."""
    requests: dict[str, int] = sim.stats["requests"]
    status = simdata.status_requests(sim.stats)
    wall = seen.exited - seen.spawned
    lists = requests.get(LIST_ROUTE, 0)
    return {
        "status_requests": status,
        "status_requests_per_job": status / jobs,
        "list_calls": lists,
        "list_calls_per_s": lists / wall if wall > 0 else None,
        "requests": requests,
        "rate_limited": sim.stats["rate_limited"],
    }


def figures(seen: Seen, sim: Sim, jobs: int) -> Figures:
    """Everything one client run is reported with."""
    noticed = analysis.latencies(sim.jobs, seen.noticed, sim.clock)
    files = analysis.latencies(sim.jobs, seen.done, sim.clock)
    return {
        "jobs": jobs,
        "completed": sum(1 for j in sim.jobs if j["status"] == "completed"),
        "done": len(seen.done),
        **timeline_figures(seen, sim),
        "noticed_p50_s": analysis.percentile(noticed, 0.5),
        "noticed_p99_s": analysis.percentile(noticed, 0.99),
        "noticed_max_s": max(noticed, default=None),
        "noticed_s": sorted(noticed),
        "latency_p50_s": analysis.percentile(files, 0.5),
        "latency_max_s": max(files, default=None),
        **request_figures(seen, sim, jobs),
    }


async def _sim_records(url: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return await simdata.stats(url), await simdata.jobs(url)


def _ledger_times(rows: list[tuple[str, str]]) -> list[tuple[str, float]]:
    return [(rid, simdata.epoch_s(at)) for rid, at in rows]


async def orchestrator_run(plan: Plan, parent: Path) -> Figures:
    """``orchestrator run`` on its own fresh simulator, with ``--poll-min`` and the limits."""
    space = Workspace.make(parent, "realtime-orchestrator")
    manifest = workload.write_manifest(space.root, plan.realtime_jobs, "realtime")
    extra = ["--poll-min", f"{plan.realtime_poll_min_s:g}", "--max-in-flight", str(in_flight(plan))]
    with SimProcess(sim_options(plan), space.root / "sim.log") as sim:
        clock = await simdata.clock_map(sim.url)
        args = space.run_args(manifest, sim.url, 1.0, *extra)
        env = client_env("bench-realtime")
        run = await run_orchestrator(args, env, space.root, timeout_s=_timeout_s(plan))
        exited = time.time()  # wait4 returned just now: this is when the user gets the prompt
        stats, sim_jobs = await _sim_records(sim.url)
    seen = Seen(
        spawned=exited - run.wall_s,
        exited=exited,
        done=_ledger_times(workload.done_rows(space.ledger)),
        noticed=_ledger_times(workload.noticed_rows(space.ledger)),
    )
    shutil.rmtree(space.out, ignore_errors=True)
    return {
        **run_figures(run),
        **figures(seen, Sim(stats, sim_jobs, clock), plan.realtime_jobs),
        "poll_min_s": plan.realtime_poll_min_s,
    }


async def naive_run(plan: Plan, parent: Path) -> Figures:
    """The naive per-job 5-second poller on its own fresh simulator, same settings."""
    space = Workspace.make(parent, "realtime-naive")
    with SimProcess(sim_options(plan), space.root / "sim.log") as sim:
        clock = await simdata.clock_map(sim.url)
        client = NaiveClient(sim.url, "bench-realtime-naive", 1.0, space.out, in_flight(plan))
        spawned = time.time()
        result = await asyncio.wait_for(client.run(plan.realtime_jobs), _timeout_s(plan))
        exited = time.time()
        stats, sim_jobs = await _sim_records(sim.url)
    shutil.rmtree(space.out, ignore_errors=True)
    seen = Seen(spawned=spawned, exited=exited, done=result.done, noticed=result.noticed)
    return {
        **figures(seen, Sim(stats, sim_jobs, clock), plan.realtime_jobs),
        "polls": result.polls,
        "failed": result.failed,
    }


async def realtime(plan: Plan, parent: Path) -> Figures:
    """Both runs, one after the other, and the ideal they are measured against."""
    ours = await orchestrator_run(plan, parent)
    theirs = await naive_run(plan, parent)
    return {
        "jobs": plan.realtime_jobs,
        "concurrency": plan.realtime_concurrency,
        "backlog": plan.realtime_backlog,
        "duration_s": plan.realtime_duration_s,
        "ideal_s": ideal_s(plan),
        "orchestrator": ours,
        "naive": theirs,
        "wall_vs_naive": analysis.ratio(ours.get("wall_s"), theirs.get("wall_s")),
    }
