"""The CLI's one logging handler: each record to its batch's display, at the display's level."""

from __future__ import annotations

import io
import logging

from orchestrator.cli.notes import shown_on
from orchestrator.cli.progress import LineLog, Quiet


def _lines(display: LineLog) -> list[str]:
    """What ``display`` printed, without the time stamps."""
    assert isinstance(display.stream, io.StringIO)
    return [line[9:] for line in display.stream.getvalue().splitlines()]


def test_records_go_to_their_batchs_display_and_untagged_ones_to_the_first() -> None:
    """Routing by ``record.batch``; the display's own filter still hides debug lines."""
    east, west = LineLog(io.StringIO(), batch="east"), LineLog(io.StringIO(), batch="west")
    poller = logging.getLogger("orchestrator.poller")
    with shown_on([east, west]):
        poller.warning("sweep failed", extra={"batch": "west"})
        poller.info("space is back", extra={"batch": "east"})
        poller.debug("webhook ignored", extra={"batch": "east"})
        logging.getLogger("orchestrator.simulator.webhooks").warning("untagged")
    poller.warning("after the run", extra={"batch": "east"})
    assert _lines(east) == ["[east] space is back", "[east] warning: untagged"]
    assert _lines(west) == ["[west] warning: sweep failed"]


def test_quiet_shows_errors_only_and_critical_is_an_error() -> None:
    """--quiet's display keeps its filter: a warning is not shown, an error (or worse) is."""
    quiet = Quiet(io.StringIO())
    log = logging.getLogger("orchestrator.downloader")
    with shown_on([quiet]):
        log.warning("retrying", extra={"batch": "b"})
        log.error("downloads paused", extra={"batch": "b"})
        log.critical("worse", extra={"batch": "b"})
    assert _lines(quiet) == ["error: downloads paused", "error: worse"]


def test_the_package_logger_opens_to_what_the_displays_show_then_is_put_back() -> None:
    """During the run the "orchestrator" level is the lowest any display shows; after it, the
    handler is gone and the level is what it was (the NullHandler stays)."""
    top = logging.getLogger("orchestrator")
    before = (top.level, list(top.handlers))
    with shown_on([Quiet(io.StringIO())]):
        assert top.level == logging.ERROR
    with shown_on([Quiet(io.StringIO()), LineLog(io.StringIO())]):
        assert top.level == logging.INFO
        assert len(top.handlers) == len(before[1]) + 1
    assert (top.level, list(top.handlers)) == before
    assert [type(h) for h in top.handlers] == [logging.NullHandler]
