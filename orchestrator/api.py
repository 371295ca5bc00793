"""A small Python API for notebooks and scripts: run a manifest, read the ledger, get the numbers.

    import orchestrator
    summary = orchestrator.run("jobs.yaml", ledger="orchestrator.db", out="out")   # blocking
    summary = await orchestrator.arun("jobs.yaml")                                 # in a notebook
    jobs = orchestrator.jobs("orchestrator.db", batch="demo")                      # JobRecord list
    figures = orchestrator.report("orchestrator.db")                              # the report JSON

The key comes from ``KREA_API_KEY`` (or ``api_key_file=``, or ``api_key=``), as for the command
line, and keyword arguments are :class:`~orchestrator.config.Settings` fields. A missing ledger
or batch raises :class:`~orchestrator.errors.InputError`, as the CLI exits 2 for it. Jupyter
already runs an event loop, so there use the ``a``-prefixed coroutines; the plain functions say
so if called there.

What a run meets (a sweep that failed, a download retried, jobs the budget holds back) is logged
through ``logging``: loggers ``orchestrator.<stage>``, records carrying their ``batch``, and no
handler but a NullHandler, so nothing is printed until the program configures logging.
``reporter=`` receives the run's structured events (:class:`~orchestrator.pipeline.Reporter`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.cli.commands import read_ledger
from orchestrator.config import Settings, api_key_from_env
from orchestrator.errors import ConfigError
from orchestrator.jobs import JobRecord
from orchestrator.money import reports
from orchestrator.pipeline import Reporter
from orchestrator.runner import RunSummary
from orchestrator.runner import run as run_batch

T = TypeVar("T")


async def arun(
    manifest: str | Path, *, ledger: str | Path = "orchestrator.db", out: str | Path = "out",
    reporter: Reporter | None = None, api_key_file: str | None = None, **settings: Any,
) -> RunSummary:  # fmt: skip
    """Run ``manifest`` to verified files; resumes whatever the ledger holds."""
    key = settings.pop("api_key", None) or api_key_from_env(
        api_key_file, hint="or pass api_key= (a simulator's URL as api_base=)"
    )
    config = Settings(api_key=key, ledger_path=Path(ledger), out_dir=Path(out)).with_(**settings)
    return await run_batch(manifest, config, reporter)  # loaded only if the ledger lacks its jobs


async def ajobs(
    ledger: str | Path = "orchestrator.db", *, batch: str | None = None
) -> list[JobRecord]:
    """Every job row of the ledger (or of one batch), in manifest order."""
    async with read_ledger(ledger, batch) as book:
        return await book.jobs(batch=batch)


async def areport(
    ledger: str | Path = "orchestrator.db", *, batch: str | None = None
) -> dict[str, Any]:
    """The report as the documented JSON object (see ``reports``)."""
    async with read_ledger(ledger, batch) as book:
        data: dict[str, Any] = json.loads(await reports.render(book, batch, "json"))
        return data


def run(manifest: str | Path, **kwargs: Any) -> RunSummary:
    """Blocking :func:`arun`."""
    return _blocking(arun(manifest, **kwargs))


def jobs(ledger: str | Path = "orchestrator.db", *, batch: str | None = None) -> list[JobRecord]:
    """Blocking :func:`ajobs`."""
    return _blocking(ajobs(ledger, batch=batch))


def report(ledger: str | Path = "orchestrator.db", *, batch: str | None = None) -> dict[str, Any]:
    """Blocking :func:`areport`."""
    return _blocking(areport(ledger, batch=batch))


def _blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    coroutine.close()
    raise ConfigError(
        "an event loop is already running (Jupyter?): use `await orchestrator.arun(...)`"
    )
