"""orchestrator: a YAML manifest of video prompts in, verified MP4s out, through Krea's API.

Crash-safe (stop it any time; run it again), pays once per clip, and accounts for every dollar.
The command line is ``orchestrator --help``; from Python see :mod:`orchestrator.api`. The public
names below are loaded on first use, so ``import orchestrator`` (and ``orchestrator --help``)
does not pay for aiohttp, SQLite and the spec until something needs them.

Module map
----------
The tree reads input (``manifest/``), run (the root modules), output (``money/``), with the
front ends above and the base below. A module imports from its own layer and from the layers
its arrow reaches, never upwards; no two modules import each other, even for types.
``tests/test_layout.py`` checks this map against the tree and every import against the arrows.

Layers::

    front     -> runner, simulator
    runner    -> stages
    stages    -> manifest, services
    manifest  -> money
    money     -> services
    services  -> base
    simulator -> base
    base      -> (nothing)

Modules (a package's line names every module in it)::

    front
      cli/          the command line, the only user of click and rich: parsing (cli), options,
                    their checks and the Settings they make (cli_options), each command's body
                    (commands), cancel, the one reader that talks to Krea (cancel_command), the
                    jobs listing read page by page (jobs_listing), run and retry of one or
                    several manifests (run_command), the new takes a review asked for
                    (reroll_command), what a running batch shows (progress), the run's log
                    records on that display (notes), the simulator as a command (simulate)
      view/         `orchestrator view`, the review page on a ledger: app (routes, the request
                    guard), pages (HTML), gallery (a page of clips as JSON), summary (a batch's
                    line), live (server-sent updates), files (clips and posters, only as the
                    ledger records them), review (marks, reroll as a child), serve (bind, run)
      api           the Python API: run, jobs, report, for notebooks and scripts
      __main__      python -m orchestrator
    runner
      runner        one run, start to end: plan, recover, then submit, poll and download
    stages
      startup       a run's start: the manifest into the ledger, the ledger into a work state
      pipeline      what one run's workers share: ledger, client, limits, budget, reporter
      budget        the cap: a job's price reserved in the same step that checks it
      selection     a trial run's jobs (--only, --limit): the rest stay pending
      submitter     pending -> submitting -> submitted, durable on each side of the POST
      uploads       a request's local files, uploaded once each, replaced by their URLs
      input_urls    a request's {from: ID} markers replaced by result URLs, with fallbacks
      reconcile     POSTs whose answer was lost, settled through GET /jobs before resending
      strangers     other clients' jobs on the account: seen, recorded, never touched
      poller        noticing finished jobs with as few list sweeps as Krea allows
      sweep_schedule when the poller sweeps again: every poll_min while an end is unknown
      forecast      when in-flight jobs will finish, from the model's past jobs (pure)
      downloader    completed -> downloading -> done, by a fixed pool of workers
      transfer      one verified file from one URL, never partial under its final name
      webhooks      the receiver for Krea's completion hints
      picks         the deliverable set: picked clips linked into a folder, with their list
    manifest
      manifest/     YAML in, job specs out: yaml_safe (hostile-input YAML), manifest (the
                    file's top level), entries (defaults, expand, takes; each shape checked
                    once), ids (an entry's id checked, or named after its prompt), defaults
                    (defaults_by_model:, null unsets, a default's source in errors), planning
                    (per-job checks, keys), output_paths (safe, unique paths), local_files
                    (uploads), references ({from: ID}: one job's result as another's input)
    money
      money/        prices (one request), costs (estimates), rows (the ledger rows it reads),
                    accounting (spend by batch, model, state), spend_history (money over
                    time), report_sections (what every format shows), reports (table, CSV,
                    JSON, summary), report_html (the page), export (every row, streamed)
    services
      client        Krea's HTTP API as typed calls, each answer parsed or made an error
      answers       Krea's answers read tolerantly: jobs, pages, errors, Retry-After, times
      registry/     what every run of one account on this machine sent: account (a run's
                    handle), store (the shared SQLite file), turn (the POST turn that makes a
                    lost POST provably one run's), processes (liveness, the turn's lock)
      attribution   which job a lost POST made, by windows of Krea's clock (pure)
      ledger/       SQLite, the only SQL: store, commits (group commit), plan_queries,
                    chain_queries (results taken as inputs: edges, waiting, blocked), records,
                    report_queries, review_queries (marks, rerolls), takes (what a reroll
                    takes again, down a chain), view_queries (the review page's reads),
                    migrations, lock (one writer)
      limits        the request pacer (asyncio-throttle) and the in-flight window
      retry         what a failed request means and how long to wait (pure)
      mp4           is this file a complete MP4: a walk over its top-level boxes
      image_file    is this file a complete PNG, JPEG or WebP: a walk over its chunks
      still_names   a still's file is named by its verified format: planned x.{ext}, saved x.png
      posters       a clip's first frame as a small JPEG, made once, lazily, off the loop
    simulator
      simulator/    the Krea-compatible server, which never imports the client side: app,
                    admission, gate, control, cdn, service, accounts, lifecycle, job,
                    outcomes, billing, assets, media, webhooks, faults, responses, clock,
                    counters, stats, options, runner, images, inputs, results
    base
      errors        every error, under one root, with the fields a caller acts on
      jobs          the state machine: local states, Krea's statuses, the legal moves
      chains        a job that takes another's result: the marker its request holds
      clock         the one seam through which time is read
      config        one frozen Settings per command: flag > environment > manifest > default
      spec          Krea's OpenAPI document: endpoints, request schemas, price tables
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.api import ajobs, areport, arun, report, run
    from orchestrator.config import Settings
    from orchestrator.errors import OrchestratorError
    from orchestrator.jobs import JobRecord
    from orchestrator.manifest.manifest import Manifest, load_manifest
    from orchestrator.money.costs import estimate
    from orchestrator.runner import RunSummary

# Messages are log records of "orchestrator.<module>" loggers. As Python's logging HOWTO asks of
# a library, the only handler added is a NullHandler: the program decides what is shown, and
# an unconfigured one shows nothing (as before), not stdlib's last-resort lines on stderr.
logging.getLogger(__name__).addHandler(logging.NullHandler())

# The state machine module is loaded now (it imports nothing of ours) because the public function
# ``jobs`` below shares its name: loading the submodule sets the package attribute
# ``orchestrator.jobs``, so it must happen before the function is defined, never after.
importlib.import_module("orchestrator.jobs")

__version__ = "0.1.0"
__all__ = [
    "Manifest",
    "OrchestratorError",
    "RunSummary",
    "Settings",
    "ajobs",
    "areport",
    "arun",
    "estimate",
    "jobs",
    "load_manifest",
    "report",
    "run",
]

#: Where each public name lives; imported on first use (see the module docstring).
_HOMES = {
    "Manifest": "orchestrator.manifest.manifest",
    "OrchestratorError": "orchestrator.errors",
    "RunSummary": "orchestrator.runner",
    "Settings": "orchestrator.config",
    "ajobs": "orchestrator.api",
    "areport": "orchestrator.api",
    "arun": "orchestrator.api",
    "estimate": "orchestrator.money.costs",
    "load_manifest": "orchestrator.manifest.manifest",
    "report": "orchestrator.api",
    "run": "orchestrator.api",
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its home on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The loaded names and the public ones not yet loaded."""
    return sorted({*globals(), *__all__})


def jobs(ledger: str | Path = "orchestrator.db", *, batch: str | None = None) -> list[JobRecord]:
    """Every job row of the ledger (or of one batch), in manifest order: see :mod:`.api`."""
    from orchestrator.api import jobs as read_jobs

    return read_jobs(ledger, batch=batch)
