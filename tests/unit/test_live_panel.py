"""The live panel: how and where it is drawn, then what it shows, as a user's terminal has it.

rich's ``Live`` redraws from its own ``_RefreshThread`` by default, and that thread read the tally
while the loop changed it ("dictionary changed size during iteration" froze the panel): the panel
is drawn on the event loop's thread only, by a task it owns. And a bare ``ProgressBar`` ends no
line, so in a ``Group`` the counts were drawn after the bar on its line, then cropped: only the
head and the spend line were left (issue 14). These tests render to fixed-width terminals in
memory, drive the panel by calling its methods, and wait on its own draws, never on a timer.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
from types import SimpleNamespace
from typing import Literal

import pytest
from rich.console import Console, Group
from rich.live import _RefreshThread

from orchestrator.cli import progress
from orchestrator.cli.progress import LivePanel
from orchestrator.jobs import JobState

S = JobState
WIDTH = 100
#: What rich writes to move up over the previous frame before drawing the next one.
ERASE = re.compile(r"\r\x1b\[2K(?:\x1b\[1A\x1b\[2K)*")
STYLE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class RecordingPanel(LivePanel):
    """A LivePanel that notes every change and every draw, and which thread drew."""

    def __init__(self, console: Console) -> None:
        self.log: list[tuple[str, threading.Thread]] = []
        self.frames: list[Group] = []
        self.draws = 0
        self._loop = asyncio.get_running_loop()
        self._drawn = asyncio.Event()
        super().__init__(console)

    def job_changed(
        self, entry_id: str, old: JobState | None, new: JobState, note: str = ""
    ) -> None:
        self.log.append(("change", threading.current_thread()))
        super().job_changed(entry_id, old, new, note)

    def _render(self) -> Group:
        self.log.append(("draw", threading.current_thread()))
        frame = super()._render()
        self.frames.append(frame)
        self.draws += 1
        self._loop.call_soon_threadsafe(self._drawn.set)  # wakes the loop from any thread
        return frame

    async def redrawn(self) -> None:
        """Return after the panel's next draw, whichever thread makes it."""
        seen = self.draws
        while self.draws == seen:
            self._drawn.clear()
            await self._drawn.wait()


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=WIDTH, force_terminal=True, color_system=None), out


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in STYLE.sub("", text).strip("\n").splitlines()]


def _last_frame(out: io.StringIO) -> list[str]:
    """The lines of the last frame drawn on the terminal."""
    return _lines(ERASE.split(out.getvalue())[-1])


def _as_text(frame: Group) -> list[str]:
    console, out = _terminal()
    console.print(frame)
    return _lines(out.getvalue())


def _refresh_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, _RefreshThread)]


async def test_the_panel_is_drawn_by_the_loop_between_its_changes_never_by_a_thread() -> None:
    """No refresh thread: each draw runs on the loop's thread while the loop changes the tally,
    the final state is drawn last, and the redrawing task ends with the panel."""
    console, out = _terminal()
    panel = RecordingPanel(console)
    before = asyncio.all_tasks()
    with panel:
        assert _refresh_threads() == []
        refreshers = asyncio.all_tasks() - before
        panel.start("b", {S.PENDING: 30})
        for wave in range(3):  # each wave adds and removes remote statuses, then waits for a draw
            for i in range(wave * 10, wave * 10 + 10):
                panel.job_changed(f"clip{i}", S.PENDING, S.SUBMITTED, "queued")
            for i in range(wave * 10, wave * 10 + 5):
                panel.job_changed(f"clip{i}", S.SUBMITTED, S.DONE)
            await panel.redrawn()
    assert {thread for _, thread in panel.log} == {threading.main_thread()}
    assert panel.log[-1][0] == "draw"  # the state after the last change is on the screen
    assert len(refreshers) == 1
    _, pending = await asyncio.wait(refreshers, timeout=5)  # a bound on failure, not a wait
    assert not pending
    assert _last_frame(out) == _as_text(panel.frames[-1])


# What the panel shows: every promised field, on its own line, at the width of the terminal.

BAR = re.compile(r"^[━╸╺\- ]+$")  #: a line of the progress bar only (rich's glyphs, or ASCII)
#: Each field the README promises, as the fed events (below) must make the panel show it.
SHOWN = (
    "batch demo",
    "4/11 verified files",
    "ETA 2m00s",
    "done 4",
    "pending 3",
    "in flight 2 (running 1, queued 1)",
    "downloading 1",
    "failed 1",
    "spend $1.23 billed + $0.37 in flight (budget $5.00)",
    "3.0 clips/min",
)


def _feed(panel: LivePanel, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eleven jobs: 4 done, 3 pending, 2 in flight (1 running, 1 in Krea's backlog),
    1 downloading, 1 failed; a clip done every 20 s (3 a minute), so 6 left take 2 minutes."""
    now = iter([0.0, 20.0, 40.0, 60.0])
    monkeypatch.setattr(progress, "time", SimpleNamespace(monotonic=lambda: next(now)))
    panel.start("demo", {S.PENDING: 11})
    for i in range(8):
        panel.job_changed(f"clip{i}", S.PENDING, S.SUBMITTED)
    for i in range(5):
        panel.job_changed(f"clip{i}", S.SUBMITTED, S.COMPLETED, "completed")
    for i in range(4):
        panel.job_changed(f"clip{i}", S.COMPLETED, S.DONE)
    panel.job_changed("clip5", S.SUBMITTED, S.FAILED, "moderation")
    panel.job_changed("clip6", S.SUBMITTED, S.SUBMITTED, "processing")
    panel.job_changed("clip7", S.SUBMITTED, S.SUBMITTED, "backlogged")
    panel.spend_changed(1_230_000, 370_000)


def _assert_shows_all(lines: list[str], width: int) -> None:
    text = "\n".join(lines)
    assert all(len(line) <= width for line in lines), f"a line is wider than {width}:\n{text}"
    missing = [item for item in SHOWN if not any(item in line for line in lines)]
    assert not missing, f"not on any line at width {width}: {missing}\n{text}"
    assert any(BAR.match(line) for line in lines), f"the bar is not alone on a line:\n{text}"


@pytest.mark.parametrize("color", [None, "truecolor"])
@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_panel_shows_every_promised_field_at_any_width(
    width: int, color: Literal["truecolor"] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each field on a line of its own width or less: none is joined to the bar's line and
    cropped (the bug: on a terminal only the head and the spend line were left)."""
    console = Console(
        width=width, record=True, file=io.StringIO(), force_terminal=True, color_system=color
    )
    panel = LivePanel(console, budget_micro=5_000_000)
    _feed(panel, monkeypatch)
    console.print(panel._render())
    _assert_shows_all(_lines(console.export_text(styles=False)), width)


@pytest.mark.parametrize("width", [60, 80, 120])
async def test_the_last_frame_on_the_terminal_shows_every_field(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through rich's Live, which crops each line to the terminal's width."""
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system="truecolor")
    with LivePanel(console, budget_micro=5_000_000) as panel:
        _feed(panel, monkeypatch)
    _assert_shows_all(_last_frame(out), width)


def test_on_a_narrow_terminal_lines_break_between_fields_never_inside_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 40 columns the counts take several lines, each made of whole fields."""
    console = Console(width=40, record=True, file=io.StringIO(), color_system=None)
    panel = LivePanel(console, budget_micro=5_000_000)
    _feed(panel, monkeypatch)
    console.print(panel._render())
    lines = _lines(console.export_text(styles=False))
    assert "done 4 · pending 3" in lines
    assert "in flight 2 (running 1, queued 1)" in lines
    assert "downloading 1 · failed 1 · rejected 0" in lines


def test_before_the_run_starts_the_panel_says_so_and_counts_nothing() -> None:
    """The first frames come while the ledger is planned and lost POSTs settled: no "0/0"."""
    console = Console(width=100, record=True, file=io.StringIO(), color_system=None)
    panel = LivePanel(console, budget_micro=5_000_000)
    panel.batch = "demo"  # named as the manifest is read, before the run starts
    console.print(panel._render())
    (line,) = _lines(console.export_text(styles=False))
    assert line.startswith("starting:")
    panel.start("demo", {JobState.PENDING: 3})
    console.print(panel._render())
    assert "batch demo: 0/3 verified files" in console.export_text(styles=False)


# Storyboards: jobs that wait for another job's result (state ``waiting``) are counted apart from
# the jobs queued at Krea, and the two are never called by one word.


def _storyboard(panel: LivePanel) -> None:
    """Four stills (3 done, 1 failed), four shots planned waiting: two sent (one running, one
    in Krea's backlog), one still waiting for its still, one blocked by the failed still."""
    panel.start("lighthouse", {S.PENDING: 4, S.WAITING: 4})
    for i in range(4):
        panel.job_changed(f"frame{i}", S.PENDING, S.SUBMITTED, "queued")
    for i in range(3):
        panel.job_changed(f"frame{i}", S.SUBMITTED, S.COMPLETED, "completed")
        panel.job_changed(f"frame{i}", S.COMPLETED, S.DONE)
    panel.job_changed("frame3", S.SUBMITTED, S.FAILED, "moderation")
    panel.job_changed("shot0", S.WAITING, S.SUBMITTED, "processing")
    panel.job_changed("shot1", S.WAITING, S.SUBMITTED, "backlogged")


def _panel_lines(panel: LivePanel, console: Console) -> list[str]:
    console.print(panel._render())
    return _lines(console.export_text(styles=False))


def test_jobs_waiting_for_inputs_are_counted_apart_from_jobs_queued_at_krea() -> None:
    """The chained jobs not sent yet are "waiting 2"; Krea's backlog is "queued 1", inside in
    flight; the word "waiting" names only the first."""
    console = Console(width=WIDTH, record=True, file=io.StringIO(), color_system=None)
    panel = LivePanel(console)
    _storyboard(panel)
    lines = _panel_lines(panel, console)
    counts = next(line for line in lines if line.startswith("done "))
    assert counts == (
        "done 3 · pending 0 · waiting 2 · in flight 2 (running 1, queued 1) · downloading 0 · "
        "failed 1"
    ), lines
    assert sum(line.count("waiting") for line in lines) == 1, lines
    panel.job_changed("shot2", S.WAITING, S.SUBMITTED, "queued")
    panel.job_changed("shot3", S.WAITING, S.SUBMITTED, "queued")
    counts = next(line for line in _panel_lines(panel, console) if line.startswith("done "))
    assert "· waiting 0 · in flight 4 (running 1, queued 3) ·" in counts  # kept, at 0


def test_a_batch_without_chained_jobs_shows_no_waiting_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only a batch that has jobs taking others' results shows "waiting"."""
    console = Console(width=WIDTH, record=True, file=io.StringIO(), color_system=None)
    panel = LivePanel(console)
    _feed(panel, monkeypatch)
    assert not [line for line in _panel_lines(panel, console) if "waiting" in line]


def test_plain_and_json_lines_name_the_waiting_state() -> None:
    """The plain start line and the JSON ``start`` counts have "waiting"; a chained job's
    sending is its move from waiting to submitted."""
    plain, machine = io.StringIO(), io.StringIO()
    for reporter in (progress.LineLog(plain), progress.JsonLog(machine)):
        reporter.start("lighthouse", {S.PENDING: 4, S.WAITING: 4})
        reporter.job_changed("shot0", S.WAITING, S.SUBMITTED, "queued")
    first, second = plain.getvalue().splitlines()
    assert first.endswith("batch lighthouse: pending 4, waiting 4")
    assert second.endswith("shot0: waiting -> submitted (queued)")
    start, job = (json.loads(line) for line in machine.getvalue().splitlines())
    assert start["counts"] == {"pending": 4, "waiting": 4}
    assert (job["old"], job["new"]) == ("waiting", "submitted")
