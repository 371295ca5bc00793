"""Settings of one command, resolved once: flag > environment > manifest > default.

The API key lives only in :attr:`Settings.api_key` (``repr=False``) and, later, in the HTTP
session's default headers; it is never an argument of anything that is retried or logged
(RELIABILITY P6.6). It comes from ``KREA_API_KEY`` or from a file (``--api-key-file`` /
``KREA_API_KEY_FILE``), never from a flag that ``--help`` could echo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.errors import ConfigError

DEFAULT_API_BASE = "https://api.krea.ai"
DEFAULT_LEDGER = "orchestrator.db"
DEFAULT_OUT = "out"
#: `run --simulate` keeps its own ledger and files, so simulated MP4s never pass as paid ones.
SIMULATED_LEDGER = "simulated.db"
SIMULATED_OUT = "simulated-out"


@dataclass(frozen=True)
class Settings:
    """Everything a command needs besides the manifest."""

    api_base: str = DEFAULT_API_BASE
    api_key: str = field(default="", repr=False)
    ledger_path: Path = Path(DEFAULT_LEDGER)
    out_dir: Path = Path(DEFAULT_OUT)
    time_scale: float = 1.0  #: API seconds per real second (only the simulator runs faster)
    submit_workers: int = 1  #: POSTs in flight at once; 1 keeps crash attribution exact
    download_workers: int = 8
    max_in_flight: int | None = None  #: Krea's concurrency + backlog, when known
    requests_per_second: float | None = None
    budget_micro: int | None = None
    retry_failed: int = 0  #: new attempts per failed/cancelled job in this run
    request_timeout_s: float = 30.0  #: real seconds without a byte from Krea's API
    download_timeout_s: float = 60.0  #: real seconds without a byte from the media host (P4.4)
    poll_min_s: float = 2.0
    poll_max_s: float = 30.0
    webhook_url: str | None = None
    webhook_listen: str | None = None  #: host:port for the receiver
    seed: int | None = None  #: for the jitter RNG (tests and benchmarks)
    only: tuple[str, ...] = ()  #: a trial: send only these jobs (``selection``)
    limit: int | None = None  #: a trial: send only the first N jobs of each batch
    resume_cancelled: bool = False  #: send the pending jobs of a batch `cancel` stopped
    rerolls_only: bool = False  #: send only the new takes `reroll` made (``review_queries``)
    #: Coordinate with the other runs of this account on this machine (``registry``); off only
    #: where the account is this process's alone (``--simulate``'s embedded simulator).
    account_registry: bool = True
    state_dir: Path | None = None  #: where the account registry lives (None: $XDG_STATE_HOME)

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


class ApiKey(str):
    """An API key that knows where it was read from, so a refusal can name that place.

    ``source`` describes the place ("the environment variable KREA_API_KEY", "the file
    /path/krea.key"), never the key; ``repr`` hides the key too, so a key in a structure that is
    printed or logged shows as ``ApiKey(<hidden>, from ...)``. Everywhere else it is the key's text.
    """

    source: str

    def __new__(cls, value: str, source: str = "") -> ApiKey:
        key = super().__new__(cls, value)
        key.source = source
        return key

    def __repr__(self) -> str:
        return f"ApiKey(<hidden>, from {self.source or 'an unknown place'})"


def key_source(api_key: str) -> str:
    """Where ``api_key`` was read from ("" when it is a plain string: unknown)."""
    return api_key.source if isinstance(api_key, ApiKey) else ""


def api_key_from_env(key_file: str | None = None, *, required: bool = True, hint: str = "") -> str:
    """The key from ``KREA_API_KEY``, else from a file; ConfigError when required and absent.

    The key returned is an :class:`ApiKey` that names its source. A key file that holds nothing
    but whitespace is an error naming the file (a ConfigError even when the key is optional: the
    file was given to be read). ``hint`` ends the message with what else the caller can do
    (``run`` can simulate; ``cancel`` cannot), so no command suggests a flag it lacks.
    """
    key = os.environ.get("KREA_API_KEY", "").strip()
    if key:
        return ApiKey(key, "the environment variable KREA_API_KEY")
    path = key_file or os.environ.get("KREA_API_KEY_FILE")
    if path:
        return ApiKey(_read_key_file(path), f"the file {path}")
    if required:
        raise ConfigError(
            "no API key: set KREA_API_KEY (or KREA_API_KEY_FILE)" + (f", {hint}" if hint else "")
        )
    return ""


def _read_key_file(path: str) -> str:
    """The key in the file at ``path``, stripped; ConfigError naming the file if none is there."""
    try:
        key = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc.strerror}") from None
    if not key:
        raise ConfigError(
            f"the API key file {path} is empty: put the key in it (one line), or set KREA_API_KEY"
        )
    return key


def _home() -> Path:
    """Where per-user state lives when no path is given (tests redirect it)."""
    return Path(os.environ.get("ORCHESTRATOR_HOME", Path.home() / ".orchestrator"))
