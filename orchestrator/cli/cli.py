"""The `orchestrator` command: parse arguments, build Settings, call the library, print the result.

Nothing below this module and its options (``cli_options``) imports click. Every command is
thin: the work lives in ``commands`` and below. One error handler (:class:`_Main`) turns any
``OrchestratorError`` into ``Error: <message>`` on stderr and the exit code of its class; the
traceback is shown only with ``--debug`` (or ``ORCHESTRATOR_DEBUG=1``).

Exit codes: 0 every job has its verified file; 1 some jobs failed, were rejected or cancelled;
2 bad input: manifest, a flag's value (click's usage errors too), no key, no such ledger or batch
(nothing was changed); 3 stopped by the budget or by Krea's 402; 4 could not run (ledger busy,
key refused, ...); 130 interrupted (run the same command again to resume).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import click

from orchestrator import errors
from orchestrator.cli.cli_options import (
    Number,
    api_options,
    check_run_options,
    debug_option,
    ledger_option,
    reroll_options,
    run_options,
    run_settings,
    view_options,
)
from orchestrator.cli.simulate import simulate
from orchestrator.config import DEFAULT_LEDGER, SIMULATED_LEDGER, Settings, api_key_from_env
from orchestrator.jobs import JobState

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _commands() -> ModuleType:
    """The commands' bodies, imported when one runs: `--help` need not load aiohttp or SQLite."""
    return importlib.import_module("orchestrator.cli.commands")


class _Main(click.Group):
    """The command group, with the one error handler."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.OrchestratorError as exc:
            self._show_traceback(ctx)
            click.echo(f"Error: {exc.message}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug of ours: one line, not a traceback (the ledger is safe)
            shown = self._show_traceback(ctx)
            then = "report the traceback above" if shown else "rerun with --debug and report it"
            click.echo(
                f"Error: internal error ({type(exc).__name__}); the ledger is consistent "
                f"and the same command resumes. Please {then}.",
                err=True,
            )
            ctx.exit(errors.EXIT_CANNOT_RUN)

    @staticmethod
    def _show_traceback(ctx: click.Context) -> bool:
        """Print the traceback under --debug; returns whether it did."""
        if ctx.obj and ctx.obj.get("debug"):
            traceback.print_exc()
            return True
        return False


@click.group(
    cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="orchestrator")
@click.option(
    "--debug",
    is_flag=True,
    envvar="ORCHESTRATOR_DEBUG",
    show_envvar=True,
    help="Show tracebacks for errors.",
)
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Turn a YAML manifest of video prompts into verified MP4s through Krea's API.

    Safe to stop at any moment and run again: nothing is lost and nothing is paid twice.
    """
    ctx.obj = {"debug": debug}


main.add_command(simulate)


def table_or_json(help_text: str) -> Callable[[F], F]:
    """``--format table|json`` (default table), as ``fmt``: the readers' shared option."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help=help_text,
    )


@main.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@run_options
@click.option(
    "--retry-failed",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Give each failed or cancelled job up to N new attempts in this run.",
)
def run(manifests: tuple[str, ...], retry_failed: int, **options: Any) -> None:
    """Send every job of MANIFESTS and download each result, resuming where the ledger stands.

    Several manifests run as several batches of one run: one in-flight window for the account,
    each batch its own budget and summary; the exit code is the worst batch's.
    """
    _run_manifest(manifests, retry_failed, options)


@main.command()
@click.argument("manifests", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@run_options
@click.option(
    "--attempts",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="New attempts each failed or cancelled job gets.",
)
def retry(manifests: tuple[str, ...], attempts: int, **options: Any) -> None:
    """Resubmit MANIFESTS' failed and cancelled jobs as new attempts, then finish the batches.

    A batch `orchestrator cancel` stopped is resumed: retrying it is asking for its jobs.
    """
    _run_manifest(manifests, attempts, options | {"resume_cancelled": True})


@main.command()
@click.option("--batch", required=True, help="The batch whose rejected clips are taken again.")
@reroll_options
def reroll(batch: str, **options: Any) -> None:
    """Send a new take of every clip of BATCH rejected in `orchestrator view`, then finish it.

    Each rejected clip keeps its file, cost and history; its new take is a job of its own whose
    file lands beside the first (hero.mp4 -> hero~r2.mp4). The batch's manifest sends it, and
    only the new takes are sent. Run it again after a kill: no clip is taken twice.
    """
    options |= {"out_dir": None, "only": None, "limit": None, "resume_cancelled": True}
    progress = check_run_options(options)
    settings = run_settings(retry_failed=0, **options)
    takes = importlib.import_module("orchestrator.cli.reroll_command")
    dry_run = options["dry_run"]
    record, text = _run_async(takes.prepare_takes(settings, batch, dry_run=dry_run))
    click.echo(text, err=True)
    if dry_run:
        sys.exit(errors.EXIT_OK)
    settings = takes.reroll_settings(settings, record)
    running = importlib.import_module("orchestrator.cli.run_command")
    run = running.run(
        [record.manifest_path],
        settings,
        progress=progress,
        simulate=options["simulate"],
        dry_run=False,
    )
    sys.exit(_run_async(run))


@main.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
def validate(manifest: str) -> None:
    """Check MANIFEST (schema, prices, paths) without sending or writing anything."""
    click.echo(_commands().validate(manifest))


@main.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--budget", type=Number(0), help="Check the estimate against this cap in USD.")
@table_or_json("table for people, json for programs (shape in the README).")
def estimate(manifest: str, budget: float | None, fmt: str) -> None:
    """Jobs and cost per model and in total, before anything is sent."""
    text, fits = _commands().estimate(manifest, budget, fmt)
    click.echo(text)
    sys.exit(errors.EXIT_STOPPED if fits is False else errors.EXIT_OK)


@main.command()
@ledger_option()
@click.option("--batch", help="Only this batch.")
@table_or_json("table for people, json for programs (shape in the README).")
def status(ledger_path: Path, batch: str | None, fmt: str) -> None:
    """Jobs per batch and state, orphans, and the age of the oldest job in flight (no API key)."""
    click.echo(_run_async(_commands().status(ledger_path, batch, fmt)))


@main.command()
@ledger_option()
@click.option("--batch", help="Only this batch.")
@click.option(
    "--state",
    "states",
    metavar="STATE[,STATE...]",
    callback=lambda _ctx, _param, value: _job_states(value),
    help="Only jobs in these states, e.g. failed,rejected.",
)
@table_or_json("table for people (100 columns), json for programs (every field in full).")
def jobs(ledger_path: Path, batch: str | None, states: list[JobState] | None, fmt: str) -> None:
    """Each job of the current manifests, in manifest order: id, model, state, price, reason
    (why it failed) and file (no API key)."""
    listing = importlib.import_module("orchestrator.cli.jobs_listing")
    try:
        _run_async(listing.jobs(ledger_path, batch, states, fmt, click.echo))
    except BrokenPipeError:  # `orchestrator jobs | head`: the reader has read all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit


def _job_states(value: str | None) -> list[JobState] | None:
    """`--state failed,rejected` as states; an unknown name is a usage error naming the valid."""
    if value is None:
        return None
    valid = [s.value for s in JobState if s is not JobState.ORPHAN]
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in valid]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown state {', '.join(map(repr, unknown)) or repr(value)}; "
            f"valid states: {', '.join(valid)}",
            param_hint="'--state'",
        )
    return [JobState(name) for name in dict.fromkeys(names)]


@main.command()
@ledger_option()
@click.option("--batch", help="Only this batch.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "html"]),
    default="table",
    show_default=True,
    help="table, csv, json (stable shape, see README) or a self-contained html page.",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file."
)
def report(ledger_path: Path, batch: str | None, fmt: str, output: Path | None) -> None:
    """Spend by batch, model, status and day; billed vs free vs in flight; orphans itemised."""
    _emit(_run_async(_commands().report(ledger_path, batch, fmt)), output)


@main.command()
@ledger_option()
@click.option("--batch", help="Only this batch.")
@click.option("--events", is_flag=True, help="Export the event history instead of the jobs.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="csv (one row per job or event) or json (a list of objects).",
)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file."
)
@click.option("--picks", is_flag=True, help="Put the batch's picked clips in --to DIR instead.")
@click.option(
    "--to",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="The --picks folder.",
)
def export(
    ledger_path: Path, batch: str | None, events: bool, fmt: str, output: Path | None, picks: bool,
    to: Path | None,
) -> None:  # fmt: skip
    """Export the ledger's jobs (or events) as CSV or JSON.

    With --batch B --picks --to DIR: B's picked clips, done and verified, hard-linked (or copied)
    into DIR at their output paths, listed in DIR/picks.csv; exit 1 if a pick is left out.
    """
    if picks or to is not None:
        if not (picks and to and batch) or events or output:
            raise click.UsageError("--picks, --to DIR and --batch go together, without --events/-o")
        _commands().require_ledger(ledger_path)
        picking = importlib.import_module("orchestrator.picks")
        sys.exit(_run_async(picking.export_picks_at(ledger_path, batch, to, click.echo)))
    _run_async(_commands().export(ledger_path, batch, events, fmt, output, click.echo))


@main.command()
@click.option("--batch", required=True, help="The batch whose jobs in flight are cancelled.")
@ledger_option()
@api_options
def cancel(batch: str, ledger_path: Path, api_base: str, api_key_file: str | None) -> None:
    """Cancel (DELETE) every job of BATCH still in flight at Krea; cancelled jobs are free.

    The batch is marked cancelled: `run` sends its pending jobs again only with
    --resume-cancelled. Without --api-base, the requests go where the batch's last run sent its
    own. Refused while a `run` holds the ledger (stop it first). Ambiguous jobs are skipped and
    counted: their Krea job id is unknown until the next `run` reconciles them.
    """
    settings = Settings(
        api_base=api_base, api_key=api_key_from_env(api_key_file), ledger_path=ledger_path
    )
    source = click.get_current_context().get_parameter_source("api_base")
    recorded = source in (None, click.core.ParameterSource.DEFAULT)
    cancelling = importlib.import_module("orchestrator.cli.cancel_command")
    click.echo(_run_async(cancelling.cancel(settings, batch, recorded_base=recorded)))


@main.command()
@ledger_option(default=None, shown=f"{DEFAULT_LEDGER}; {SIMULATED_LEDGER} with --simulate")
@view_options
@click.option("--simulate", is_flag=True, help="Rerolls started from the page use the simulator.")
def view(ledger_path: Path | None, host: str, port: int, simulate: bool) -> None:
    """Serve a local web page to watch batches, review clips (pick, reject) and reroll rejects.

    Runs until Ctrl-C, beside a `run` too (it writes only marks); needs no API key.
    """
    ledger = ledger_path or Path(SIMULATED_LEDGER if simulate else DEFAULT_LEDGER)
    _commands().require_ledger(ledger)
    serving = importlib.import_module("orchestrator.view.serve")
    _run_async(serving.serve(ledger, host, port, simulate=simulate, echo=click.echo))


# `--debug` after the command too (`orchestrator run x --debug`), as the error hint suggests.
for _command in main.commands.values():
    _command.params.append(debug_option())


def _run_manifest(manifests: tuple[str, ...], retry_failed: int, options: dict[str, Any]) -> None:
    """`run` and `retry`: the same run, with more or fewer new attempts for failed jobs."""
    progress = check_run_options(options)
    settings = run_settings(retry_failed=retry_failed, **options)
    if settings.webhook_listen and not options["dry_run"]:  # before the ledger is written
        importlib.import_module("orchestrator.webhooks").check_listen(settings.webhook_listen)
    flags = {name: options[name] for name in ("simulate", "dry_run")}
    running = importlib.import_module("orchestrator.cli.run_command")
    sys.exit(_run_async(running.run(manifests, settings, progress=progress, **flags)))


def _run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; SIGINT/SIGTERM cancel it and exit 130 (the ledger is always resumable)."""

    async def guarded() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
        return await coroutine

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        raise errors.Interrupted() from None


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}", err=True)
