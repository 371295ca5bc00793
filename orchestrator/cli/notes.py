"""The run's log records on its display: the command line's one ``logging`` handler.

The stages say what they meet through ``logging`` (a logger per stage under ``orchestrator``,
each record naming its ``batch``), and the library adds no handler but a NullHandler. For the
length of a ``run``, :func:`shown_on` adds :class:`ToDisplays` to the ``orchestrator`` logger: it
gives each record to the display of its batch as a ``note`` at the record's level (a record that
names no batch, such as the in-process simulator's, to the first display), and each display
filters as it always has: the panel shows warnings and errors, ``--quiet`` errors only.

The logger's level is lowered to the least any display shows (INFO for lines and JSON), else
Python's default, WARNING, would drop the info notes before any handler; it is put back after.
Records still propagate, yet nothing is printed twice: nothing above configures a handler, and
Python's last-resort stderr handler speaks only when no handler at all was found.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from orchestrator.cli.progress import LineLog

PACKAGE = logging.getLogger("orchestrator")


class ToDisplays(logging.Handler):
    """Hands each record to the display of ``record.batch``, as that display's ``note``."""

    def __init__(self, displays: Sequence[LineLog]) -> None:
        super().__init__()
        self.displays = list(displays)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._display_of(getattr(record, "batch", None)).note(
                record.getMessage(), level=_level_name(record.levelno)
            )
        except Exception:  # logging's rule: a handler reports its failure, never raises it
            self.handleError(record)

    def _display_of(self, batch: object) -> LineLog:
        """The display named ``batch`` (read now: a display learns its batch as the run starts)."""
        for display in self.displays:
            if display.batch == batch:
                return display
        return self.displays[0]  # one batch (its display may name none), or an untagged record


def _level_name(levelno: int) -> str:
    """The display's word for a level: ``error`` for ERROR and above."""
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    return "info" if levelno >= logging.INFO else "debug"


@contextmanager
def shown_on(displays: Sequence[LineLog]) -> Iterator[None]:
    """The stages' records on ``displays`` until the block ends (see the module docstring)."""
    handler = ToDisplays(displays)
    before = PACKAGE.level
    PACKAGE.addHandler(handler)
    PACKAGE.setLevel(min(display.min_level for display in displays))
    try:
        yield
    finally:
        PACKAGE.removeHandler(handler)
        PACKAGE.setLevel(before)
