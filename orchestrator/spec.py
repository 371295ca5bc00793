"""Krea's published OpenAPI document, read once: generate endpoints, request schemas, prices.

The document (``orchestrator/data/krea-openapi.json``, a snapshot of api.krea.ai/openapi.json) is
the single source of truth for what a request may contain. This module only *reads* it: the
compute-unit tables come back as raw cells, and each side (``costs`` for the client,
``simulator.billing`` for the server) interprets them with its own code.

Validation lives here because it is the contract itself: the manifest checks a request before
anything is sent, and the simulator refuses the same request the same way Krea would.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # loaded by the first validation: a command that only reads a ledger
    from jsonschema import Draft202012Validator  # (status, report) never pays for it
    from jsonschema.exceptions import ValidationError

GENERATE_PREFIX = "/generate/"
VIDEO_PREFIX = "/generate/video/"
IMAGE_PREFIX = "/generate/image/"
#: An image model's name starts with this (``image/google/nano-banana-pro``); a video model's
#: name is its path under /generate/video/ (``kling/kling-2.5``), as it always was, so the
#: ledgers, price overrides and reports of earlier runs keep their names.
IMAGE_MODEL = "image/"
#: The snapshot's date, from our digest of it (shared/krea-api.md): the spec carries none.
SPEC_DATE = "2026-05"
#: Krea's published USD prices are compute units times this factor (see krea-api.md §2).
USD_PER_CU = "0.0018335"
#: The message of a missing required field.
REQUIRED = "is required"
#: How alike a misspelt key and a valid one must be for a did-you-mean (difflib's ratio).
CLOSE_ENOUGH = 0.7


@dataclass(frozen=True)
class PriceTable:
    """A compute-unit table from an endpoint's description, as raw text cells."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def generate_path(model: str) -> str:
    """The POST path of a model name: ``/generate/video/kling/kling-2.5``, ``/generate/image/…``."""
    return GENERATE_PREFIX + (model if is_image_model(model) else "video/" + model)


def is_image_model(model: str) -> bool:
    """Whether ``model`` (a resolved name) makes stills, not clips."""
    return model.startswith(IMAGE_MODEL)


@dataclass(frozen=True)
class Endpoint:
    """One generate endpoint. ``model`` is its name: the path under /generate/video/ for a video
    model (``kling/kling-2.5``), ``image/`` and the path under /generate/image/ for an image one.
    """

    model: str
    summary: str
    request_schema: dict[str, Any]
    price_table: PriceTable | None
    aliases: dict[str, str]  #: deprecated camelCase field -> snake_case field
    alias_sunset: str | None  #: the date after which the aliases stop working
    deprecated: bool

    @property
    def path(self) -> str:
        return generate_path(self.model)

    @property
    def kind(self) -> str:
        """``image`` or ``video``: what a job of this endpoint makes."""
        return kind_of(self.model)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.request_schema.get("properties", {}))

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(self.request_schema.get("required", ()))

    def default(self, name: str) -> Any:
        """The schema's default for a field, or None."""
        return self.request_schema.get("properties", {}).get(name, {}).get("default")


@dataclass(frozen=True)
class Problem:
    """One reason a request body is invalid, naming the field it is about."""

    field: str | None
    message: str
    suggestion: str | None = None  #: for an unknown field: the path of the closest valid one

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class Spec:
    """The parsed document."""

    def __init__(self, document: dict[str, Any], sha256: str) -> None:
        self.document = document
        self.sha256 = sha256
        self.endpoints: dict[str, Endpoint] = {
            model: _endpoint(model, item["post"])
            for path, item in document["paths"].items()
            if (model := model_of_path(path)) is not None and "post" in item
        }

    def endpoint(self, model: str) -> Endpoint | None:
        return self.endpoints.get(model.strip("/"))

    def response_schema(self, path: str, method: str, status: int) -> dict[str, Any]:
        """The JSON schema of a documented response (for contract tests)."""
        operation = self.document["paths"][path][method.lower()]
        content = operation["responses"][str(status)]["content"]
        schema: dict[str, Any] = content["application/json"]["schema"]
        return schema


def model_of_path(path: str) -> str | None:
    """The model name of a generate path (see :class:`Endpoint`); None for any other path."""
    if path.startswith(VIDEO_PREFIX):
        return path.removeprefix(VIDEO_PREFIX)
    if path.startswith(IMAGE_PREFIX):
        return IMAGE_MODEL + path.removeprefix(IMAGE_PREFIX)
    return None


@cache
def load_spec() -> Spec:
    """The packaged OpenAPI document, parsed once per process."""
    raw = resources.files("orchestrator").joinpath("data/krea-openapi.json").read_bytes()
    return Spec(json.loads(raw), hashlib.sha256(raw).hexdigest())


def resolve_model(value: Any) -> str:
    """The endpoint for a manifest's model name; ValueError with a did-you-mean otherwise.

    A name is the endpoint's path under ``/generate/`` (``image/google/nano-banana-pro``,
    ``video/kling/kling-2.5``); a video model may leave out ``video/`` (``kling/kling-2.5``).
    """
    if not isinstance(value, str):
        raise ValueError(f"model must be a name like 'kling/kling-2.5' (got {value!r})")
    name = value.strip().strip("/")
    name = name.removeprefix(GENERATE_PREFIX.strip("/") + "/")
    name = name.removeprefix("video/").strip("/")
    endpoints = load_spec().endpoints
    if name in endpoints:
        return name
    tails = [m for m in endpoints if m.rsplit("/", 1)[-1] == name.rsplit("/", 1)[-1]]
    close = tails or difflib.get_close_matches(name, endpoints, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(endpoints))}"
    raise ValueError(f"unknown model {value!r}; {hint}")


@cache
def request_fields(kind: str | None = None) -> frozenset[str]:
    """Every field of every endpoint's request schema; with ``kind``, of that kind's only."""
    endpoints = load_spec().endpoints.values()
    return frozenset(name for e in endpoints if kind is None or e.kind == kind for name in e.fields)


@cache
def other_kind_fields(model: str) -> frozenset[str]:
    """Fields only the other kind of model has: a default of one (a clip's ``duration``) is
    not given to a job of ``model`` (a still's)."""
    return request_fields() - request_fields(kind_of(model))


def kind_of(model: str) -> str:
    """``image`` or ``video``: what a job of ``model`` (a resolved name) makes."""
    return "image" if is_image_model(model) else "video"


def _endpoint(model: str, operation: dict[str, Any]) -> Endpoint:
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    aliases = operation.get("x-krea-deprecated-field-aliases", [])
    return Endpoint(
        model=model,
        summary=operation.get("summary", ""),
        request_schema=schema,
        price_table=_parse_price_table(operation.get("description", "")),
        aliases={a["from"]: a["to"] for a in aliases},
        alias_sunset=min((a["sunset_date"] for a in aliases), default=None),
        deprecated=bool(operation.get("deprecated", False)),
    )


def _parse_price_table(description: str) -> PriceTable | None:
    """The first markdown table with a 'Compute Units' column, or None."""
    lines = [ln.strip() for ln in description.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 3:
        return None
    header = _cells(lines[0])
    if "Compute Units" not in header:
        return None
    rows = tuple(tuple(_cells(ln)) for ln in lines[2:] if not re.fullmatch(r"[|\-\s:]+", ln))
    return PriceTable(columns=tuple(header), rows=rows)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@cache
def _validator(model: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    endpoint = load_spec().endpoints[model]
    return Draft202012Validator(endpoint.request_schema)


def request_problems(model: str, body: Any, *, suggest: bool = False) -> list[Problem]:
    """Every reason ``body`` is not a valid request for ``model``, one per field, in field order.

    With ``suggest`` (the manifest; not the simulator, which words errors as Krea does), an
    unknown field's message names the closest field (``; did you mean 'duration'?``), and a
    required field that an unknown one was meant to be is not also reported missing.
    """
    if not isinstance(body, dict):
        return [Problem(None, "the request body must be a JSON object")]
    found: dict[str | None, Problem] = {}
    ranked = sorted(_validator(model).iter_errors(body), key=lambda e: e.validator == "type")
    for error in ranked:
        for problem in _describe(error, model, suggest):
            found.setdefault(problem.field, problem)  # one message per field: the most specific
    problems = sorted(found.values(), key=lambda p: p.field or "")
    return without_suggested(problems) if suggest else problems


def without_suggested(problems: list[Problem]) -> list[Problem]:
    """``problems`` but "X is required" where an unknown field is suggested to be X: one typo."""
    meant = {p.suggestion for p in problems if p.suggestion}
    return [p for p in problems if not (p.message == REQUIRED and p.field in meant)]


def close_match(word: str, choices: Iterable[str]) -> str | None:
    """The valid key ``word`` most likely misspells, if one is close enough."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=CLOSE_ENOUGH)
    return close[0] if close else None


def _describe(error: ValidationError, model: str, suggest: bool) -> list[Problem]:
    where = _field_path(error.absolute_path)
    if error.validator == "additionalProperties":
        return _unknown_fields(error, model, where, suggest)
    if error.validator == "required":
        missing = str(error.message).split("'")[1]
        return [Problem(_join(where, missing), REQUIRED)]
    choices = list(_choices(error))
    if choices:
        shown = ", ".join(_show(c) for c in choices)
        return [Problem(where or None, f"must be one of {shown} (got {_show(error.instance)})")]
    if error.validator == "type":
        got = _show(error.instance)
        return [Problem(where or None, f"must be of type {error.validator_value} (got {got})")]
    return [Problem(where or None, str(error.message))]


def _unknown_fields(error: ValidationError, model: str, where: str, suggest: bool) -> list[Problem]:
    properties = cast(dict[str, Any], error.schema).get("properties", {})
    allowed = ", ".join(sorted(properties))
    aliases = load_spec().endpoints[model].aliases
    problems = []
    for name in sorted(set(cast(dict[str, Any], error.instance)) - set(properties)):
        renamed = aliases.get(name)
        close = renamed or close_match(name, properties)
        hint = f"; Krea renamed it to {renamed!r}" if renamed else ""
        if close and suggest and not renamed:
            hint = f"; did you mean {close!r}?"
        message = f"unknown field for {model}{hint} (allowed: {allowed})"
        suggestion = _join(where, close) if close else None
        problems.append(Problem(_join(where, name), message, suggestion))
    return problems


def _choices(error: ValidationError) -> Iterator[Any]:
    """Allowed values of an enum / const / anyOf-of-consts constraint."""
    value = cast(Any, error.validator_value)
    if error.validator == "enum":
        yield from value
    elif error.validator == "const":
        yield value
    elif error.validator in ("anyOf", "oneOf") and all(
        "const" in s or "enum" in s or "anyOf" in s for s in value
    ):
        yield from _consts(value)


def _consts(schemas: list[dict[str, Any]]) -> Iterator[Any]:
    for schema in schemas:
        if "const" in schema:
            yield schema["const"]
        yield from schema.get("enum", ())
        yield from _consts(schema.get("anyOf", []))


def _field_path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)
