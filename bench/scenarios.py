"""The API scenarios: each starts a fresh simulator, runs one client against it, returns figures.

* ``steady``    the orchestrator with its limits configured: utilisation, status requests per
                job, completion-to-file latency, 429s (figures 1, 3, 4).
* ``naive``     the per-job 5-second poller on the same simulator settings (figures 1, 3, 4).
* ``limits``    a simulator with a request-rate limit too, once with the limits configured and
                once without: 429s, utilisation and the time to recover to >= 90 % (figure 2).
* ``rate``      a backlog so deep that only the request rate holds submission back: achieved
                submissions per second / the configured rate (figure 2).
* ``download``  32 MiB videos: the orchestrator's verified downloads against a plain aiohttp
                loop over the same URLs (figure 5).

Each returns a flat dict of numbers (None when something could not be measured) that
``report`` turns into the table.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import analysis, simdata, workload
from bench.config import Plan
from bench.naive import NaiveClient
from bench.plain import download_all
from bench.procs import RunResult, SimProcess, run_orchestrator

Figures = dict[str, Any]


@dataclass(frozen=True)
class Workspace:
    """A scenario's folder: manifest, ledger, output files and logs."""

    root: Path

    @classmethod
    def make(cls, parent: Path, name: str) -> Workspace:
        root = parent / name
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.db"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def run_args(self, manifest: Path, url: str, scale: float, *extra: str) -> list[str]:
        """``orchestrator run`` as a user would type it, with ``--progress quiet``."""
        return [
            "run", str(manifest), "--api-base", url, "--ledger", str(self.ledger),
            "--out", str(self.out), "--time-scale", f"{scale:g}", "--progress", "quiet", *extra,
        ]  # fmt: skip


def client_env(token: str) -> dict[str, str]:
    """The environment of `orchestrator run`: the account's key and a fixed jitter seed."""
    return {**os.environ, "KREA_API_KEY": token, "ORCHESTRATOR_SEED": "1"}


def account_options(plan: Plan, **more: Any) -> dict[str, Any]:
    """The realistic account (see ``config``), plus ``more``."""
    return {
        "time_scale": plan.api_scale,
        "concurrency": plan.concurrency,
        "backlog": plan.backlog,
        "duration_s": plan.duration_s,
        **more,
    }


def ideal_real_s(plan: Plan, jobs: int) -> float:
    """Real seconds a perfect client needs for ``jobs`` full waves on the account."""
    waves = -(-jobs // plan.concurrency)
    return waves * plan.duration_s / plan.api_scale


def run_figures(run: RunResult) -> Figures:
    """What every orchestrator run reports about itself."""
    return {
        "exit_code": run.exit_code,
        "wall_s": run.wall_s,
        "cpu_s": run.cpu_s,
        "peak_rss_mb": run.peak_rss_mb,
        "stopped": run.stopped,
    }


def pipeline_figures(
    stats: dict[str, Any], sim_jobs: list[dict[str, Any]], plan: Plan, jobs: int
) -> Figures:
    """Utilisation, requests per job and 429s from the simulator's records."""
    requests = stats["requests"]
    posts = requests.get("POST /generate/video/{provider}/{model}", 0)
    downloads = requests.get("GET /videos/{job_id}.mp4", 0)
    return {
        "jobs": jobs,
        "completed": sum(1 for j in sim_jobs if j["status"] == "completed"),
        "utilisation": analysis.utilisation(simdata.account(stats), plan.concurrency),
        "status_calls_per_job": simdata.status_requests(stats) / jobs,
        "extra_requests_per_job": (sum(requests.values()) - posts - downloads) / jobs,
        "requests": requests,
        "rate_limited": stats["rate_limited"],
        "max_running_seen": simdata.account(stats).get("max_running_seen"),
    }


def latency_figures(values: list[float], noticed: list[float]) -> Figures:
    """Completion → verified file, and its first part: completion → noticed by a status call."""
    return {
        "latency_p50_s": analysis.percentile(values, 0.5),
        "latency_p99_s": analysis.percentile(values, 0.99),
        "latency_max_s": max(values) if values else None,
        "noticed_p50_s": analysis.percentile(noticed, 0.5),
        "noticed_p99_s": analysis.percentile(noticed, 0.99),
    }


async def steady(plan: Plan, parent: Path) -> Figures:
    """Figures 1, 3 and 4 for the orchestrator, limits configured, on the realistic account."""
    space = Workspace.make(parent, "steady")
    manifest = workload.write_manifest(space.root, plan.steady_jobs, "steady")
    with SimProcess(account_options(plan), space.root / "sim.log") as sim:
        clock = await simdata.clock_map(sim.url)
        args = space.run_args(
            manifest, sim.url, plan.api_scale, "--max-in-flight", str(plan.in_flight)
        )
        timeout = 3 * ideal_real_s(plan, plan.steady_jobs) + 60
        run = await run_orchestrator(
            args, client_env("bench-steady"), space.root, timeout_s=timeout
        )
        stats, sim_jobs = await simdata.stats(sim.url), await simdata.jobs(sim.url)
    done = [(rid, simdata.epoch_s(at)) for rid, at in workload.done_rows(space.ledger)]
    noticed = [(rid, simdata.epoch_s(at)) for rid, at in workload.noticed_rows(space.ledger)]
    lat = analysis.latencies(sim_jobs, done, clock)
    shutil.rmtree(space.out, ignore_errors=True)
    return {
        **run_figures(run),
        **pipeline_figures(stats, sim_jobs, plan, plan.steady_jobs),
        **latency_figures(lat, analysis.latencies(sim_jobs, noticed, clock)),
        "done": len(done),
        "ideal_real_s": ideal_real_s(plan, plan.steady_jobs),
    }


async def naive(plan: Plan, parent: Path) -> Figures:
    """The same figures for the naive per-job poller, on the same account settings."""
    space = Workspace.make(parent, "naive")
    with SimProcess(account_options(plan), space.root / "sim.log") as sim:
        clock = await simdata.clock_map(sim.url)
        client = NaiveClient(sim.url, "bench-naive", plan.api_scale, space.out, plan.in_flight)
        started = time.monotonic()
        timeout = 3 * ideal_real_s(plan, plan.steady_jobs) + 60
        result = await asyncio.wait_for(client.run(plan.steady_jobs), timeout)
        wall = time.monotonic() - started
        stats, sim_jobs = await simdata.stats(sim.url), await simdata.jobs(sim.url)
    shutil.rmtree(space.out, ignore_errors=True)
    return {
        "wall_s": wall,
        **pipeline_figures(stats, sim_jobs, plan, plan.steady_jobs),
        **latency_figures(
            analysis.latencies(sim_jobs, result.done, clock),
            analysis.latencies(sim_jobs, result.noticed, clock),
        ),
        "done": len(result.done),
        "poll_interval_p50_s": analysis.percentile(result.poll_gaps_api_s, 0.5),
        "poll_interval_mean_s": (
            sum(result.poll_gaps_api_s) / len(result.poll_gaps_api_s) if result.polls else None
        ),
    }


async def _sample_429s(url: str, seen: list[tuple[float, int]]) -> None:
    """Every 0.1 s until cancelled: (simulated now, 429s so far), to date the first 429."""
    while True:
        data = await simdata.stats(url)
        seen.append((float(data["now_s"]), int(data["rate_limited"])))
        await asyncio.sleep(0.1)


async def limits(plan: Plan, parent: Path, *, configured: bool) -> Figures:
    """Figure 2: a rate-limited account, with or without --max-in-flight and --rps."""
    name = "limits-configured" if configured else "limits-unconfigured"
    space = Workspace.make(parent, name)
    manifest = workload.write_manifest(space.root, plan.limits_jobs, "limits")
    extra = (
        ["--max-in-flight", str(plan.in_flight), "--rps", f"{plan.rate_rps:g}"]
        if configured
        else []
    )
    options = account_options(plan, rate_limit_rps=plan.rate_rps)
    seen: list[tuple[float, int]] = []
    with SimProcess(options, space.root / "sim.log") as sim:
        sampler = asyncio.ensure_future(_sample_429s(sim.url, seen))
        args = space.run_args(manifest, sim.url, plan.api_scale, *extra)
        timeout = 4 * ideal_real_s(plan, plan.limits_jobs) + 60
        run = await run_orchestrator(
            args, client_env(f"bench-{name}"), space.root, timeout_s=timeout
        )
        sampler.cancel()
        stats, sim_jobs = await simdata.stats(sim.url), await simdata.jobs(sim.url)
    shutil.rmtree(space.out, ignore_errors=True)
    first_created = min(simdata.epoch_s(j["created_at"]) for j in sim_jobs) if sim_jobs else 0.0
    first_429 = next((t for t, count in seen if count > 0), None)
    since = first_429 if first_429 is not None else first_created
    recovery = analysis.recovery_s(sim_jobs, plan.concurrency, since, plan.recovery_bucket_s)
    return {
        **run_figures(run),
        **pipeline_figures(stats, sim_jobs, plan, plan.limits_jobs),
        "first_429_after_s": None if first_429 is None else first_429 - first_created,
        "recovery_s": recovery,
        "recovered": recovery is not None,
        "ideal_real_s": ideal_real_s(plan, plan.limits_jobs),
    }


async def rate(plan: Plan, parent: Path) -> Figures:
    """Figure 2: submissions per second while only the request rate holds them back."""
    space = Workspace.make(parent, "rate")
    manifest = workload.write_manifest(space.root, plan.rate_jobs, "rate")
    backlog = plan.rate_jobs + plan.concurrency
    options = {"time_scale": 1.0, "concurrency": plan.concurrency, "backlog": backlog,
               "duration_s": 3600.0, "rate_limit_rps": plan.rate_rps}  # fmt: skip
    extra = ["--max-in-flight", str(plan.concurrency + backlog), "--rps", f"{plan.rate_rps:g}"]
    with SimProcess(options, space.root / "sim.log") as sim:
        args = space.run_args(manifest, sim.url, 1.0, *extra)

        async def all_sent() -> None:
            await simdata.wait_for_created(sim.url, plan.rate_jobs)

        timeout = 3 * plan.rate_jobs / plan.rate_rps + 60
        run = await run_orchestrator(args, client_env("bench-rate"), space.root,
                                     timeout_s=timeout, stop=all_sent)  # fmt: skip
        stats, sim_jobs = await simdata.stats(sim.url), await simdata.jobs(sim.url)
    created = [simdata.epoch_s(j["created_at"]) for j in sim_jobs]  # scale 1: real seconds
    achieved = analysis.whole_window_rate(created)
    return {
        **run_figures(run),
        "submitted": len(created),
        "submissions_per_s": achieved,
        "submit_rate_ratio": analysis.ratio(achieved, plan.rate_rps),
        "configured_rps": plan.rate_rps,
        "requests": stats["requests"],
        "rate_limited": stats["rate_limited"],
    }


async def download(plan: Plan, parent: Path) -> Figures:
    """Figure 5: verified downloads vs a plain streaming loop, same files, same loopback."""
    space = Workspace.make(parent, "download")
    jobs = plan.download_jobs
    manifest = workload.write_manifest(space.root, jobs, "download")
    options = {"time_scale": 10.0, "concurrency": jobs, "backlog": 0, "duration_s": 10.0,
               "media_bytes": plan.media_bytes}  # fmt: skip
    extra = ["--max-in-flight", str(jobs), "--download-workers", str(plan.download_workers)]
    with SimProcess(options, space.root / "sim.log") as sim:
        args = space.run_args(manifest, sim.url, 10.0, *extra)
        run = await run_orchestrator(args, client_env("bench-download"), space.root, timeout_s=300)
        shutil.rmtree(space.out, ignore_errors=True)
        urls = workload.result_urls(space.ledger)
        plain = [
            await _plain_rate(urls, space.root / f"plain{i}", plan.download_workers) for i in (1, 2)
        ]
        synced = await _plain_rate(
            urls, space.root / "plain-fsync", plan.download_workers, fsync=True
        )
        hashed = await _plain_rate(
            urls, space.root / "plain-hash", plan.download_workers, fsync=True, digest=True
        )
    window = workload.download_window(space.ledger)
    ours = None
    if window is not None:
        first, last, size = window
        ours = size / max(1e-6, simdata.epoch_s(last) - simdata.epoch_s(first))
    reference = sum(plain) / len(plain) if plain and all(plain) else None
    return {
        **run_figures(run),
        "files": len(urls),
        "media_bytes": plan.media_bytes,
        "orchestrator_mb_s": None if ours is None else ours / 1e6,
        "plain_mb_s": None if reference is None else reference / 1e6,
        "plain_runs_mb_s": [p / 1e6 for p in plain],
        "plain_fsync_mb_s": synced / 1e6,
        "plain_fsync_sha256_mb_s": hashed / 1e6,
        "download_ratio": analysis.ratio(ours, reference),
        "download_ratio_same_work": analysis.ratio(ours, hashed or None),
    }


async def _plain_rate(
    urls: list[str], folder: Path, workers: int, *, fsync: bool = False, digest: bool = False
) -> float:
    """Bytes per second of one plain-loop pass (its files deleted afterwards)."""
    size, seconds = await download_all(urls, folder, workers, fsync=fsync, digest=digest)
    shutil.rmtree(folder, ignore_errors=True)
    return size / seconds if seconds > 0 else 0.0
