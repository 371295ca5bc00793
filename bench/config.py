"""The sizes and speeds every scenario uses, in one frozen dataclass (``--quick`` shrinks them).

Why these values:

* **A realistic account**: concurrency 50 with a backlog of 50 (Krea queues jobs beyond the
  concurrency as ``backlogged``), every job 62.5 API seconds long (``--duration-s``; Kling 2.5
  takes 60-120 s), so a batch is whole waves and the only idle time is what the client causes.
  Not a multiple of 5 s: with 60 s jobs the naive client's polls would land just after each
  completion and its latency would look near zero; at 62.5 s they land 2.5 s after, the mean of
  a 5-second poller (its p99 stays optimistic: random durations would push it towards 5 s).
* **Time scale 20** for the API scenarios: the naive client then sends 100 in-flight jobs / 5 s
  × 20 = 400 polls per real second, which the simulator and the bench serve without falling
  behind (the achieved poll interval is reported to prove it); higher scales would make the
  naive figure look better than it is.
* **Rate limit 100 requests per real second**: the simulator's limit is counted in real time, so
  at scale 20 that is 5 requests per API second, well above the 0.8 POSTs per API second the
  account needs at full concurrency (50 jobs / 62.5 s), and far below the ~300 POSTs per second
  an unpaced orchestrator sends, so leaving ``--rps`` out does hit it.
* **A very fast account for the scale runs** (concurrency 1000, backlog 1000, 5-second jobs,
  scale 100, 9 KB videos): the orchestrator itself is then the bottleneck, which is what CPU
  and memory per job should measure.
* **The commands between runs** (`status`, `report`, `export`, `validate`, `estimate`) on a
  1,000- and a 100,000-job ledger: what a user waits for at the prompt, and whether it grows
  with the ledger (see ``interactive``).
* **A small batch in real time** (6 jobs of 23.3 s, concurrency 3 with a backlog of 3, scale 1,
  ``--poll-min 2``): most runs people start are small, and the 400-job batch at scale 20 hides
  sweep intervals (2 s is a tenth of a real second there) and start-up and shutdown (a few
  seconds of minutes); at scale 1 every figure is a second the user actually waits. Two full
  waves, so the second wave starts from Krea's backlog, as in a larger batch. 23.3 s, not 20:
  the ends of both waves (23.3 s, 46.6 s) then fall on neither client's polling grid (5 s for
  the naive one, 2 s for ours); with 20 s jobs every 5-second poll lands just after an end and
  the naive client looks as if it noticed at once, which no real batch's durations allow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MIB = 1 << 20


@dataclass(frozen=True)
class Plan:
    """Sizes of every scenario (see the module docstring for why)."""

    concurrency: int = 50
    backlog: int = 50
    duration_s: float = 62.5
    api_scale: float = 20.0
    steady_jobs: int = 400
    limits_jobs: int = 300
    rate_rps: float = 100.0
    rate_jobs: int = 800
    download_jobs: int = 16
    media_bytes: int = 32 * MIB
    download_workers: int = 4
    scale_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    full_run_max: int = 10_000  #: larger sizes run for ``bounded_run_s`` after their first request
    bounded_run_s: float = 40.0
    fast_concurrency: int = 1_000
    fast_backlog: int = 1_000
    fast_duration_s: float = 5.0
    fast_scale: float = 100.0
    recovery_bucket_s: float = 5.0  #: API seconds per utilisation bucket
    realtime_jobs: int = 6
    realtime_concurrency: int = 3
    realtime_backlog: int = 3
    realtime_duration_s: float = 23.3
    realtime_poll_min_s: float = 2.0  #: the orchestrator's ``--poll-min`` (its default)
    interactive_sizes: tuple[int, ...] = (1_000, 100_000)  #: ledgers `status`, `report`... read
    interactive_repeats: int = 3  #: runs of each command; the median wall time is kept

    @property
    def in_flight(self) -> int:
        """What ``--max-in-flight`` is set to when the limits are configured."""
        return self.concurrency + self.backlog

    def quick(self) -> Plan:
        """A smoke-test version: same scenarios, a tenth of the work."""
        return replace(
            self,
            steady_jobs=100,
            limits_jobs=100,
            rate_jobs=300,
            download_jobs=4,
            media_bytes=10 * MIB,
            scale_sizes=(300, 1_000, 3_000),
            full_run_max=1_000,
            bounded_run_s=5.0,
            interactive_sizes=(1_000, 10_000),
            interactive_repeats=1,
        )
