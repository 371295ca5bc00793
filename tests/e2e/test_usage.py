"""Bad flags are usage errors (exit 2, the option named, nothing touched); --debug anywhere.

These never reach a network or a ledger, so they run the click command in-process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli.cli import main

MANIFEST = (
    "batch: b\ndefaults:\n  model: kling/kling-2.5\n  duration: 5\njobs:\n  - prompt: a fox\n"
)


@pytest.fixture
def manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A valid manifest in an empty working directory (which must stay empty)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs.yaml").write_text(MANIFEST)
    return "jobs.yaml"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["run", "M", "--dry-run", "--budget", "-5"], "--budget"),
        (["run", "M", "--dry-run", "--budget", "inf"], "--budget"),
        (["estimate", "M", "--budget", "-5"], "--budget"),
        (["estimate", "M", "--budget", "nan"], "--budget"),
        (["run", "M", "--simulate", "--rps", "0"], "--rps"),
        (["run", "M", "--simulate", "--rps", "nan"], "--rps"),
        (["run", "M", "--simulate", "--max-in-flight", "0"], "--max-in-flight"),
        (["run", "M", "--simulate", "--submit-workers", "-1"], "--submit-workers"),
        (["run", "M", "--simulate", "--download-workers", "0"], "--download-workers"),
        (["run", "M", "--simulate", "--poll-min", "-1"], "--poll-min"),
        (["run", "M", "--simulate", "--poll-min", "50", "--poll-max", "2"], "--poll-min"),
        (["run", "M", "--simulate", "--time-scale", "nan"], "--time-scale"),
        (["run", "M", "--retry-failed", "-1"], "--retry-failed"),
        (["retry", "M", "--attempts", "0"], "--attempts"),
        (["run", "M", "--simulate", "--webhook-url", "http://h/k"], "--webhook-listen"),
        (["run", "M", "--simulate", "--webhook-listen", "127.0.0.1:8080"], "--webhook-url"),
        (["run", "M", "--webhook-url", "h", "--webhook-listen", "127.0.0.1:1"], "--webhook-url"),
        (["run", "M", "--webhook-url", "http://h", "--webhook-listen", "h:0"], "--webhook-listen"),
        (["run", "M", "--api-base", "api.krea.ai"], "--api-base"),
        (["run", "M", "--simulate", "--quiet", "--json"], "--quiet"),
        (["retry", "M", "--simulate", "--quiet", "--progress", "plain"], "--quiet"),
    ],
)
def test_a_bad_flag_is_a_usage_error_naming_the_option(
    manifest: str, args: list[str], named: str
) -> None:
    """Exit 2 (not 4, "internal error"), the option named, and no ledger or folder created."""
    result = CliRunner().invoke(main, [manifest if a == "M" else a for a in args])
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert "internal error" not in result.output
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["jobs.yaml"]


def test_a_budget_of_zero_is_a_budget(manifest: str) -> None:
    """0 is a real cap (send nothing): the estimate exceeds it, exit 3."""
    result = CliRunner().invoke(main, ["estimate", manifest, "--budget", "0"])
    assert result.exit_code == 3, result.output


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_takes_debug_after_its_name(name: str) -> None:
    """`orchestrator <command> --debug` parses, as the errors' "Rerun with --debug" suggests."""
    result = CliRunner().invoke(main, [name, "--debug", "--help"])
    assert result.exit_code == 0, result.output
    assert "--debug" in result.output


def test_debug_after_the_command_shows_the_traceback(manifest: str) -> None:
    """The flag after the command has the same effect as before it."""
    args = ["run", manifest, "--api-key-file", "/nonexistent/key"]
    plain = CliRunner().invoke(main, args)
    debug = CliRunner().invoke(main, [*args, "--debug"])
    assert plain.exit_code == debug.exit_code == 2
    assert "Traceback" not in plain.output
    assert "Traceback" in debug.output
    assert "cannot read the API key file" in debug.output


def test_the_missing_key_hint_names_only_flags_the_command_has(manifest: str) -> None:
    """`run` suggests --simulate; `cancel`, which has no such flag, does not."""
    run = CliRunner().invoke(main, ["run", manifest])
    cancel = CliRunner().invoke(main, ["cancel", "--batch", "b"])
    assert run.exit_code == cancel.exit_code == 2
    assert "no API key" in run.output
    assert "--simulate" in run.output
    assert "no API key" in cancel.output
    assert "--simulate" not in cancel.output


def test_run_help_says_simulate_is_a_fresh_account_with_its_own_files() -> None:
    """The one place a user looks before a --simulate run tells them what it keeps."""
    text = " ".join(CliRunner().invoke(main, ["run", "--help"]).output.split())
    assert "--ledger simulated.db --out simulated-out" in text
    assert "Each --simulate run is a new simulated account" in text


def test_options_come_from_the_environment_and_the_command_line_wins(manifest: str) -> None:
    """Every run limit has an env var (shown in --help); a bad one is a usage error naming it;
    --quiet on the command line overrides ORCHESTRATOR_PROGRESS instead of clashing with it."""
    shown = CliRunner().invoke(main, ["run", "--help"], terminal_width=200).output
    for name in ("BUDGET", "MAX_IN_FLIGHT", "RPS", "DOWNLOAD_WORKERS", "POLL_MIN", "PROGRESS"):
        assert f"ORCHESTRATOR_{name}" in shown, name
    bad = CliRunner().invoke(
        main, ["run", manifest, "--dry-run"], env={"ORCHESTRATOR_BUDGET": "-5"}
    )
    assert bad.exit_code == 2, bad.output
    assert "--budget" in bad.output
    quiet = CliRunner().invoke(
        main, ["run", manifest, "--dry-run", "--quiet"], env={"ORCHESTRATOR_PROGRESS": "json"}
    )
    assert quiet.exit_code == 0, quiet.output


@pytest.mark.parametrize("debug", [False, True])
def test_an_internal_error_says_what_to_do_next(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, debug: bool
) -> None:
    """A bug of ours: exit 4, one line; it asks for --debug only when --debug was not given."""
    from orchestrator.cli import commands

    async def broken(*args: object) -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(commands, "status", broken)
    (tmp_path / "ledger.db").touch()
    args = ["status", "--ledger", str(tmp_path / "ledger.db"), *(["--debug"] if debug else [])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 4, result.output
    assert "internal error (RuntimeError)" in result.output
    assert ("rerun with --debug" in result.output) is not debug
    assert ("Traceback" in result.output) is debug
