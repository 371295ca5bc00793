"""Every knob of the simulator, in one frozen dataclass.

``SimulatorOptions`` is the single description of what can be configured: the test fixture takes
its field names as keywords, ``orchestrator simulate`` generates one CLI flag per field from the
``help`` (and ``choices``/``cli_default``) metadata, and ``POST /_sim/config`` accepts the same
names as JSON. Validation lives in ``__post_init__`` so that ``dataclasses.replace`` (used for
live changes) can never produce an inconsistent value.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from typing import Any, Union, get_args, get_origin, get_type_hints

#: Smallest padded MP4 (sample clip + free box header + job marker fits well inside).
MIN_MEDIA_BYTES = 8192

_RATES = (
    "moderation_rate",
    "provider_error_rate",
    "timeout_rate",
    "system_cancel_rate",
    "intermediate_rate",
    "fault_5xx_rate",
    "fault_reset_rate",
    "fault_slow_rate",
    "fault_ambiguous_rate",
    "fault_malformed_rate",
    "fault_truncate_rate",
)
MALFORMED_FORMS = ("truncated", "html", "empty", "weird_status", "missing_fields", "bad_timestamp")
#: Routes (by name) the malformed fault can be limited to with ``malformed_routes``.
MALFORMED_ROUTES = ("generate", "get_job", "list_jobs", "delete_job", "upload_asset")
#: Statuses ``renamed_statuses`` may rename: terminal ones are the contract and stay as they are.
RENAMABLE = ("backlogged", "queued", "scheduled", "processing", "sampling", "intermediate-complete")


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class SimulatorOptions:
    """The simulator's configuration; each field is also a CLI flag and a fixture keyword."""

    # -- server ---------------------------------------------------------------------------------
    host: str = _opt("127.0.0.1", "Interface to listen on.")
    port: int = _opt(0, "TCP port (0 = an ephemeral port).", cli_default=8787)
    access_log: bool = _opt(False, "Log every request line (never headers, so never tokens).")
    # -- time -----------------------------------------------------------------------------------
    time_scale: float = _opt(
        1.0, "Simulated seconds per real second; 0 = manual clock moved only by advance()."
    )
    start_time: str | None = _opt(
        None, "Simulated start time, ISO-8601 (default: the real current time); read at start."
    )
    seed: int = _opt(0, "Seed of every random choice (outcomes, durations, faults).")
    # -- accounts and limits --------------------------------------------------------------------
    tokens: str | None = _opt(
        None, "Comma-separated allow-list of bearer tokens (default: any non-empty token)."
    )
    concurrency: int = _opt(2, "Jobs running at once per account; more wait as backlogged.")
    backlog: int = _opt(8, "Backlogged jobs per account before POST answers 429.")
    rate_limit_rps: float | None = _opt(
        None, "Per-account requests per second (sliding 1 s real-time window); excess gets 429."
    )
    retry_after_s: float | None = _opt(
        None, "When set, every 429 carries Retry-After: this many simulated seconds (rounded up)."
    )
    retry_after_form: str = _opt(
        "seconds",
        "Form of Retry-After: delay-seconds, an HTTP-date, or an unparseable value.",
        choices=("seconds", "http-date", "invalid"),
    )
    balance_usd: str = _opt("1000", "Starting USD balance of every account (decimal).")
    reserve_in_flight: bool = _opt(
        True, "402 when balance minus unfinished jobs' prices < price (else when balance < price)."
    )
    shared_tokens: str = _opt(
        "",
        "Groups of tokens that share one account, e.g. 'a,b;c,d': tokens in one group see the "
        "same jobs, slots and money, as Krea's workspace tokens may.",
    )
    foreign_jobs_per_s: float = _opt(
        0.0,
        "Another client on every account: jobs created per simulated second on each account "
        "that has sent a request (a Poisson process; refused, so never created, when the "
        "account's slots and backlog are full or its money is short).",
    )
    # -- contract variants (UNCONFIRMED parts of Krea's API) ------------------------------------
    auth_error_shape: str = _opt(
        "live",
        'Shape of 401 bodies: live {"message":"Unauthorized"} or spec {"error":...}.',
        choices=("live", "spec"),
    )
    validation_status: int = _opt(
        400,
        "Status of an invalid request body: 400 {error} or 422 {error, detail}.",
        choices=(400, 422),
    )
    pending_shape: str = _opt(
        "spec",
        "Unfinished jobs in GET answers: spec (no completed_at, result {}) or null (both null).",
        choices=("spec", "null"),
    )
    retired_models: str = _opt(
        "", "Comma-separated model=replacement pairs answered 410 (replacement may be empty)."
    )
    unpriced_cu: float = _opt(
        500.0, "Compute units charged for a valid request that no price-table row matches."
    )
    # -- job outcomes ---------------------------------------------------------------------------
    duration_s: float | None = _opt(
        None,
        "Every video job's total duration in simulated seconds (default: per-model durations).",
    )
    image_duration_s: float = _opt(8.0, "Every image job's total duration in simulated seconds.")
    moderation_rate: float = _opt(0.0, "Share of jobs failing early with code moderation.")
    provider_error_rate: float = _opt(0.0, "Share of jobs failing with code provider_error.")
    timeout_rate: float = _opt(0.0, "Share of jobs stuck processing until job_timeout_s.")
    system_cancel_rate: float = _opt(0.0, "Share of jobs cancelled by the system.")
    intermediate_rate: float = _opt(
        0.0, "Share of jobs passing through intermediate-complete with a preview URL."
    )
    job_timeout_s: float = _opt(7200.0, "Simulated seconds after its start a stuck job fails.")
    # -- network faults -------------------------------------------------------------------------
    outage: bool = _opt(False, "Every API route answers 503.")
    fault_5xx_rate: float = _opt(0.0, "Share of API requests answered 500/502/503 untouched.")
    fault_reset_rate: float = _opt(0.0, "Share of API requests dropped with no answer.")
    fault_slow_rate: float = _opt(0.0, "Share of API requests processed, then held slow_delay_s.")
    slow_delay_s: float = _opt(2.0, "Real seconds a slow answer is held back.")
    fault_ambiguous_rate: float = _opt(
        0.0, "Share of generate POSTs that create a job, then answer 5xx or drop (50/50)."
    )
    fault_malformed_rate: float = _opt(
        0.0, "Share of 200 JSON answers replaced by a malformed 200 (the work is still done)."
    )
    malformed_forms: str = _opt(
        "truncated,html",
        "Comma-separated malformed forms to pick from: truncated, html, empty, weird_status, "
        "missing_fields (job objects without created_at and status), bad_timestamp (one job's "
        "created_at is not a date-time).",
    )
    malformed_routes: str = _opt(
        "",
        "Comma-separated routes the malformed fault applies to (generate, get_job, list_jobs, "
        "delete_job, upload_asset; generate is both the video and the image POST); "
        "empty = every route.",
    )
    ambiguous_burst: int = _opt(
        0,
        "Hold the first N generate POSTs until N are in flight at once (at most 10 s), then "
        "create each job and answer 503: N ambiguous POSTs in one window (needs N senders).",
    )
    latency_s: float = _opt(0.0, "Real seconds added before every API answer.")
    # -- media ----------------------------------------------------------------------------------
    url_ttl_s: float | None = _opt(
        None, "Media URLs expire this many simulated seconds after being issued."
    )
    media_bytes: int = _opt(
        0,
        f"Pad every MP4 to exactly this many bytes (0 = natural size; else >= {MIN_MEDIA_BYTES}).",
    )
    fault_truncate_rate: float = _opt(
        0.0, "Share of media GETs announcing the full length, sending part, then dropping."
    )
    range_mode: str = _opt(
        "honour",
        "Range requests: honour (206) or ignore (always 200).",
        choices=("honour", "ignore"),
    )
    media_chunk_bytes: int = _opt(65536, "Bytes per write when streaming media.")
    media_chunk_delay_s: float = _opt(0.0, "Real seconds slept between media chunks.")
    urls_shape: str = _opt(
        "strings",
        "Shape of result.urls: strings (the spec), objects [{url}] or a name->url map.",
        choices=("strings", "objects", "map"),
    )
    # -- contract drift -------------------------------------------------------------------------
    timestamp_shape: str = _opt(
        "ms",
        "How created_at and completed_at are written: ms (the spec's examples, "
        "2026-02-13T02:20:58.265Z), seconds (…:58Z), offset (…:58.265+00:00) or micros "
        "(…:58.265000Z).",
        choices=("ms", "seconds", "offset", "micros"),
    )
    renamed_statuses: str = _opt(
        "",
        "Comma-separated status=word pairs: answers show word instead of a non-terminal status "
        "(statuses Krea adds without notice), e.g. sampling=upscaling,queued=waiting.",
    )
    # -- webhooks -------------------------------------------------------------------------------
    webhook_duplicates: bool = _opt(False, "Deliver every webhook twice.")

    def __post_init__(self) -> None:
        for name in _RATES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ValueError(f"{f.name} must be one of {', '.join(map(str, choices))}")
        self._check_numbers()
        self._check_other_clients()
        _ = self.balance_micro, self.start_epoch_s, self.retired, self.malformed_choices
        _ = self.malformed_route_names, self.status_words, self.token_groups

    def _check_numbers(self) -> None:
        if self.time_scale < 0 or not math.isfinite(self.time_scale):
            raise ValueError("time_scale must be >= 0")
        if self.concurrency < 1 or self.backlog < 0:
            raise ValueError("concurrency must be >= 1 and backlog >= 0")
        if self.media_bytes and self.media_bytes < MIN_MEDIA_BYTES:
            raise ValueError(f"media_bytes must be 0 or >= {MIN_MEDIA_BYTES}")
        if self.media_chunk_bytes < 1:
            raise ValueError("media_chunk_bytes must be >= 1")
        for name in ("rate_limit_rps", "retry_after_s", "duration_s", "url_ttl_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 when set")
        for name in ("slow_delay_s", "latency_s", "media_chunk_delay_s", "unpriced_cu"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.job_timeout_s <= 0 or self.ambiguous_burst < 0:
            raise ValueError("job_timeout_s must be > 0 and ambiguous_burst >= 0")
        self._check_port_and_images()

    def _check_port_and_images(self) -> None:
        if not (math.isfinite(self.image_duration_s) and self.image_duration_s > 0):
            raise ValueError("image_duration_s must be > 0")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")

    def _check_other_clients(self) -> None:
        # An infinite rate would draw zero gaps forever: the arrival loop would never end.
        rate = self.foreign_jobs_per_s
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError("foreign_jobs_per_s must be a finite number >= 0")

    # -- parsed views ---------------------------------------------------------------------------
    @property
    def balance_micro(self) -> int:
        """The starting balance in integer micro-dollars."""
        try:
            value = Decimal(self.balance_usd)
        except InvalidOperation:
            raise ValueError(f"balance_usd is not a decimal number: {self.balance_usd!r}") from None
        if not value.is_finite():
            raise ValueError("balance_usd must be finite")
        return int((value * 1_000_000).to_integral_value(rounding="ROUND_HALF_UP"))

    @property
    def start_epoch_s(self) -> float | None:
        """``start_time`` as epoch seconds, or None for the real current time."""
        if self.start_time is None:
            return None
        try:
            parsed = datetime.fromisoformat(self.start_time.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"start_time is not ISO-8601: {self.start_time!r}") from None
        if parsed.tzinfo is None:
            raise ValueError("start_time needs a timezone (e.g. a trailing Z)")
        return parsed.timestamp()

    @property
    def allowed_tokens(self) -> frozenset[str] | None:
        """The token allow-list, or None when any non-empty token is accepted."""
        if self.tokens is None:
            return None
        return frozenset(t.strip() for t in self.tokens.split(",") if t.strip())

    @property
    def token_groups(self) -> Mapping[str, str]:
        """Token -> the first token of its ``shared_tokens`` group, whose account it acts on."""
        return _token_groups(self.shared_tokens)

    @property
    def retired(self) -> dict[str, str]:
        """Retired model -> replacement model ('' when none is offered)."""
        pairs: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in self.retired_models.split(","))):
            model, sep, replacement = item.partition("=")
            if not sep or not model.strip():
                raise ValueError(f"retired_models entry must be model=replacement: {item!r}")
            pairs[model.strip().strip("/")] = replacement.strip().strip("/")
        return pairs

    @property
    def malformed_choices(self) -> tuple[str, ...]:
        """The malformed-answer forms to draw from."""
        forms = tuple(f.strip() for f in self.malformed_forms.split(",") if f.strip())
        unknown = set(forms) - set(MALFORMED_FORMS)
        if not forms or unknown:
            raise ValueError(f"malformed_forms must name some of {', '.join(MALFORMED_FORMS)}")
        return forms

    @property
    def malformed_route_names(self) -> frozenset[str]:
        """Routes the malformed fault applies to (empty: all)."""
        names = frozenset(n.strip() for n in self.malformed_routes.split(",") if n.strip())
        unknown = names - set(MALFORMED_ROUTES)
        if unknown:
            raise ValueError(f"malformed_routes must name some of {', '.join(MALFORMED_ROUTES)}")
        return names

    @property
    def status_words(self) -> dict[str, str]:
        """Status -> the word answers show instead (``renamed_statuses``)."""
        words: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in self.renamed_statuses.split(","))):
            status, sep, word = (part.strip() for part in item.partition("="))
            known = (*RENAMABLE, "completed", "failed", "cancelled")
            if not sep or status not in RENAMABLE or not word or word in known:
                raise ValueError(
                    f"renamed_statuses entry must be status=unknown-word, status one of "
                    f"{', '.join(RENAMABLE)}: {item!r}"
                )
            words[status] = word
        return words

    def changed(self, **changes: Any) -> SimulatorOptions:
        """A copy with ``changes`` applied (validated); unknown names raise ``TypeError``."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown simulator option(s): {', '.join(unknown)}")
        return replace(self, **changes)


@lru_cache(maxsize=16)  # read on every request: parse each distinct setting once
def _token_groups(text: str) -> Mapping[str, str]:
    heads: dict[str, str] = {}
    for group in filter(None, (g.strip() for g in text.split(";"))):
        members = [t.strip() for t in group.split(",")]
        if not all(members) or any(t in heads for t in members) or len(set(members)) < len(members):
            raise ValueError(
                "shared_tokens must be groups like 'a,b;c,d': no empty token, none twice"
            )
        heads.update(dict.fromkeys(members, members[0]))
    return types.MappingProxyType(heads)


@cache
def option_types() -> dict[str, tuple[type, bool]]:
    """Field name -> (base type, whether None is allowed), from the dataclass annotations."""
    hints = get_type_hints(SimulatorOptions)
    out: dict[str, tuple[type, bool]] = {}
    for f in fields(SimulatorOptions):
        hint = hints[f.name]
        if get_origin(hint) in (Union, types.UnionType):
            args = [a for a in get_args(hint) if a is not type(None)]
            out[f.name] = (args[0], True)
        else:
            out[f.name] = (hint, False)
    return out


def coerce_option(name: str, value: Any) -> Any:
    """``value`` (from JSON or a command line) converted to option ``name``'s type."""
    known = option_types()
    if name not in known:
        raise TypeError(f"unknown simulator option: {name}")
    base, nullable = known[name]
    if value is None:
        if not nullable:
            raise ValueError(f"{name} cannot be null")
        return None
    if base is bool:
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)
    try:
        return base(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a {base.__name__}, got {value!r}") from None
