"""The README and the command line agree: every command documented, every documented one real."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from orchestrator.cli.cli import main

README = (Path(__file__).parent.parent / "README.md").read_text()
COMMANDS = sorted(main.commands)


def documented_commands() -> set[str]:
    return set(re.findall(r"`orchestrator ([a-z]+)", README))


def test_every_command_is_in_the_readme() -> None:
    """A command nobody can find in the README is a command that does not exist for users."""
    assert set(COMMANDS) <= documented_commands()


def test_every_command_in_the_readme_exists() -> None:
    """The README never advertises a command the CLI lacks."""
    assert documented_commands() <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_help_is_complete(name: str) -> None:
    """`--help` works for each command, and every option explains itself."""
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    command = main.commands[name]
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{name} {param.opts[0]} has no help text"


def test_run_options_in_the_readme_exist() -> None:
    """Every `--flag` the README's run table names is a real option of `run`."""
    table = README.split("Options of `run`", 1)[1].split("\n\n", 2)[1]
    flags = set(re.findall(r"`(--[a-z-]+)", table))
    real = {opt for p in main.commands["run"].params for opt in getattr(p, "opts", [])}
    assert flags
    assert flags <= real, flags - real


def test_exit_codes_in_the_readme_match_the_error_classes() -> None:
    """The exit-code table lists exactly the codes the errors module defines."""
    from orchestrator import errors

    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    table = README.split("## Exit codes", 1)[1].split("##", 1)[0]
    assert {int(c) for c in re.findall(r"^\| (\d+) \|", table, flags=re.M)} == codes


def test_the_state_diagram_has_exactly_the_transitions_of_the_state_machine() -> None:
    """The README's diagram is jobs.TRANSITIONS, no move missing and none invented."""
    from orchestrator.jobs import TRANSITIONS

    section = README.split("### Job states", 1)[1].split("\n### ", 1)[0]
    diagram = section.split("```mermaid\n", 1)[1].split("```", 1)[0]
    drawn = set(re.findall(r"^\s*([a-z]+) --> ([a-z]+)\b", diagram, flags=re.M))
    allowed = {(str(a), str(b)) for a, targets in TRANSITIONS.items() for b in targets}
    assert drawn == allowed, {"missing": allowed - drawn, "invented": drawn - allowed}
