"""Messages are `logging` records: a logger per stage under "orchestrator", the batch attached,
no handler of the library's own but a NullHandler, so a program routes or silences them itself."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import orchestrator
from orchestrator.manifest.manifest import load_manifest
from orchestrator.pipeline import NullReporter
from orchestrator.runner import run_many
from tests.conftest import StartSimulator
from tests.integration.pipeline_support import manifest_text, settings_for

TOKEN = "sk-test-logging-0000"
HELD = "the budget cap holds back"
#: The held-back warning's text after the entry id, as the CLI has always shown it.
HELD_TAIL = "and every job after it that does not fit; the summary counts them and says what " \
    "sending them needs"  # fmt: skip


@contextmanager
def level(name: str, value: int) -> Iterator[None]:
    """Set a logger's level as a program would, and put it back after."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(value)
    try:
        yield
    finally:
        logger.setLevel(before)


def _capped(root: Path) -> Path:
    """Six $0.3667 clips under a $1.00 cap: one held-back warning."""
    root.mkdir(exist_ok=True)
    (root / "jobs.yaml").write_text(manifest_text(6, batch="capped"))
    return root / "jobs.yaml"


async def _capped_run(sim_url: str, root: Path) -> None:
    """The capped manifest through the Python API."""
    await orchestrator.arun(
        _capped(root), ledger=root / "ledger.db", out=root / "out", api_key=TOKEN, api_base=sim_url,
        time_scale=1000, budget_micro=1_000_000,
    )  # fmt: skip


def _held(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if HELD in r.getMessage()]


async def test_a_warning_is_a_record_of_its_stages_logger_naming_its_batch(
    simulator: StartSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The budget's warning: logger orchestrator.submitter, WARNING, the CLI's text, its batch."""
    sim = await simulator(time_scale=1000, tokens=TOKEN)
    caplog.set_level(logging.DEBUG, logger="orchestrator")
    await _capped_run(sim.url, tmp_path)
    (record,) = _held(caplog)
    assert record.name == "orchestrator.submitter"
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(f"{HELD} j")
    assert record.getMessage().endswith(HELD_TAIL)
    assert record.batch == "capped"  # type: ignore[attr-defined]
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


async def test_a_level_set_on_the_package_or_one_stage_silences_it(
    simulator: StartSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A program's own levels win: ERROR on "orchestrator" or on the submitter alone hides the
    warning, and the default (no configuration) lets it through to the program's handlers."""
    sim = await simulator(time_scale=1000, tokens=TOKEN)
    with level("orchestrator", logging.ERROR):
        await _capped_run(sim.url, tmp_path / "package")
    with level("orchestrator.submitter", logging.ERROR):
        await _capped_run(sim.url, tmp_path / "stage")
    assert not _held(caplog)
    await _capped_run(sim.url, tmp_path / "default")
    assert len(_held(caplog)) == 1


async def test_each_batch_of_a_run_tags_its_own_records(
    simulator: StartSimulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two capped batches in one run: each warning names the batch it is about."""
    sim = await simulator(time_scale=1000)
    caplog.set_level(logging.INFO, logger="orchestrator")
    manifests = []
    for name in ("east", "west"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(manifest_text(4, batch=name, extra="budget_usd: 0.5\n"))
        manifests.append(load_manifest(path))
    settings = settings_for(sim, tmp_path)
    await run_many(manifests, settings, [NullReporter(), NullReporter()])
    assert sorted(r.batch for r in _held(caplog)) == ["east", "west"]  # type: ignore[attr-defined]


def test_the_library_adds_only_a_null_handler() -> None:
    """Python's logging HOWTO for libraries: a NullHandler on the top logger, nothing else, and
    no level of its own, so the program decides what is shown (and, unconfigured, nothing is)."""
    for module in ("orchestrator.api", "orchestrator.cli.notes"):  # every stage, the CLI's
        importlib.import_module(module)

    top = logging.getLogger("orchestrator")
    assert [type(h) for h in top.handlers] == [logging.NullHandler]
    assert top.level == logging.NOTSET
    ours = [
        logging.getLogger(name)
        for name in logging.root.manager.loggerDict
        if name.startswith("orchestrator.") and not name.startswith("orchestrator.simulator")
    ]
    assert all(not logger.handlers and logger.level == logging.NOTSET for logger in ours)
