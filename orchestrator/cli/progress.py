"""What a running batch shows: a live panel on a terminal, one line per event otherwise, or JSON.

All four implement ``pipeline.Reporter``; the pipeline calls them and never waits on them. The
stages' messages are log records, which ``notes`` hands to their ``note`` for the length of a run.
Progress goes to stderr and the outcome to stdout, so ``run ... > result`` keeps only the outcome.

* :class:`LivePanel` (rich): counts by state (``waiting``: jobs that take another job's result,
  not sendable yet), in-flight jobs running vs queued at Krea (its backlog), throughput, spend
  so far and an ETA, redrawn four times a second by a task on the event loop (never by rich's
  refresh thread, which would read the tally while the loop changes it); then the summary.
* :class:`LineLog`: one plain line per state change, for pipes and log files; then the summary.
* :class:`JsonLog`: one JSON object per line on stderr (``{"t", "event", ...}``: ``start``,
  ``job``, ``spend``, ``note``, and last ``end`` with the exit code and the money), for CI and
  other tools; stdout stays empty, so ``2>&1`` gives pure JSON lines.
* :class:`Quiet` (``--quiet``): errors only, then one summary line on stdout: what a CI log
  wants, since the exit code already says how the run went.

Nothing here ever prints the API key: reporters only receive job ids, states and messages built
from our own error types.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TextIO

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.clock import now_utc
from orchestrator.jobs import IN_FLIGHT, JobState

S = JobState
#: A note's level by name, as ``logging``'s numbers, so a display's ``min_level`` is one too.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
#: Krea's statuses of a job sent but not started: the panel counts them "queued", apart from our
#: ``waiting`` state (a job not sent yet, until the results it takes exist).
QUEUED_AT_KREA = frozenset({"backlogged", "queued", "scheduled"})
REFRESH_S = 0.25  #: the live panel's redraw interval (real seconds)


def _usd(micro: int) -> str:
    return f"${micro / 1_000_000:,.2f}"


@dataclass(frozen=True)
class Ending:
    """How a run ended, in each form a reporter may want: built once, shown by the mode."""

    exit_code: int
    lines: list[str] = field(default_factory=list)  #: the summary for people
    line: str = ""  #: the same in one line, for --quiet
    fields: dict[str, object] = field(default_factory=dict)  #: the ``end`` event's figures


class _Tally:
    """Counts by state and the remote status of jobs in flight, kept from the events."""

    def __init__(self) -> None:
        self.counts: Counter[JobState] = Counter()
        self.remote: dict[str, str] = {}
        self.billed_micro = 0
        self.exposure_micro = 0
        self.done_times: deque[float] = deque(maxlen=200)
        self.total = 0
        #: Some job takes another's result: the panel shows ``waiting`` (even once it is 0).
        self.chained = False

    def start(self, counts: dict[JobState, int]) -> None:
        self.counts = Counter(counts)
        self.total = sum(counts.values())
        self.chained = counts.get(S.WAITING, 0) > 0

    def change(self, entry_id: str, old: JobState | None, new: JobState, note: str) -> None:
        if old is not None and old is not new:
            self.counts[old] -= 1
        if old is not new:
            self.counts[new] += 1
        if new is S.SUBMITTED:
            self.remote[entry_id] = note or self.remote.get(entry_id, "queued")
        else:
            self.remote.pop(entry_id, None)
        if new is S.DONE:
            self.done_times.append(time.monotonic())

    def rate_per_min(self) -> float:
        if len(self.done_times) < 2:
            return 0.0
        span = self.done_times[-1] - self.done_times[0]
        return (len(self.done_times) - 1) / span * 60 if span > 0 else 0.0

    def eta_s(self) -> float | None:
        rate = self.rate_per_min()
        left = self.total - self.counts[S.DONE] - self.counts[S.FAILED] - self.counts[S.REJECTED]
        return left / rate * 60 if rate > 0 and left > 0 else None


class LineLog:
    """One line per event on ``stream``; ``min_level`` filters notes and state changes."""

    def __init__(
        self, stream: TextIO | None = None, *, min_level: str = "info", batch: str | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.min_level = LEVELS[min_level]
        self.tally = _Tally()
        #: Set when one run carries several batches: every line then says whose it is.
        self.batch = batch

    def start(self, batch: str, counts: dict[JobState, int]) -> None:
        self.tally.start(counts)
        parts = ", ".join(f"{state} {n}" for state, n in sorted(counts.items()) if n)
        self._emit("info", f"batch {batch}: {parts or 'nothing to do'}")

    def job_changed(
        self, entry_id: str, old: JobState | None, new: JobState, note: str = ""
    ) -> None:
        self.tally.change(entry_id, old, new, note)
        level = "warning" if new in (S.FAILED, S.REJECTED, S.AMBIGUOUS, S.CANCELLED) else "info"
        if old is not new:
            self._emit(
                level, f"{entry_id}: {old or 'new'} -> {new}" + (f" ({note})" if note else "")
            )

    def spend_changed(self, billed_micro: int, exposure_micro: int) -> None:
        self.tally.billed_micro, self.tally.exposure_micro = billed_micro, exposure_micro

    def note(self, message: str, *, level: str = "info") -> None:
        self._emit(level, message)

    def headline(self, message: str) -> None:
        """Something the user should read before the progress (which simulator is used)."""
        print(message, flush=True)

    def finish(self, ending: Ending) -> None:
        """The outcome, on stdout (nothing when an error ended the run: the error says it)."""
        if ending.lines:
            print("\n".join(ending.lines), flush=True)

    def _emit(self, level: str, message: str) -> None:
        if LEVELS.get(level, logging.INFO) >= self.min_level:
            prefix = "" if level == "info" else f"{level}: "
            whose = f"[{self.batch}] " if self.batch else ""
            print(f"{now_utc()[11:19]} {whose}{prefix}{message}", file=self.stream, flush=True)


class JsonLog(LineLog):
    """One JSON object per line, for machines."""

    def start(self, batch: str, counts: dict[JobState, int]) -> None:
        self.tally.start(counts)
        self._json("info", "start", batch=batch, counts={str(k): v for k, v in counts.items()})

    def job_changed(
        self, entry_id: str, old: JobState | None, new: JobState, note: str = ""
    ) -> None:
        self.tally.change(entry_id, old, new, note)
        if old is not new:
            self._json(
                "info", "job", id=entry_id, old=str(old) if old else None, new=str(new), note=note
            )

    def spend_changed(self, billed_micro: int, exposure_micro: int) -> None:
        if (billed_micro, exposure_micro) == (self.tally.billed_micro, self.tally.exposure_micro):
            return  # a sweep that settled nothing new: no event
        super().spend_changed(billed_micro, exposure_micro)
        self._json(
            "info",
            "spend",
            billed_micro=billed_micro,
            billed_usd=billed_micro / 1_000_000,
            exposure_micro=exposure_micro,
            exposure_usd=exposure_micro / 1_000_000,
        )

    def note(self, message: str, *, level: str = "info") -> None:
        self._json(level, "note", severity=level, message=message)

    def headline(self, message: str) -> None:
        self.note(message)

    def finish(self, ending: Ending) -> None:
        """The last line, always written: a CI step reads its exit code and money from it."""
        self._json("error", "end", exit_code=ending.exit_code, **ending.fields)

    def _json(self, level: str, event: str, **fields: object) -> None:
        if LEVELS.get(level, logging.INFO) >= self.min_level:
            whose = {"batch": self.batch} if self.batch and "batch" not in fields else {}
            line = json.dumps({"t": now_utc(), "event": event, **whose, **fields})
            print(line, file=self.stream, flush=True)


class LivePanel(LineLog):
    """A rich panel redrawn in place; warnings and errors still print above it.

    Enter it on the running event loop: it is drawn only on the loop's thread, between events,
    by a task it owns (rich's own refresh thread read the tally mid-change: "dictionary changed
    size during iteration"). Leaving it, or ``finish``, cancels the task and draws the final state.
    """

    _started = False  #: ``start`` came: the counts are the batch's (read by the first draw)

    def __init__(self, console: Console | None = None, *, budget_micro: int | None = None) -> None:
        self.console = console or Console(stderr=True)
        super().__init__(sys.stderr, min_level="warning")
        self.budget_micro = budget_micro
        self.batch = ""
        self._live = Live(console=self.console, auto_refresh=False, get_renderable=self._render)
        self._redraws: asyncio.Task[None] | None = None

    def __enter__(self) -> LivePanel:
        self._redraws = asyncio.get_running_loop().create_task(self._redraw())
        self._live.start(refresh=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def finish(self, ending: Ending) -> None:
        self._close()  # the panel's last frame stays above the summary
        super().finish(ending)

    async def _redraw(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            self._live.refresh()

    def _close(self) -> None:
        """Stop redrawing (the task holds no resource, so the loop need not wait for it)."""
        if self._redraws is not None:
            self._redraws.cancel()
            self._redraws = None
        self._live.stop()  # draws the final state, on this thread

    def start(self, batch: str, counts: dict[JobState, int]) -> None:
        self.batch = batch
        self.tally.start(counts)
        self._started = True

    def _emit(self, level: str, message: str) -> None:
        if LEVELS.get(level, logging.INFO) >= self.min_level:
            self.console.print(
                Text(f"{level}: {message}", style="yellow" if level == "warning" else "red")
            )

    def _render(self) -> Group | Text:
        """The frame: each part ends its line, so none is drawn after another and cropped.

        Before ``start`` (the ledger planned and recovered, lost POSTs settled) there is nothing
        to count yet: one line says so, never a batch of "0/0".
        """
        if not self._started:
            return Text("starting: planning the ledger, settling any POST whose answer was lost")
        t = self.tally
        done = t.counts[S.DONE]
        eta = t.eta_s()
        eta_text = f"ETA {int(eta // 60)}m{int(eta % 60):02d}s" if eta is not None else "ETA -"
        cap = f" (budget {_usd(self.budget_micro)})" if self.budget_micro is not None else ""
        return Group(
            _Fields(f"batch {self.batch}: {done}/{t.total} verified files", eta_text, style="bold"),
            _bar(done, t.total),
            _Fields(*_counts(t)),
            _Fields(
                f"spend {_usd(t.billed_micro)} billed + {_usd(t.exposure_micro)} in flight{cap}",
                f"{t.rate_per_min():.1f} clips/min",
            ),
        )


def _counts(t: _Tally) -> list[str]:
    """The counts line's fields, in the README's words: ``waiting`` is our state (not sent until
    its inputs have results; shown when the batch has such jobs), ``queued`` Krea's backlog."""
    flying = sum(t.counts[s] for s in IN_FLIGHT)
    queued = sum(1 for status in t.remote.values() if status in QUEUED_AT_KREA)
    waiting = [f"waiting {t.counts[S.WAITING]}"] if t.chained else []
    return [
        f"done {t.counts[S.DONE]}",
        f"pending {t.counts[S.PENDING]}",
        *waiting,
        f"in flight {flying} (running {flying - queued}, queued {queued})",
        f"downloading {t.counts[S.COMPLETED] + t.counts[S.DOWNLOADING]}",
        f"failed {t.counts[S.FAILED] + t.counts[S.CANCELLED]}",
        f"rejected {t.counts[S.REJECTED]}",
    ]


def _bar(done: int, total: int) -> Table:
    """The progress bar on a line of its own: a bare ``ProgressBar`` ends no line, so in a
    ``Group`` the next renderable was drawn after it on the same line, and ``Live`` cropped it."""
    grid = Table.grid(expand=True)
    grid.add_row(ProgressBar(total=max(total, 1), completed=done))
    return grid


class _Fields:
    """Fields on one line, joined by " · "; on a narrow terminal the line breaks between fields,
    never inside one, so no field is cut in two (a field wider than the screen wraps on words)."""

    SEP = " · "

    def __init__(self, *fields: str, style: str = "") -> None:
        self.fields = fields
        self.style = style

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines: list[str] = []
        for item in self.fields:
            if lines and cell_len(lines[-1] + self.SEP + item) <= options.max_width:
                lines[-1] += self.SEP + item
            else:
                lines.append(item)
        for line in lines:
            yield Text(line, style=self.style)


class Quiet(LineLog):
    """Errors only, then one summary line: a failed job is in the counts, not a warning."""

    def __init__(self, stream: TextIO | None = None, *, batch: str | None = None) -> None:
        super().__init__(stream, min_level="error", batch=batch)

    def headline(self, message: str) -> None:
        pass

    def finish(self, ending: Ending) -> None:
        if ending.line:
            print(ending.line, flush=True)
