"""The table's rows: each figure beside its reference and target, numbered as in the issue."""

from __future__ import annotations

from typing import Any

from bench.config import Plan
from bench.report import (
    EXPORTS,
    REPORTS,
    Row,
    configured_429s,
    dig,
    fmt,
    interactive_sizes,
    mark,
    rss_growth,
    sizes,
    slowest,
)


def _api_rows(
    v: dict[str, Any], d: dict[str, Any], ok: dict[str, bool | None], plan: Plan
) -> list[Row]:
    account = f"C={plan.concurrency}, backlog {plan.backlog}, {plan.duration_s:g} s jobs"
    unconf = d.get("limits_unconfigured") or {}
    conf = d.get("limits_configured") or {}
    return [
        Row(f"1 utilisation ({account}, {plan.steady_jobs} jobs)", fmt(v["utilisation"], "%"),
            f"naive {fmt(dig(d, 'naive', 'utilisation'), '%')}", ">= 95 %",
            mark(ok["utilisation >= 95%"])),
        Row(f"2 submissions/s / rate limit ({plan.rate_rps:g} rps)",
            f"{fmt(v['submit_rate_ratio'])} ({fmt(dig(d, 'rate', 'submissions_per_s'), '/s', 1)})",
            "", "close to 1"),
        Row("2 429s, limits configured (3 runs)", fmt(configured_429s(d)), "", "0",
            mark(ok["zero 429s with limits configured"])),
        Row("2 429s, limits not configured", fmt(unconf.get("rate_limited")),
            f"configured: {fmt(conf.get('rate_limited'))}", "report"),
        Row("2 recovery to >= 90 % after 1st 429 (API s)", _recovery(unconf),
            f"configured, from 1st job: {fmt(conf.get('recovery_s'), 's', 0)}", "<= 60 s",
            mark(ok["recovery to >= 90% within 60 s"])),
        Row("2 utilisation, rate-limited: not configured",
            fmt(unconf.get("utilisation"), "%"), f"configured {fmt(conf.get('utilisation'), '%')}",
            ""),
        Row("3 status requests per job", fmt(v["status_calls_per_job"], digits=3),
            f"naive {fmt(v['naive_status_calls_per_job'], digits=1)}", "<= 0.2",
            mark(ok["<= 0.2 status requests per job"])),
        Row("4 completion -> file latency p50 (API s)", fmt(v["latency_p50_s"], "s"),
            f"naive {fmt(dig(d, 'naive', 'latency_p50_s'), 's')}", ""),
        Row("4 completion -> file latency p99 (API s)", fmt(v["latency_p99_s"], "s"),
            f"naive {fmt(dig(d, 'naive', 'latency_p99_s'), 's')}", ""),
        Row("4 of which completion -> noticed, p50 / p99",
            f"{fmt(dig(d, 'steady', 'noticed_p50_s'), 's')} / "
            f"{fmt(dig(d, 'steady', 'noticed_p99_s'), 's')}",
            f"naive {fmt(dig(d, 'naive', 'noticed_p50_s'), 's')} / "
            f"{fmt(dig(d, 'naive', 'noticed_p99_s'), 's')}", ""),
    ]  # fmt: skip


def _recovery(run: dict[str, Any]) -> str:
    if run.get("recovered") is False:
        return "never"
    return fmt(run.get("recovery_s"), "s", 0)


def _download_row(
    v: dict[str, Any], d: dict[str, Any], ok: dict[str, bool | None], plan: Plan
) -> Row:
    mib = plan.media_bytes >> 20
    return Row(
        f"5 download ({plan.download_jobs} x {mib} MiB, {plan.download_workers} streams)",
        f"{fmt(dig(d, 'download', 'orchestrator_mb_s'), 'MB/s', 0)} = {fmt(v['download_ratio'])} x",
        f"plain loop {fmt(dig(d, 'download', 'plain_mb_s'), 'MB/s', 0)}; "
        f"+ fsync {fmt(dig(d, 'download', 'plain_fsync_mb_s'), 'MB/s', 0)}; + fsync + sha256 "
        f"{fmt(dig(d, 'download', 'plain_fsync_sha256_mb_s'), 'MB/s', 0)} "
        f"(= {fmt(dig(d, 'download', 'download_ratio_same_work'))} x)",
        ">= 0.9 x",
        mark(ok["download >= 90% of plain loop"]),
    )


def _scale_rows(v: dict[str, Any], d: dict[str, Any], ok: dict[str, bool | None]) -> list[Row]:
    runs = sizes(d)
    labels = " / ".join(
        f"{r['jobs'] // 1000}k" if r["jobs"] >= 1000 else str(r["jobs"]) for r in runs
    )
    full = " / ".join(fmt(r.get("cpu_ms_per_job"), digits=2) for r in runs if not r.get("bounded"))
    steady = " / ".join(fmt(r.get("steady_cpu_ms_per_job"), digits=2) for r in runs)
    rss = " / ".join(fmt(r.get("peak_rss_mb"), digits=0) for r in runs)
    growth = ", ".join(f"+{g:.1f}" for g in rss_growth(d))
    resume: dict[str, Any] = next((r["resume"] for r in runs if "resume" in r), {})
    return [
        Row("6 CPU ms per job, full runs (incl. start-up)", full,
            f"after start-up {labels}: {steady}", "<= 1 ms", mark(ok["CPU <= 1 ms per job"])),
        Row(f"6 peak RSS MB, {labels}", rss, f"MB per 1k more jobs: {growth}",
            "<= 200 at 100k", mark(ok["peak RSS <= 200 MB at 100k"])),
        Row("6 RSS growth", "sub-linear" if ok["RSS grows at most linearly"] else "super-linear",
            "", "<= linear", mark(ok["RSS grows at most linearly"])),
        Row("7 resume start-up, 100k ledger (s)", fmt(v["resume_s_100k"], "s"),
            f"until {resume.get('measured_until', 'n/a')}; validate alone "
            f"{fmt(dig(d, 'scale', 'validate', 'wall_s'), 's')}",
            "<= 2 s", mark(ok["resume start-up <= 2 s at 100k"])),
    ]  # fmt: skip


def _other_rows(v: dict[str, Any], d: dict[str, Any]) -> list[Row]:
    sim = d.get("sim_throughput") or {}
    return [
        Row("8 ledger transitions/s (1 commit each)", fmt(v["ledger_tps"], digits=0),
            f"apply() x100: {fmt(dig(d, 'ledger', 'apply_moves_per_s'), 'moves/s', 0)}", ""),
        Row("8 ledger transitions/s, 6 tasks at once",
            fmt(dig(d, "ledger", "concurrent_per_s"), digits=0),
            f"{fmt(dig(d, 'ledger', 'concurrent_per_commit'), 'per commit', 1)}; CPU "
            f"{fmt(dig(d, 'ledger', 'concurrent_cpu_us'), 'us', 0)} vs one at a time "
            f"{fmt(dig(d, 'ledger', 'one_by_one_cpu_us'), 'us', 0)}", ""),
        Row("simulator capacity (context)", fmt(sim.get("GET /jobs/{id}"), "GET/s", 0),
            f"list pages {fmt(sim.get('GET /jobs?limit=100'), '/s', 0)}", ""),
    ]  # fmt: skip


def _pair(run: dict[str, Any], first: str, second: str) -> str:
    return f"{fmt(run.get(first), 's')} / {fmt(run.get(second), 's')}"


def _realtime_rows(d: dict[str, Any], ok: dict[str, bool | None], plan: Plan) -> list[Row]:
    """Figure 9: a small batch at time scale 1, the orchestrator beside the naive poller."""
    rt = d.get("realtime") or {}
    ours, naive = rt.get("orchestrator") or {}, rt.get("naive") or {}
    head = (
        f"9 real-time small batch ({plan.realtime_jobs} x {plan.realtime_duration_s:g} s jobs, "
        f"C={plan.realtime_concurrency}, backlog {plan.realtime_backlog}, scale 1)"
    )
    return [
        Row(f"{head}: wall time (s)", fmt(ours.get("wall_s"), "s"),
            f"naive {fmt(naive.get('wall_s'), 's')}; simulator's own finish "
            f"{fmt(ours.get('sim_finish_s'), 's')} / naive's {fmt(naive.get('sim_finish_s'), 's')}",
            "<= naive", mark(ok["real time: wall time <= naive"])),
        Row("9 real-time: start-up (spawn -> 1st job created)", fmt(ours.get("startup_s"), "s"),
            f"naive {fmt(naive.get('startup_s'), 's')} (in-process)", ""),
        Row("9 real-time: completion -> noticed, p50 / p99",
            _pair(ours, "noticed_p50_s", "noticed_p99_s"),
            f"naive {_pair(naive, 'noticed_p50_s', 'noticed_p99_s')}", "p99 <= 3 s",
            mark(ok["real time: completion -> noticed p99 <= 3 s"])),
        Row("9 real-time: last completion -> last file",
            fmt(ours.get("last_completion_to_last_file_s"), "s"),
            f"naive {fmt(naive.get('last_completion_to_last_file_s'), 's')}", ""),
        Row("9 real-time: last file -> exit", fmt(ours.get("last_file_to_exit_s"), "s"),
            f"naive {fmt(naive.get('last_file_to_exit_s'), 's')}", "<= 0.5 s",
            mark(ok["real time: last file -> exit <= 0.5 s"])),
        Row("9 real-time: status requests (per job); list calls/s",
            f"{fmt(ours.get('status_requests'))} ({fmt(ours.get('status_requests_per_job'))}); "
            f"{fmt(ours.get('list_calls_per_s'), '/s')}",
            f"naive {fmt(naive.get('status_requests'))} "
            f"({fmt(naive.get('status_requests_per_job'))})", ""),
    ]  # fmt: skip


def _label(jobs: int) -> str:
    return f"{jobs // 1000}k" if jobs >= 1000 else str(jobs)


def _interactive_rows(
    v: dict[str, Any], d: dict[str, Any], ok: dict[str, bool | None]
) -> list[Row]:
    """Figure 10: the commands between runs, at the largest ledger beside the smallest."""
    runs = interactive_sizes(d)
    if not runs:
        return []
    small, large = runs[0], runs[-1]
    at = f"{_label(large['jobs'])} / {_label(small['jobs'])}"

    def both(names: tuple[str, ...], figure: str = "wall_s", unit: str = "s") -> str:
        return " / ".join(
            fmt(slowest(r, names, figure), unit, 2 if unit == "s" else 0) for r in (large, small)
        )

    return [
        Row(f"10 status, {at} jobs (s)", both(("status", "status_json")), "", "<= 1 s",
            mark(ok["status <= 1 s at 100k"])),
        Row(f"10 report, slowest format, {at} jobs (s)", both(REPORTS),
            "table " + both(("report",)) + "; html " + both(("report_html",)), "<= 1 s",
            mark(ok["report <= 1 s at 100k"])),
        Row(f"10 validate / estimate, {at} jobs (s)", both(("validate", "estimate")),
            "plain list of jobs: " + both(("validate_list", "estimate_list")), "<= 3 s",
            mark(ok["validate and estimate <= 3 s at 100k"])),
        Row(f"10 export peak RSS MB, {at} jobs", both(EXPORTS, "peak_rss_mb", "MB"),
            "wall time " + both(EXPORTS), "constant", mark(ok["export memory constant"])),
    ]  # fmt: skip


def _view_rows(d: dict[str, Any], ok: dict[str, bool | None]) -> list[Row]:
    """Figure 11: `orchestrator view` on the 100,000-job ledger, cold (first ask) and warm."""
    view = d.get("view")
    if not view:
        return []

    def page(name: str) -> str:
        return f"{fmt(dig(view, name, 'cold_s'))} / {fmt(dig(view, name, 'median_s'))} s"

    def verdict(name: str) -> str:
        times = [dig(view, name, key) for key in ("cold_s", "median_s")]
        return "" if None in times else mark(max(times) <= 1.0)

    return [
        Row("11 view, 100k jobs: batches page, cold / warm", page("batches_page"), "", "<= 1 s",
            verdict("batches_page")),
        Row("11 view, 100k jobs: first gallery page, cold / warm", page("gallery_first_page"),
            "search + sort " + page("gallery_search"), "<= 1 s", verdict("gallery_first_page")),
        Row("11 view server peak RSS MB", fmt(view.get("peak_rss_mb"), "MB", 0), "", "<= 200 MB",
            mark(ok["view server <= 200 MB at 100k"])),
    ]  # fmt: skip


def build(
    values: dict[str, Any], details: dict[str, Any], ok: dict[str, bool | None], plan: Plan
) -> list[Row]:
    """Every row of the table, in the issue's order."""
    return [
        *_api_rows(values, details, ok, plan),
        _download_row(values, details, ok, plan),
        *_scale_rows(values, details, ok),
        *_other_rows(values, details),
        *_realtime_rows(details, ok, plan),
        *_interactive_rows(values, details, ok),
        *_view_rows(details, ok),
    ]
