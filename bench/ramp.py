"""``python -m bench.ramp [LABEL]``: where figure 1's idle slot-seconds go, in one steady run.

Runs the steady scenario's batch once (400 jobs on the realistic account) and splits the
account's idle time (concurrency x span - running seconds, the simulator's own integral) into
the ramp (each of the first C jobs' start after the first one's), the drain (the last moment
minus each of the last C jobs' end) and the rest. With every slot refilled from Krea's backlog,
the rest is zero and the ramp is set by how fast the first POSTs go out: its line says how long
the first 50 and 100 POSTs took, in API seconds. To compare two trees, run it from each with
that tree on ``PYTHONPATH`` (see the README's Benchmarks).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from bench import scenarios, simdata, workload
from bench.config import Plan
from bench.procs import SimProcess, run_orchestrator


async def measure(label: str) -> str:
    """One steady run; its utilisation and where the idle slot-seconds went, as one line."""
    plan = Plan()
    space = scenarios.Workspace.make(Path(tempfile.mkdtemp()), "steady")
    manifest = workload.write_manifest(space.root, plan.steady_jobs, "steady")
    with SimProcess(scenarios.account_options(plan), space.root / "sim.log") as sim:
        args = space.run_args(
            manifest, sim.url, plan.api_scale, "--max-in-flight", str(plan.in_flight)
        )
        env = scenarios.client_env("bench-steady")
        await run_orchestrator(args, env, space.root, timeout_s=300)
        jobs, stats = await simdata.jobs(sim.url), await simdata.stats(sim.url)
    created = sorted(simdata.epoch_s(j["created_at"]) for j in jobs)
    starts = sorted(simdata.epoch_s(j["started_at"]) for j in jobs if j.get("started_at"))
    ends = sorted(simdata.epoch_s(j["completed_at"]) for j in jobs if j.get("completed_at"))
    slots = plan.concurrency
    ramp = sum(start - starts[0] for start in starts[:slots])
    drain = sum(ends[-1] - end for end in ends[-slots:])
    account = simdata.account(stats)
    span, running = account["span_seconds"], account["running_seconds"]
    idle = slots * span - running
    return (
        f"{label}: utilisation {running / (slots * span):.4f}, idle {idle:.1f} slot-s: "
        f"ramp {ramp:.1f}, drain {drain:.1f}, rest {idle - ramp - drain:.1f}; first 50 POSTs "
        f"{created[49] - created[0]:.2f} API s, first 100 {created[99] - created[0]:.2f} API s"
    )


if __name__ == "__main__":
    print(asyncio.run(measure(sys.argv[1] if len(sys.argv) > 1 else "steady")))
