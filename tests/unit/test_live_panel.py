"""The live panel is drawn on the event loop's thread only, by a task the panel owns.

rich's ``Live`` redraws from its own ``_RefreshThread`` by default, and that thread read the tally
while the loop changed it ("dictionary changed size during iteration" froze the panel). These
tests render to a fixed-width terminal in memory and wait on the panel's own draws, never on a
timer. They check how and where the panel is drawn, not what it shows.
"""

from __future__ import annotations

import asyncio
import io
import re
import threading

from rich.console import Console, Group
from rich.live import _RefreshThread

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
