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

A valid entry's unrolled form (:class:`_Shape`) is kept under all of the entry but its ``id``
and text ``prompt``: the next entries of that shape (100,000 entries have a handful) check only
their id. Any entry with a problem takes the full path, so the same problems are reported.
"""

from __future__ import annotations

import itertools
import math
import unicodedata
from collections.abc import Collection, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from orchestrator.errors import ManifestError, ManifestErrors
from orchestrator.manifest.ids import check_id, derived_id, tag
from orchestrator.manifest.output_paths import DEFAULT_TEMPLATE, template_fields
from orchestrator.manifest.yaml_safe import YamlList, YamlMap, line_of
from orchestrator.spec import close_match, other_kind_fields, request_fields, resolve_model

KEYWORDS = frozenset({"id", "model", "expand", "takes", "output", "params"})
_SORTED_KEYWORDS = tuple(sorted(KEYWORDS))
MAX_TAKES = 1000
MAX_JOBS = 1_000_000
#: Shapes kept per manifest: enough for any real one, bounded for a hostile one.
_MAX_SHAPES = 1024
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
    #: Drafts of one shape have the same model and request but the prompt: checked once.
    shape: object = None
    inputs: tuple[str, ...] = ()  #: keys of the jobs it takes results from (references.py)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest choice, or nothing."""
    close = close_match(word, choices)
    return f"; did you mean {close!r}?" if close else ""


def misspelt_keywords(mapping: YamlMap, keywords: Iterable[str]) -> dict[str, str]:
    """The keys of ``mapping`` that misspell one of ``keywords`` it lacks -> that keyword.

    A key that is a request field of any model is a field (``mode`` is Kling's, not a misspelt
    ``model``): the schema check reports it if the job's model has no such field. Decided once
    per set of keys: 100,000 entries have a handful.
    """
    return dict(_misspelt(tuple(mapping), tuple(keywords)))


@lru_cache(maxsize=256)
def _misspelt(keys: tuple[Any, ...], keywords: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    missing = [keyword for keyword in keywords if keyword not in keys]
    found = []
    for key in keys:
        if isinstance(key, str) and key not in KEYWORDS and key not in request_fields():
            close = close_match(key, missing)
            if close:
                found.append((key, close))
    return tuple(found)


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


def expand_entries(jobs: YamlList, defaults: Defaults, problems: Problems) -> Iterator[Draft]:
    """Every entry's drafts, in order; broken entries are reported and skipped.

    Consumes ``jobs``: each entry is released (replaced by None) once its drafts are taken, so
    the parsed tree of a 100,000-entry manifest shrinks while its JobSpecs grow.
    """
    total = 0
    shapes: dict[Any, _Shape] = {}
    for index, entry in enumerate(jobs):
        if not isinstance(entry, YamlMap):
            problems.add("each job must be a mapping with at least `prompt:`", line_of(jobs, index))
            continue
        jobs[index] = None
        drafts = _drafts(entry, index, defaults, problems, shapes)
        total += len(drafts)
        if total > MAX_JOBS:
            problems.add(f"the manifest expands to more than {MAX_JOBS:,} jobs", entry.line)
            return
        yield from drafts


def _drafts(
    entry: YamlMap, index: int, defaults: Defaults, problems: Problems, shapes: dict[Any, _Shape]
) -> list[Draft]:
    """One entry's drafts: from the shape of an earlier valid entry when it has one."""
    key, prompt = _shape_key(entry), entry.get("prompt")
    prompt = prompt if type(prompt) is str else None  # the entry's own; else part of the shape
    shape = shapes.get(key)
    if shape is not None:
        base_id, problem = _base_id(entry, shape.prompt if prompt is None else prompt, index)
        if problem is None:
            return shape.drafts(entry, base_id, defaults.template_line, prompt)
    reported = len(problems.errors) + problems.dropped
    found = _Entry(entry, index, defaults, problems).shape()
    if found is None:
        return []
    if len(problems.errors) + problems.dropped == reported and len(shapes) < _MAX_SHAPES:
        shapes[key] = found[0]
    return found[0].drafts(entry, found[1], defaults.template_line)


def _shape_key(entry: YamlMap) -> Hashable:
    """Everything about ``entry`` but the values of its ``id`` and of its prompt (when text)."""
    return tuple(
        key if key == "id" or (key == "prompt" and type(value) is str) else _frozen((key, value))
        for key, value in entry.items()
    )


def _frozen(value: Any) -> Hashable:
    """A YAML value as a hashable key that tells 5, 5.0, True and -0.0, 0.0 apart."""
    if isinstance(value, dict):
        return (dict, tuple((_frozen(key), _frozen(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return (type(value), tuple(_frozen(item) for item in value))
    return (type(value), repr(value) if type(value) is float else value)


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a valid entry unrolls to but its id, prompt and lines: (id suffix, model, request,
    shape) per combination of ``expand`` values, each ``takes`` times."""

    combos: tuple[tuple[str, str, dict[str, Any], object], ...]
    takes: int
    template: str
    prompt: Any  #: the requests' prompt when the entry sets none (as text) itself

    def drafts(
        self, entry: YamlMap, base_id: str, template_line: int | None, prompt: str | None = None
    ) -> list[Draft]:
        """The drafts of ``entry`` (``prompt``: its own, put in each request)."""
        template_line = line_of(entry, "output") if "output" in entry else template_line
        drafts = []
        for suffix, model, shared, shape in self.combos:
            request = dict(shared)
            if prompt is not None:
                request["prompt"] = prompt
            for take in range(1, self.takes + 1):
                entry_id = f"{base_id}{suffix}_t{take}" if self.takes > 1 else base_id + suffix
                draft = Draft(entry_id, base_id, take, model, request, self.template,
                              template_line, entry, entry.line, shape)  # fmt: skip
                drafts.append(draft)
        return drafts


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

    def shape(self) -> tuple[_Shape, str] | None:
        """The entry's shape and base id; None when it has a problem (reported)."""
        typos = self._misspelt_keywords()
        own = entry_params(self.entry, self.problems, self.job, skip=typos)
        params = {**self.defaults.params, **own}
        base_id, id_problem = _base_id(self.entry, params.get("prompt"), self.index)
        if id_problem:
            self._add(id_problem, "id", "id")
        model, takes, axes = self._model(typos), self._takes(), self._axes()
        template = self._template()
        if id_problem or model is None or takes is None or axes is None or template is None:
            return None
        if typos:  # what the entry means is unclear: its requests are not checked
            return None
        if takes * math.prod(len(axis) for axis in axes) > MAX_JOBS:
            self._add(f"this entry expands to more than {MAX_JOBS:,} jobs", "expand", "expand")
            return None
        combos = []
        for combo in itertools.product(*axes):
            values = {name: value for name, value, _ in combo}
            chosen = values.get("model", model)
            by_model = self.defaults.by_model.get(chosen, {})
            expanded = {k: v for k, v in values.items() if k != "model"}
            skip = other_kind_fields(chosen)  # a clip's duration is no default of a still's
            shared = {k: v for k, v in self.defaults.params.items() if k not in skip}
            request = merged_request(shared, by_model, own, expanded)
            combos.append(("".join(f"_{t}" for _, _, t in combo), chosen, request, object()))
        return _Shape(tuple(combos), takes, template, params.get("prompt")), base_id

    def _add(self, message: str, key: str | None = None, field: str | None = None) -> None:
        line = line_of(self.entry, key) if key else self.entry.line
        self.problems.add(message, line, job=self.job, field=field)

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
            axis.append((name, item, tag(item, position)))
        return axis

    def _template(self) -> str | None:
        if "output" not in self.entry:
            return self.defaults.template
        problem = template_problem(self.entry["output"])
        if problem:
            self.problems.add(problem, line_of(self.entry, "output"), job=self.job, field="output")
            return None
        return str(self.entry["output"])


def _base_id(entry: YamlMap, prompt: Any, index: int) -> tuple[str, str | None]:
    """The entry's id (named after ``prompt`` when it has none), or why its ``id:`` is not one."""
    if "id" not in entry:
        return derived_id(prompt, index), None
    value = entry["id"]
    is_text = isinstance(value, str | int) and not isinstance(value, bool)
    text = str(value) if is_text else ""
    text = text if text.isascii() else unicodedata.normalize("NFC", text)  # ASCII is NFC
    problem = check_id(text) if is_text else "must be text"
    return text, (f"id {value!r} {problem}" if problem else None)


def template_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable output template, or None."""
    if not isinstance(value, str):
        return f"`output:` must be a path template string (got {value!r})"
    try:
        template_fields(value)
    except ValueError as error:
        return str(error)
    return None
