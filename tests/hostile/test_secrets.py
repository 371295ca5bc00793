"""The API key appears nowhere: not in logs, ledger bytes, reports, exports, errors or --help.

A canary key ``sk-canary-<uuid4>`` is the only key the simulator accepts. A batch runs with it
through faults and a SIGKILL (so the ledger's -wal file is caught on disk), then every output a
user or a tool could see is searched for it byte for byte (RELIABILITY P6.6).
"""

from __future__ import annotations

import asyncio
import os
import signal
import traceback
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator import errors
from orchestrator.cli.cli import main
from orchestrator.client import KreaClient
from tests.conftest import StartSimulator
from tests.e2e.cli_support import write_manifest
from tests.hostile.support import cli, free_port, lines_until, run_cli


def _canary() -> str:
    return f"sk-canary-{uuid.uuid4()}"


def _leaks(canary: str, texts: dict[str, bytes]) -> list[str]:
    """Names of the outputs that contain the canary."""
    needle = canary.encode()
    return [name for name, data in texts.items() if needle in data]


def _files_under(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def test_no_output_of_a_faulty_killed_and_resumed_run_contains_the_key(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    """P6.6: stdout/stderr of run (killed, resumed, refused), ledger .db/-wal, reports, exports."""
    canary = _canary()
    sim = await simulator(
        time_scale=500, tokens=canary, concurrency=4, backlog=8, seed=6, fault_5xx_rate=0.1,
        fault_malformed_rate=0.1, fault_ambiguous_rate=0.1, fault_truncate_rate=0.2,
    )  # fmt: skip
    write_manifest(tmp_path, 10)
    ledger, out = tmp_path / "ledger.db", tmp_path / "out"
    env = {**os.environ, "KREA_API_KEY": canary}
    common = ["--ledger", str(ledger)]
    run = ["run", str(tmp_path / "jobs.yaml"), "--api-base", sim.url, *common, "--out", str(out),
           "--time-scale", "500"]  # fmt: skip
    seen: dict[str, bytes] = {}

    proc = await asyncio.create_subprocess_exec(
        *cli(*run, "--progress", "json"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    await lines_until(proc.stderr, '"new": "submitted"', lines)
    proc.send_signal(signal.SIGKILL)
    killed_out, killed_err = await proc.communicate()
    seen |= {"killed run stdout": killed_out, "killed run stderr": "".join(lines).encode()}
    seen |= {"killed run stderr (rest)": killed_err, **_files_under(tmp_path)}  # -wal is here
    assert f"{Path(ledger).name}-wal" in {name.rsplit("/", 1)[-1] for name in seen}, (
        "the kill left no WAL to inspect"
    )

    resumed = await run_cli([*run, "--progress", "plain"], env=env)
    assert resumed.code == 0, resumed.err[-2000:]
    elsewhere = [*run[:4], "--ledger", str(tmp_path / "refused.db"), *run[6:]]
    refused = await run_cli(
        ["--debug", *elsewhere], env={**env, "KREA_API_KEY": (wrong := _canary())}
    )
    assert refused.code == 4, refused.err[-2000:]
    assert "401" in refused.err, refused.err[-2000:]
    assert not _leaks(wrong, {"refused run": (refused.out + refused.err).encode()})
    seen |= {"resumed run": (resumed.out + resumed.err).encode()}

    commands = [
        *(["report", *common, "--format", fmt] for fmt in ("table", "json", "csv", "html")),
        *(["export", *common, "--format", fmt] for fmt in ("csv", "json")),
        ["export", *common, "--events", "--format", "json"],
        ["status", *common, "--format", "json"],
    ]
    finished = await asyncio.gather(*(run_cli(args, env=env) for args in commands))
    for args, done in zip(commands, finished, strict=True):
        assert done.code == 0, (args, done.err)
        seen[" ".join(args[:1] + args[-2:])] = (done.out + done.err).encode()
    seen |= _files_under(tmp_path)
    assert len(seen) > 15
    assert not _leaks(canary, seen)


def test_no_help_text_shows_the_key_even_when_it_is_set() -> None:
    """--help of the group and of every command, with KREA_API_KEY set: no canary anywhere."""
    canary = _canary()
    runner = CliRunner()
    pages = {"orchestrator": runner.invoke(main, ["--help"], env={"KREA_API_KEY": canary})}
    for name in main.commands:
        pages[name] = runner.invoke(main, [name, "--help"], env={"KREA_API_KEY": canary})
    assert len(pages) >= 9
    for name, page in pages.items():
        assert page.exit_code == 0, (name, page.output)
        assert "KREA_API_KEY" in page.output or name not in ("run", "retry", "cancel")
    assert not _leaks(canary, {name: page.output.encode() for name, page in pages.items()})


def _everything_about(error: BaseException) -> bytes:
    """str, repr, the formatted traceback with its chain, and repr of every library local."""
    parts = [str(error), repr(error), *traceback.format_exception(error)]
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current)]
        tb = current.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename != __file__:  # this test's own locals hold the key
                parts += [repr(value) for value in tb.tb_frame.f_locals.values()]
            tb = tb.tb_next
        current = current.__cause__ or current.__context__
    return "\n".join(parts).encode()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"tokens": "sk-someone-else"}, errors.Unauthorized),
        ({"outage": True}, errors.ServerError),
        ({"fault_reset_rate": 1.0}, errors.ConnectionLost),
        ({"fault_malformed_rate": 1.0, "malformed_forms": "html"}, errors.BadResponse),
    ],
)
async def test_errors_raised_against_a_failing_api_never_carry_the_key(
    simulator: StartSimulator, options: dict[str, object], expected: type[Exception]
) -> None:
    """401, 503, a dropped connection, an HTML 200: str/repr/traceback/locals hold no key."""
    canary = _canary()
    sim = await simulator(time_scale=0, **options)
    async with KreaClient.connect(sim.url, canary) as client:
        with pytest.raises(expected) as caught:
            await client.list_jobs(limit=1)
    assert not _leaks(canary, {"error": _everything_about(caught.value)})


async def test_a_connection_that_is_never_made_gives_an_error_without_the_key() -> None:
    """NotSent (nothing listens on the port): its text, chain and locals hold no key."""
    canary = _canary()
    async with KreaClient.connect(f"http://127.0.0.1:{free_port()}", canary) as client:
        with pytest.raises(errors.NotSent) as caught:
            await client.get_job("00000000-0000-4000-8000-000000000000")
    assert not _leaks(canary, {"error": _everything_about(caught.value)})
