"""The options of the `orchestrator` commands, and the checks click cannot express alone.

Kept apart from ``cli`` so each command there stays a few lines. Every check here fails as a
usage error (exit 2, naming the option) before anything is read, written or sent: a typo in a
flag is bad input, never an "internal error". That covers what click's ranges let through (NaN
and infinity pass ``FloatRange``), and the rules between options (``--poll-min`` above
``--poll-max``, half of webhook mode, ``--quiet`` with ``--json``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from orchestrator.config import (
    DEFAULT_API_BASE,
    DEFAULT_LEDGER,
    DEFAULT_OUT,
    SIMULATED_LEDGER,
    SIMULATED_OUT,
    Settings,
    api_key_from_env,
)
from orchestrator.money.prices import micro_from_usd

#: How a missing key's error ends: the way to try the tool without one.
SIMULATE_HINT = "or add --simulate to try the tool on the built-in simulator"

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[Any], Any]


class Number(click.ParamType[float, Any]):
    """A finite number ``>= minimum`` (``> minimum`` when ``open``): NaN and inf are typos."""

    name = "number"

    def __init__(self, minimum: float = 0.0, *, open: bool = False) -> None:
        self.minimum, self.open = minimum, open

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if number < self.minimum or (self.open and number == self.minimum):
            self.fail(f"{value} is not {'>' if self.open else '>='} {self.minimum:g}", param, ctx)
        return number


class _HostPort(click.ParamType[str, Any]):
    """``HOST:PORT`` with a port from 1 to 65535 (an empty host means 127.0.0.1)."""

    name = "host:port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        _, colon, port = str(value).rpartition(":")
        if not colon or not port.isdigit() or not 1 <= int(port) <= 65535:
            self.fail(f"{value!r} is not HOST:PORT with a port from 1 to 65535", param, ctx)
        return str(value)


class _HttpUrl(click.ParamType[str, Any]):
    """An ``http://`` or ``https://`` URL."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        scheme, sep, rest = text.partition("://")
        if not sep or scheme.lower() not in ("http", "https") or not rest:
            self.fail(f"{text!r} is not an http:// or https:// URL", param, ctx)
        return text


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and isinstance(ctx.obj, dict):
        ctx.obj["debug"] = True  # the group's dict: its one error handler reads it


def debug_option() -> click.Option:
    """``--debug`` on a subcommand: the same switch as ``orchestrator --debug``."""
    return click.Option(
        ["--debug"],
        is_flag=True,
        envvar="ORCHESTRATOR_DEBUG",
        show_envvar=True,
        expose_value=False,
        callback=_set_debug,
        help="Show tracebacks for errors (also accepted before the command).",
    )


def ledger_option(default: str | None = DEFAULT_LEDGER, shown: str | None = None) -> Decorator:
    """``--ledger``; `run` passes no default, so that ``--simulate`` can pick its own."""
    return click.option(
        "--ledger",
        "ledger_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=default,
        show_default=shown or True,
        envvar="ORCHESTRATOR_LEDGER",
        show_envvar=True,
        help="The SQLite ledger file.",
    )


def api_options(f: F) -> F:
    f = click.option(
        "--api-key-file",
        type=click.Path(dir_okay=False),
        envvar="KREA_API_KEY_FILE",
        show_envvar=True,
        help="Read the API key from this file (else KREA_API_KEY).",
    )(f)
    return click.option(
        "--api-base",
        type=_HttpUrl(),
        default=DEFAULT_API_BASE,
        show_default=True,
        envvar="KREA_API_BASE",
        show_envvar=True,
        help="Krea API base URL.",
    )(f)


def _limit_options() -> list[Decorator]:
    positive = Number(0, open=True)
    return [
        click.option(
            "--budget",
            envvar="ORCHESTRATOR_BUDGET",
            show_envvar=True,
            type=Number(0),
            help="Cap in USD for this batch (>= 0).",
        ),
        click.option(
            "--max-in-flight",
            envvar="ORCHESTRATOR_MAX_IN_FLIGHT",
            show_envvar=True,
            type=click.IntRange(1),
            help="Krea concurrency + backlog (>= 1).",
        ),
        click.option(
            "--rps",
            envvar="ORCHESTRATOR_RPS",
            show_envvar=True,
            type=positive,
            help="Requests per second cap (> 0).",
        ),
        click.option(
            "--submit-workers",
            envvar="ORCHESTRATOR_SUBMIT_WORKERS",
            show_envvar=True,
            type=click.IntRange(1, 16),
            default=1,
            show_default=True,
            help="Jobs prepared at once (uploads); their POSTs still take turns, one of the "
            "account on the wire at a time, so attribution after a crash stays exact.",
        ),
        click.option(
            "--download-workers",
            envvar="ORCHESTRATOR_DOWNLOAD_WORKERS",
            show_envvar=True,
            type=click.IntRange(1, 64),
            default=8,
            show_default=True,
            help="Downloads at once.",
        ),
        click.option(
            "--poll-min",
            envvar="ORCHESTRATOR_POLL_MIN",
            show_envvar=True,
            type=positive,
            default=2.0,
            show_default=True,
            help="Shortest time between status sweeps, seconds (<= --poll-max).",
        ),
        click.option(
            "--poll-max",
            envvar="ORCHESTRATOR_POLL_MAX",
            show_envvar=True,
            type=positive,
            default=30.0,
            show_default=True,
            help="Longest time between status sweeps, seconds.",
        ),
    ]


def _mode_options() -> list[Decorator]:
    return [
        click.option(
            "--webhook-url",
            envvar="ORCHESTRATOR_WEBHOOK_URL",
            show_envvar=True,
            type=_HttpUrl(),
            help="Public URL Krea POSTs finished jobs to (webhook mode; needs --webhook-listen).",
        ),
        click.option(
            "--webhook-listen",
            envvar="ORCHESTRATOR_WEBHOOK_LISTEN",
            show_envvar=True,
            type=_HostPort(),
            help="Where the webhook receiver listens (needs --webhook-url).",
        ),
        click.option(
            "--simulate",
            is_flag=True,
            help=(
                "Run against a fresh built-in Krea simulator (no key, no cost), with its own "
                f"defaults --ledger {SIMULATED_LEDGER} --out {SIMULATED_OUT}. Each --simulate run "
                "is a new simulated account: jobs a killed simulated run left in flight cannot be "
                "found again (they end failed; done files are kept)."
            ),
        ),
        click.option(
            "--time-scale",
            type=Number(0, open=True),
            default=None,
            help="API seconds per real second; only meaningful with a simulator [--simulate: 60].",
        ),
        click.option("--dry-run", is_flag=True, help="Validate and estimate only; send nothing."),
    ]


def parse_only(text: str | None) -> tuple[str, ...]:
    """``--only a,b`` as ids: commas or spaces between them, empty parts and repeats dropped."""
    if not text:
        return ()
    return tuple(dict.fromkeys(text.replace(",", " ").split()))


def _trial_options() -> list[Decorator]:
    return [
        click.option(
            "--only",
            metavar="ID[,ID...]",
            help="Send only these jobs (ids as `orchestrator jobs` lists them; a name that is no "
            "job's id takes the jobs whose ids start with it and '_', as an entry's id takes "
            "what its expand or takes made). The rest stay pending for a later run.",
        ),
        click.option(
            "--limit",
            type=click.IntRange(1),
            help="Send only the first N jobs of each batch, in manifest order (done ones count: "
            "the same --limit again sends nothing new).",
        ),
        click.option(
            "--resume-cancelled",
            is_flag=True,
            help="Send the pending jobs of a batch `orchestrator cancel` stopped.",
        ),
    ]


def _output_options() -> list[Decorator]:
    return [
        click.option(
            "--progress",
            envvar="ORCHESTRATOR_PROGRESS",
            show_envvar=True,
            type=click.Choice(["auto", "live", "plain", "json", "quiet"]),
            default="auto",
            show_default=True,
            help="How to show progress (README, Commands).",
        ),
        click.option(
            "--quiet",
            is_flag=True,
            help="Same as --progress quiet: errors only, then one summary line on stdout.",
        ),
        click.option(
            "--json",
            "json_log",
            is_flag=True,
            help="Same as --progress json: JSON lines on stderr, ending with an `end` event.",
        ),
        ledger_option(None, f"{DEFAULT_LEDGER}; {SIMULATED_LEDGER} with --simulate"),
        click.option("--seed", type=int, envvar="ORCHESTRATOR_SEED", hidden=True),  # tests
    ]


def run_options(f: F) -> F:
    """The options `run` and `retry` share, in the order `--help` lists them."""
    out = click.option(
        "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
        show_default=f"out; {SIMULATED_OUT} with --simulate", envvar="ORCHESTRATOR_OUT",
        show_envvar=True, help="Folder the files (clips and stills) are written under.",
    )  # fmt: skip
    return _with(f, [out, *_limit_options(), *_trial_options()])


def reroll_options(f: F) -> F:
    """`run`'s options but those the batch decides for a reroll: its folder and its jobs."""
    return _with(f, _limit_options())


def _with(f: F, options: list[Decorator]) -> F:
    """``f`` with the API options, then ``options``, then the mode and output ones."""
    f = api_options(f)
    for option in reversed([*options, *_mode_options(), *_output_options()]):
        f = option(f)
    return f


def check_run_options(options: dict[str, Any]) -> str:
    """The rules between `run`'s options, as usage errors; returns the progress mode."""
    if options["poll_min"] > options["poll_max"]:
        raise click.BadOptionUsage(
            "poll_min",
            f"--poll-min ({options['poll_min']:g}) must not exceed --poll-max "
            f"({options['poll_max']:g})",
        )
    if bool(options["webhook_url"]) != bool(options["webhook_listen"]):
        given, missing = (
            ("--webhook-url", "--webhook-listen")
            if options["webhook_url"]
            else ("--webhook-listen", "--webhook-url")
        )
        raise click.BadOptionUsage(
            given, f"{given} needs {missing}: webhook mode takes both (README, Webhook mode)"
        )
    return _progress_mode(options)


def _progress_mode(options: dict[str, Any]) -> str:
    """--quiet and --json are shorthands; two different modes at once are a usage error.

    A mode from ORCHESTRATOR_PROGRESS gives way to --quiet or --json on the command line.
    """
    source = click.get_current_context().get_parameter_source("progress")
    from_env = source is click.core.ParameterSource.ENVIRONMENT
    shorthand = options["quiet"] or options["json_log"]
    chosen = set() if from_env and shorthand else {options["progress"]} - {"auto"}
    chosen |= {"quiet"} if options["quiet"] else set()
    chosen |= {"json"} if options["json_log"] else set()
    if len(chosen) > 1:
        raise click.UsageError(
            f"choose one progress mode, not {' and '.join(sorted(chosen))} "
            "(--quiet is --progress quiet, --json is --progress json)"
        )
    return chosen.pop() if chosen else "auto"


def view_options(f: F) -> F:
    """`view`'s address: loopback unless told otherwise."""
    host = click.option(
        "--host", default="127.0.0.1", envvar="ORCHESTRATOR_VIEW_HOST", show_default=True,
        show_envvar=True,
        help="Address to listen on; anything but loopback is reachable by others (warned).",
    )  # fmt: skip
    port = click.option(
        "--port", type=click.IntRange(0, 65535), default=8765, envvar="ORCHESTRATOR_VIEW_PORT",
        show_default=True, show_envvar=True, help="Port to listen on (0: any free port).",
    )  # fmt: skip
    return host(port(f))


def run_settings(**options: Any) -> Settings:
    """Settings from `run`'s options (the key never comes from a flag).

    ``--simulate`` gets its own ledger and output folder unless given: a simulated MP4 must never
    sit where a paid one is expected, nor a simulated job in a ledger a real run resumes.
    """
    simulate, budget = options["simulate"], options["budget"]
    keyless = simulate or options["dry_run"]
    ledger = options["ledger_path"] or Path(SIMULATED_LEDGER if simulate else DEFAULT_LEDGER)
    return Settings(
        api_base=options["api_base"],
        api_key="" if keyless else api_key_from_env(options["api_key_file"], hint=SIMULATE_HINT),
        ledger_path=ledger,
        out_dir=options["out_dir"] or Path(SIMULATED_OUT if simulate else DEFAULT_OUT),
        time_scale=options["time_scale"] or (60.0 if simulate else 1.0),
        submit_workers=options["submit_workers"],
        download_workers=options["download_workers"],
        max_in_flight=options["max_in_flight"],
        requests_per_second=options["rps"],
        budget_micro=None if budget is None else micro_from_usd(budget),
        retry_failed=options["retry_failed"],
        poll_min_s=options["poll_min"],
        poll_max_s=options["poll_max"],
        webhook_url=options["webhook_url"],
        webhook_listen=options["webhook_listen"],
        seed=options["seed"],
        only=parse_only(options["only"]),
        limit=options["limit"],
        resume_cancelled=options["resume_cancelled"],
        account_registry=not simulate,  # the embedded simulator's account is this run's alone
    )
