"""Every error the orchestrator raises, under one root, with the data a caller needs to act on it.

The CLI has a single handler: it prints ``Error: <message>`` and exits with the class's
``exit_code``. Library callers catch :class:`OrchestratorError` and read the fields.

    OrchestratorError                      exit 4  (could not run)
    ├── InputError                         exit 2  (bad input: nothing was changed)
    │   ├── ManifestError(path,line,job,field)
    │   │   └── ManifestErrors(errors)     all problems of one manifest at once
    │   ├── PriceUnknown(model,detail)     a request the price table cannot price
    │   ├── ConfigError                    bad flag, missing API key, ...
    │   └── NoLedger(path)                 a command that reads the ledger was given none
    ├── LedgerError
    │   ├── LedgerBusy(pid)                another `run` holds the ledger
    │   └── IllegalTransition(key,from,to) a bug: the state machine forbids it
    ├── ApiError(status,message)           Krea answered with an error status
    │   ├── Rejected                       400 / 422 / 404 on create: never retried
    │   │   └── ModelRetired(replacement)  410: the model is past its sunset date
    │   ├── Unauthorized(source)           401 / 403: the key (from source) is refused
    │   ├── InsufficientFunds              402: top up the API balance
    │   ├── RateLimited(retry_after_s)     429: concurrency + backlog full, or request rate
    │   ├── NotFound                       404 on a job
    │   ├── ServerError                    5xx
    │   ├── BadResponse                    2xx whose body is not what the spec promises
    │   └── NotKreaApi(url,base_url)       a wrong --api-base: stops the run, rejects nothing
    ├── TransportError(sent)               no HTTP answer at all
    │   ├── NotSent                        refused / DNS / connect timeout: safe to resend
    │   ├── ConnectionLost                 sent, then reset / timed out: outcome unknown
    │   └── Unreachable(base_url)          never answered since the run began: a wrong URL?
    ├── DownloadError(url)
    │   ├── Truncated(expected,got)
    │   ├── NotMp4
    │   ├── NotImage                       not a complete PNG, JPEG or WebP
    │   ├── UrlExpired                     the media host refused a once-good URL
    │   └── DiskFull(path,needed)
    ├── StoppedByBudget / StoppedByFunds   exit 3
    └── Interrupted                        exit 130

Messages never contain the API key: errors carry a status and a URL path, never a request.
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_OK = 0
EXIT_JOBS_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3
EXIT_CANNOT_RUN = 4
EXIT_INTERRUPTED = 130
#: Where Krea's API keys are made (README, Using the real API).
KEYS_URL = "https://krea.ai/settings/api-tokens"


class OrchestratorError(Exception):
    """The orchestrator could not do what was asked."""

    exit_code = EXIT_CANNOT_RUN

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or type(self).__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class InputError(OrchestratorError):
    """The input is invalid; nothing was changed."""

    exit_code = EXIT_BAD_INPUT


class ManifestError(InputError):
    """The manifest is invalid."""

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        line: int | None = None,
        job: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path, self.line, self.job, self.field, self.reason = path, line, job, field, message
        super().__init__(self._render())

    def _render(self) -> str:
        where = self.path or "<manifest>"
        if self.line is not None:
            where += f":{self.line}"
        parts = [where]
        if self.job is not None:
            parts.append(f"job {self.job!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return ": ".join([*parts, self.reason])


class ManifestErrors(InputError):
    """The manifest has several problems; each is reported."""

    def __init__(self, errors: Sequence[ManifestError]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        head = f"{count} problem{'s' if count != 1 else ''} in the manifest:"
        super().__init__("\n".join([head, *(f"  {e.message}" for e in self.errors)]))


class PriceUnknown(InputError):
    """No price is known for this request; add a price override to the manifest."""

    def __init__(self, model: str, detail: str) -> None:
        self.model, self.detail = model, detail
        super().__init__(
            f"no price for {model} ({detail}); add it under `prices:` in the manifest "
            f"(see README, Costs)"
        )


class ConfigError(InputError):
    """A setting is missing or invalid."""


class NoLedger(InputError):
    """There is no ledger at the given path: a wrong --ledger is bad input, not a failure to run."""

    def __init__(self, path: str, nearby: tuple[str, ...] = ()) -> None:
        self.path = path
        found = f"; ledgers in that folder: {', '.join(nearby)}" if nearby else ""
        super().__init__(
            f"no ledger at {path}: check --ledger (or ORCHESTRATOR_LEDGER); "
            f"`orchestrator run` creates it{found}"
        )


class LedgerError(OrchestratorError):
    """The ledger cannot be used."""


class LedgerBusy(LedgerError):
    """Another `orchestrator run` is using this ledger."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.path, self.pid = path, pid
        owner = f"pid {pid}" if pid else "another process"
        super().__init__(f"ledger {path} is in use by {owner}; wait for it or stop it first")


class IllegalTransition(LedgerError):
    """A state change the state machine forbids (a bug, never user error)."""

    def __init__(self, key: str, from_state: str, to_state: str) -> None:
        self.key, self.from_state, self.to_state = key, from_state, to_state
        super().__init__(f"job {key}: illegal transition {from_state} -> {to_state}")


class ApiError(OrchestratorError):
    """Krea answered with an error."""

    def __init__(self, status: int, message: str, *, path: str = "") -> None:
        self.status, self.reason, self.path = status, message, path
        super().__init__(f"{path or 'Krea API'}: HTTP {status}: {message}")


class Rejected(ApiError):
    """Krea refused the request as invalid; resending it cannot help."""


class ModelRetired(Rejected):
    """The model is past its sunset date."""

    def __init__(self, status: int, message: str, *, path: str = "", replacement: str = "") -> None:
        self.replacement = replacement
        hint = f" (use {replacement} instead)" if replacement else ""
        super().__init__(status, message + hint, path=path)


class Unauthorized(ApiError):
    """Krea refused the API key (401), or refused it for this request (403).

    ``source`` says where the key was read from ("the environment variable KREA_API_KEY", "the
    file /path"), never what it is; the message names it, with the page where keys are made.
    """

    def __init__(self, status: int, message: str, *, path: str = "", source: str = "") -> None:
        super().__init__(status, message, path=path)
        self.source = source
        where = f"HTTP {status} on {path}" if path else f"HTTP {status}"
        if status == 403:
            self.args = (
                f"Krea refused the API key {_read_from(source)} for this request ({where}: "
                f"{message}): the key is not allowed to do this; check its workspace and plan "
                f"at {KEYS_URL}",
            )
        else:
            self.args = (
                f"Krea refused the API key {_read_from(source)} ({where}: {message}): check it, "
                f"or create a key at {KEYS_URL}",
            )


def _read_from(source: str) -> str:
    """Where a refused key came from, as the message names it."""
    if source:
        return f"read from {source}"
    return "(from KREA_API_KEY, or the file given by --api-key-file / KREA_API_KEY_FILE)"


class InsufficientFunds(ApiError):
    """Krea's API balance cannot cover the request; top it up at krea.ai/app/api."""


class RateLimited(ApiError):
    """Krea's concurrency + backlog (or request rate) is full."""

    def __init__(
        self, status: int, message: str, *, path: str = "", retry_after_s: float | None = None
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(status, message, path=path)


class NotFound(ApiError):
    """Krea does not know this job (or it belongs to another key)."""


class ServerError(ApiError):
    """Krea answered 5xx."""


class BadResponse(ApiError):
    """Krea answered 2xx with a body that is not what the spec promises."""


class NotKreaApi(ApiError):
    """The server at the API base answered as Krea's API never does: a wrong --api-base.

    A 404, 405 or 501 on a route every Krea server has (``POST /generate/video/...``,
    ``GET /jobs``, ``POST /assets``), or nothing but unreadable answers since the run began.
    The request created nothing, so the run stops and no job is rejected.
    """

    def __init__(self, status: int, what: str, *, url: str, base_url: str) -> None:
        self.url, self.base_url = url, base_url
        super().__init__(
            status,
            f"{url} answered {what}: that is not Krea's API. Check --api-base / KREA_API_BASE "
            f"(now {base_url}; Krea's is https://api.krea.ai); nothing was sent to Krea",
            path=url,
        )
        self.args = (self.reason,)  # the message names the whole URL once, not path + reason


class TransportError(OrchestratorError):
    """No HTTP answer was received."""

    sent = True

    def __init__(self, detail: str, *, path: str = "") -> None:
        self.detail, self.path = detail, path
        super().__init__(f"{path or 'Krea API'}: {detail}")


class NotSent(TransportError):
    """The request never left (connection refused, DNS failure, connect timeout)."""

    sent = False


class ConnectionLost(TransportError):
    """The request was sent but no answer came back (reset, read timeout)."""


class Unreachable(TransportError):
    """The API has not answered once since the run began: a wrong URL or no network.

    Unlike an outage in the middle of a run (retried for as long as it lasts), this stops the
    run, since waiting would only hide a mistake: nothing was sent.
    """

    sent = False

    def __init__(self, base_url: str, detail: str, attempts: int) -> None:
        super().__init__(
            f"cannot reach the API at {base_url} ({detail}; {attempts} attempts, none answered). "
            "Check --api-base / KREA_API_BASE and the network; nothing was sent."
        )
        self.base_url = base_url


class DownloadError(OrchestratorError):
    """A result file could not be downloaded."""

    def __init__(self, message: str, *, url: str = "") -> None:
        self.url = url
        super().__init__(message)


class Truncated(DownloadError):
    """The download ended before the announced length."""

    def __init__(self, expected: int, got: int, *, url: str = "") -> None:
        self.expected, self.got = expected, got
        super().__init__(f"download truncated: {got} of {expected} bytes", url=url)


class NotMp4(DownloadError):
    """The downloaded file is not a complete MP4."""


class NotImage(DownloadError):
    """The downloaded file is not a complete PNG, JPEG or WebP image."""


class UrlExpired(DownloadError):
    """The media host refused a result URL; a fresh one must be fetched."""


class DiskFull(DownloadError):
    """There is no space left for a download."""

    def __init__(self, path: str, needed: int | None = None) -> None:
        self.target, self.needed = path, needed
        need = f"; {needed:,} bytes needed" if needed else ""
        super().__init__(f"no space left on the device for {path}{need}")


class StoppedByBudget(OrchestratorError):
    """The budget cap stopped the run; raise it with --budget to go on."""

    exit_code = EXIT_STOPPED


class StoppedByFunds(OrchestratorError):
    """Krea answered 402: the API balance is exhausted; top up at krea.ai/app/api, then rerun."""

    exit_code = EXIT_STOPPED


class Interrupted(OrchestratorError):
    """Interrupted; run the same command again to resume."""

    exit_code = EXIT_INTERRUPTED
