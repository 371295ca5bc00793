"""Job entries -> drafts: defaults merged, ``expand`` and ``takes`` unrolled, ids made.

This is the manifest's expansion step, kept apart from the per-job checks (planning.py) and
from the top level (manifest.py). Its rules are documented in manifest.py's docstring; in short:

* keys of an entry other than ``id model expand takes output params`` are request parameters,
  merged over ``defaults:`` and ``defaults_by_model:`` (the entry wins; a ``null`` unsets,
  see defaults.py); ``params:`` holds names that clash with a keyword;
  a key that is no model's request field but close to a keyword the entry lacks (``modle``) is
  reported as that keyword misspelt, and the entry is not expanded;
* ``expand: {p: [a, b], q: [c, d]}`` -> one draft per combination (first key slowest), each of
  them ``takes`` times; ids get ``_<slug>`` per expanded value and ``_t<n>`` when takes > 1;
* an entry without ``id`` is named after its prompt: ``<first 6 words>-<6 hex of sha256>``.

Problems are reported into a :class:`Problems` list, so one load reports them all.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import math
import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from orchestrator.errors import ManifestError, ManifestErrors
from orchestrator.manifest.output_paths import DEFAULT_TEMPLATE, slug, template_fields
from orchestrator.manifest.yaml_safe import YamlList, YamlMap, line_of
from orchestrator.spec import VIDEO_PREFIX, close_match, load_spec

KEYWORDS = frozenset({"id", "model", "expand", "takes", "output", "params"})
_SORTED_KEYWORDS = tuple(sorted(KEYWORDS))
MAX_TAKES = 1000
MAX_JOBS = 1_000_000
MAX_ID_CHARS = 100
_TAG_CHARS = 24
_SIMPLE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


#: An entry's ``params:`` when it has none (read only).
_NO_PARAMS = YamlMap(0)


class Problems:
    """Every problem of one manifest, the first ``limit`` kept in full."""

    def __init__(self, path: str, limit: int = 50) -> None:
        self.path, self.limit = path, limit
        self.errors: list[ManifestError] = []
        self.dropped = 0

    def add(
        self, message: str, line: int | None, *, job: str | None = None, field: str | None = None
    ) -> None:
        """Record one problem (counted only, once the limit is reached)."""
        if len(self.errors) < self.limit:
            error = ManifestError(message, path=self.path, line=line, job=job, field=field)
            self.errors.append(error)
        else:
            self.dropped += 1

    def raise_if_any(self) -> None:
        """Raise ManifestErrors with everything recorded, if anything was."""
        if not self.errors:
            return
        more = [ManifestError(f"... and {self.dropped:,} more problems", path=self.path)]
        raise ManifestErrors(self.errors + (more if self.dropped else []))


@dataclass
class Defaults:
    """What every entry starts from."""

    model: str | None = None
    model_broken: bool = False  #: the defaults' model is wrong (reported once, not per entry)
    params: dict[str, Any] = field(default_factory=dict)
    template: str | None = DEFAULT_TEMPLATE  #: None: the manifest's template is broken (reported)
    template_line: int | None = None
    by_model: dict[str, dict[str, Any]] = field(default_factory=dict)  #: see defaults.py


@dataclass(slots=True)
class Draft:
    """One expanded job, before the per-job checks."""

    entry_id: str
    base_id: str
    take: int
    model: str
    request: dict[str, Any]
    template: str
    template_line: int | None
    entry: YamlMap  #: where its fields' lines are looked up
    line: int


def resolve_model(value: Any) -> str:
    """The endpoint for a manifest's model name; ValueError with a did-you-mean otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"model must be a name like 'kling/kling-2.5' (got {value!r})")
    name = value.strip()
    for prefix in (VIDEO_PREFIX, VIDEO_PREFIX.lstrip("/"), "/video/", "video/"):
        name = name.removeprefix(prefix)
    name = name.strip("/")
    endpoints = load_spec().endpoints
    if name in endpoints:
        return name
    tails = [m for m in endpoints if m.rsplit("/", 1)[-1] == name]
    close = tails or difflib.get_close_matches(name, endpoints, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(endpoints))}"
    raise ValueError(f"unknown model {value!r}; {hint}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest choice, or nothing."""
    close = close_match(word, choices)
    return f"; did you mean {close!r}?" if close else ""


def misspelt_keywords(mapping: YamlMap, keywords: Iterable[str]) -> dict[str, str]:
    """The keys of ``mapping`` that misspell one of ``keywords`` it lacks -> that keyword.

    A key that is a request field of any model is a field (``mode`` is Kling's, not a misspelt
    ``model``): the schema check reports it if the job's model has no such field.
    """
    missing = [keyword for keyword in keywords if keyword not in mapping]
    found: dict[str, str] = {}
    for key in mapping:
        if isinstance(key, str) and key not in KEYWORDS and key not in request_fields():
            close = close_match(key, missing)
            if close:
                found[key] = close
    return found


@cache
def request_fields() -> frozenset[str]:
    """Every field of every video endpoint's request schema."""
    return frozenset(name for e in load_spec().endpoints.values() for name in e.fields)


def _plain(value: Any) -> Any:
    """YAML values as plain JSON data; ValueError for non-text keys or non-finite numbers."""
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise ValueError("mapping keys inside a parameter must be text")
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number (JSON cannot carry it)")
    return value


def merged_request(*layers: dict[str, Any]) -> dict[str, Any]:
    """The layers merged (the later wins), without the keys whose final value is None."""
    request: dict[str, Any] = {}
    for layer in layers:
        request.update(layer)
    if None in request.values():  # `duration: null` unsets a default (defaults.py)
        return {name: value for name, value in request.items() if value is not None}
    return request


def _check_id(text: str) -> str | None:
    """Why ``text`` (NFC) is not a valid id, or None."""
    if _SIMPLE_ID.fullmatch(text):
        return None  # the common case, without a walk over the characters
    if not text:
        return "must not be empty"
    if len(text) > MAX_ID_CHARS:
        return f"is longer than {MAX_ID_CHARS} characters"
    if text.startswith("."):
        return "must not start with a dot"
    if not all(c.isalnum() or c in "._-" for c in text):
        return "may contain only letters, digits, '.', '_' and '-'"
    return None


def derived_id(prompt: Any, index: int) -> str:
    """The id of an entry without one: its prompt's first words and a hash of the prompt."""
    if not isinstance(prompt, str) or not prompt.strip():
        return f"entry-{index + 1}"
    words = " ".join(prompt.replace(":", " ").replace("/", " ").split()[:6]).casefold()
    head = slug(words)[:60].strip("-.") or "job"
    return f"{head}-{hashlib.sha256(prompt.encode()).hexdigest()[:6]}"


def _tag(value: Any, position: int) -> str:
    """The id suffix of one expanded value (see the module docstring)."""
    if isinstance(value, dict | list):
        return str(position)
    text = slug(value)
    if len(text) <= _TAG_CHARS:
        return text
    digest = hashlib.sha256(str(value).encode()).hexdigest()[:6]
    return f"{text[: _TAG_CHARS - 7].rstrip('-.')}-{digest}"


def expand_entries(jobs: YamlList, defaults: Defaults, problems: Problems) -> Iterator[Draft]:
    """Every entry's drafts, in order; broken entries are reported and skipped.

    Consumes ``jobs``: each entry is released (replaced by None) once its drafts are taken, so
    the parsed tree of a 100,000-entry manifest shrinks while its JobSpecs grow.
    """
    total = 0
    for index, entry in enumerate(jobs):
        if not isinstance(entry, YamlMap):
            problems.add("each job must be a mapping with at least `prompt:`", line_of(jobs, index))
            continue
        jobs[index] = None
        drafts = _Entry(entry, index, defaults, problems).drafts()
        total += len(drafts)
        if total > MAX_JOBS:
            problems.add(f"the manifest expands to more than {MAX_JOBS:,} jobs", entry.line)
            return
        yield from drafts


def entry_params(
    mapping: YamlMap, problems: Problems, job: str | None, skip: Collection[str] = ()
) -> dict[str, Any]:
    """The request parameters of an entry (or of ``defaults``) but ``skip``, as JSON values."""
    params: dict[str, Any] = {}
    extra = mapping.get("params", _NO_PARAMS)
    if not isinstance(extra, YamlMap):
        problems.add("`params:` must be a mapping", line_of(mapping, "params"), job=job)
        extra = YamlMap(0)
    for source in (mapping, extra):
        for key, value in source.items():
            if source is mapping and (key in KEYWORDS or key in skip):
                continue
            where = line_of(source, key)
            if not isinstance(key, str):
                problems.add(f"parameter names must be text (got {key!r})", where, job=job)
            elif key in params:
                problems.add(f"{key!r} is given twice", where, job=job, field=key)
            else:
                try:
                    params[key] = _plain(value)
                except ValueError as error:
                    problems.add(str(error), where, job=job, field=key)
    return params


class _Entry:
    """One job entry being unrolled."""

    def __init__(self, entry: YamlMap, index: int, defaults: Defaults, problems: Problems) -> None:
        self.entry, self.index, self.defaults, self.problems = entry, index, defaults, problems
        self.job: str | None = str(entry["id"]) if "id" in entry else None

    def drafts(self) -> list[Draft]:
        typos = self._misspelt_keywords()
        own = entry_params(self.entry, self.problems, self.job, skip=typos)
        params = {**self.defaults.params, **own}
        base_id, model = self._base_id(params), self._model(typos)
        takes, axes = self._takes(), self._axes()
        template, template_line = self._template()
        if base_id is None or model is None or takes is None or axes is None or template is None:
            return []
        if typos:  # what the entry means is unclear: its requests are not checked
            return []
        if takes * math.prod(len(axis) for axis in axes) > MAX_JOBS:
            self._add(f"this entry expands to more than {MAX_JOBS:,} jobs", "expand", "expand")
            return []
        drafts = []
        for combo in itertools.product(*axes):
            values = {name: value for name, value, _ in combo}
            chosen = values.get("model", model)
            by_model = self.defaults.by_model.get(chosen, {})
            expanded = {k: v for k, v in values.items() if k != "model"}
            request = merged_request(self.defaults.params, by_model, own, expanded)
            combo_id = base_id + "".join(f"_{t}" for _, _, t in combo)
            for take in range(1, takes + 1):
                entry_id = f"{combo_id}_t{take}" if takes > 1 else combo_id
                draft = Draft(entry_id, base_id, take, chosen, request, template,
                              template_line, self.entry, self.entry.line)  # fmt: skip
                drafts.append(draft)
        return drafts

    def _add(self, message: str, key: str | None = None, field: str | None = None) -> None:
        line = line_of(self.entry, key) if key else self.entry.line
        self.problems.add(message, line, job=self.job, field=field)

    def _base_id(self, params: dict[str, Any]) -> str | None:
        if "id" not in self.entry:
            return derived_id(params.get("prompt"), self.index)
        value = self.entry["id"]
        is_text = isinstance(value, str | int) and not isinstance(value, bool)
        text = str(value) if is_text else ""
        text = text if text.isascii() else unicodedata.normalize("NFC", text)  # ASCII is NFC
        problem = _check_id(text) if is_text else "must be text"
        if problem:
            self._add(f"id {value!r} {problem}", "id", "id")
            return None
        return text

    def _misspelt_keywords(self) -> dict[str, str]:
        typos = misspelt_keywords(self.entry, _SORTED_KEYWORDS)
        for key, keyword in typos.items():
            self._add(f"unknown key in a job entry; did you mean {keyword!r}?", key, key)
        return typos

    def _model(self, typos: dict[str, str]) -> str | None:
        if "model" not in self.entry:
            reported = self.defaults.model_broken or "model" in typos.values()
            if self.defaults.model is None and not reported:
                self._add("no model: set `model:` in the entry or in `defaults:`")
            return self.defaults.model
        try:
            return resolve_model(self.entry["model"])
        except ValueError as error:
            self._add(str(error), "model", "model")
            return None

    def _takes(self) -> int | None:
        value = self.entry.get("takes", 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TAKES:
            message = f"takes must be an integer from 1 to {MAX_TAKES} (got {value!r})"
            self._add(message, "takes", "takes")
            return None
        return value

    def _axes(self) -> list[list[tuple[str, Any, str]]] | None:
        raw = self.entry.get("expand")
        if raw is None:
            return []
        if not isinstance(raw, YamlMap) or not raw:
            self._add("expand must map parameters to lists of values", "expand", "expand")
            return None
        axes = [self._axis(raw, name) for name in raw]
        return None if any(axis is None for axis in axes) else [a for a in axes if a is not None]

    def _axis(self, raw: YamlMap, name: Any) -> list[tuple[str, Any, str]] | None:
        values, line = raw[name], line_of(raw, name)
        own = self.entry.get("params")
        if (
            not isinstance(name, str)
            or (name in KEYWORDS and name != "model")
            or name in self.entry
            or (isinstance(own, YamlMap) and name in own)
        ):
            message = f"cannot expand {name!r}: it is a keyword, or the entry also sets it"
            self.problems.add(message, line, job=self.job, field="expand")
            return None
        if not isinstance(values, YamlList) or not values:
            message = f"expand.{name} must be a non-empty list of values"
            self.problems.add(message, line, job=self.job, field=name)
            return None
        axis = []
        for position, value in enumerate(values, start=1):
            item_line = line_of(values, position - 1)
            try:
                item = resolve_model(value) if name == "model" else _plain(value)
            except ValueError as error:
                self.problems.add(str(error), item_line, job=self.job, field=name)
                return None
            axis.append((name, item, _tag(item, position)))
        return axis

    def _template(self) -> tuple[str | None, int | None]:
        if "output" not in self.entry:
            return self.defaults.template, self.defaults.template_line
        line = line_of(self.entry, "output")
        problem = template_problem(self.entry["output"])
        if problem:
            self.problems.add(problem, line, job=self.job, field="output")
            return None, line
        return self.entry["output"], line


def template_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable output template, or None."""
    if not isinstance(value, str):
        return f"`output:` must be a path template string (got {value!r})"
    try:
        template_fields(value)
    except ValueError as error:
        return str(error)
    return None
