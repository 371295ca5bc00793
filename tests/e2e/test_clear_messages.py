"""What a user reads when the key or the webhook address is wrong (issue 14, item 6).

Each test runs the real `orchestrator run` in a subprocess against an in-test simulator that
accepts one token only, and reads its stderr as a user would: a refused key is named by where it
was read from (never by its value) with the page where keys are made, an empty key file is named
before anything is sent, and a webhook port already in use is refused before the ledger exists.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from pathlib import Path

import pytest

from orchestrator import errors
from orchestrator.config import ApiKey
from tests.conftest import StartSimulator
from tests.e2e.cli_support import orchestrator, write_manifest

pytestmark = pytest.mark.e2e
README = (Path(__file__).parents[2] / "README.md").read_text()
#: Where README tells users to create a key: the messages must send them to the same page.
KEYS_URL = re.search(r"Create a key at <([^>]+)>", README).group(1)  # type: ignore[union-attr]
GOOD = "sk-good-key-1111"
WRONG = "sk-wrong-key-2222"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KREA_API_KEY")}
    return {**env, "ORCHESTRATOR_SEED": "3", **extra}


async def _run(tmp_path: Path, api_base: str, *extra: str, env: dict[str, str]) -> tuple[int, str]:
    """`orchestrator run` of a one-job manifest to its end: exit code and stderr."""
    write_manifest(tmp_path, 1)
    proc = await asyncio.create_subprocess_exec(
        *orchestrator(
            "run", str(tmp_path / "jobs.yaml"), "--api-base", api_base,
            "--ledger", str(tmp_path / "ledger.db"), "--out", str(tmp_path / "out"),
            "--progress", "plain", *extra,
        ),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, (out + err).decode()


async def test_a_refused_key_from_the_environment_names_the_variable_and_where_keys_are_made(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = await simulator(time_scale=0, tokens=GOOD)
    code, text = await _run(tmp_path, sim.url, env=_env(KREA_API_KEY=WRONG))
    assert code == errors.EXIT_CANNOT_RUN, text  # README, Exit codes: "API key refused" is 4
    error = text[text.index("Error: ") :]
    assert "refused the API key" in error
    assert "environment variable KREA_API_KEY" in error
    assert KEYS_URL in error
    assert "HTTP 401" in error
    assert WRONG not in text


async def test_a_refused_key_from_a_file_names_the_file(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = await simulator(time_scale=0, tokens=GOOD)
    key_file = tmp_path / "krea.key"
    key_file.write_text(WRONG + "\n")
    code, text = await _run(tmp_path, sim.url, "--api-key-file", str(key_file), env=_env())
    assert code == errors.EXIT_CANNOT_RUN, text
    error = text[text.index("Error: ") :]
    assert "refused the API key" in error
    assert f"file {key_file}" in error
    assert "KREA_API_KEY " not in error  # it came from the file, not the variable
    assert KEYS_URL in error
    assert WRONG not in text


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
async def test_an_empty_key_file_is_named_before_anything_is_sent_or_written(
    simulator: StartSimulator, tmp_path: Path, content: str
) -> None:
    sim = await simulator(time_scale=0, tokens=GOOD)
    key_file = tmp_path / "empty.key"
    key_file.write_text(content)
    code, text = await _run(tmp_path, sim.url, "--api-key-file", str(key_file), env=_env())
    assert code == errors.EXIT_BAD_INPUT, text
    assert f"the API key file {key_file} is empty" in text
    assert not (tmp_path / "ledger.db").exists()
    assert not sim.stats()["requests"], "a request was sent"


async def test_a_webhook_port_in_use_is_refused_before_the_ledger_is_written(
    simulator: StartSimulator, tmp_path: Path
) -> None:
    sim = await simulator(time_scale=0, tokens=GOOD)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        code, text = await _run(
            tmp_path, sim.url, "--webhook-url", "https://hooks.example.com/krea",
            "--webhook-listen", address, env=_env(KREA_API_KEY=GOOD),
        )  # fmt: skip
    assert code == errors.EXIT_BAD_INPUT, text
    error = text[text.index("Error: ") :]
    assert f"cannot listen for webhooks on {address}" in error
    assert "already in use" in error
    assert not (tmp_path / "ledger.db").exists()
    assert not sim.stats()["requests"], "a request was sent"


def test_a_403_says_the_key_was_refused_for_this_request_and_a_key_never_shows_in_a_repr() -> None:
    """The simulator never answers 403, so its message is checked in-process."""
    refused = errors.Unauthorized(
        403, "Forbidden", path="/generate/video/kling/kling-2.5", source="the file /k/krea.key"
    )
    assert "refused the API key read from the file /k/krea.key for this request" in refused.message
    assert "HTTP 403" in refused.message
    assert KEYS_URL in refused.message
    key = ApiKey(WRONG, "the environment variable KREA_API_KEY")
    assert key == WRONG
    assert f"Bearer {key}" == f"Bearer {WRONG}"
    assert WRONG not in repr(key)
    assert WRONG not in repr([key])
