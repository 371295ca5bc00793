"""``orchestrator simulate``: the simulator as a command, with flags generated from its options.

Every ``SimulatorOptions`` field becomes ``--field-name`` (booleans get ``--x/--no-x``), with the
field's help text, choices and ``cli_default``, and an environment variable ``KREA_SIM_<NAME>``.
Generating the flags means a new option can never be forgotten on the command line. It lives in
``cli/`` (not in ``simulator/``) because click is the front's alone; ``cli`` registers it.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, fields
from typing import Any

import click

from orchestrator.simulator.options import SimulatorOptions, coerce_option, option_types

_CLICK_TYPES: dict[type, click.ParamType[Any]] = {
    int: click.INT,
    float: click.FLOAT,
    str: click.STRING,
}


def _default(f: Field[Any]) -> Any:
    if "cli_default" in f.metadata:
        return f.metadata["cli_default"]
    return None if f.default is MISSING else f.default


def _option(f: Field[Any]) -> click.Option:
    base, _nullable = option_types()[f.name]
    flag = "--" + f.name.replace("_", "-")
    envvar = "KREA_SIM_" + f.name.upper()
    common: dict[str, Any] = {
        "help": f.metadata["help"],
        "default": _default(f),
        "show_default": True,
        "envvar": envvar,
        "show_envvar": True,
    }
    if base is bool:
        return click.Option([f"{flag}/--no-{flag[2:]}", f.name], **common)
    choices = f.metadata.get("choices")
    kind = click.Choice([str(c) for c in choices]) if choices else _CLICK_TYPES[base]
    if choices:
        common["default"] = str(common["default"])
    return click.Option([flag, f.name], type=kind, **common)


def _run(**values: Any) -> None:
    try:
        options = SimulatorOptions(**{k: coerce_option(k, v) for k, v in values.items()})
    except (TypeError, ValueError) as problem:
        raise click.UsageError(str(problem)) from None
    from orchestrator.simulator.runner import serve  # aiohttp's server: only when it runs

    serve(options)


simulate = click.Command(
    "simulate",
    callback=_run,
    params=[_option(f) for f in fields(SimulatorOptions)],
    help=(
        "Run a local server that speaks Krea's API (jobs, backlog, billing, webhooks, media) "
        "with seeded faults. Point the orchestrator at it with KREA_API_BASE=<printed URL>. "
        "The /_sim/ routes (stats, jobs, advance, config) are for tests and benchmarks only."
    ),
    short_help="Run a local Krea API simulator.",
)
