"""The manifest: a YAML file in, a validated, expanded, priced list of JobSpecs out. Writes nothing.

Everything that can be wrong with a manifest is found here, before anything is sent, and reported
together (up to 50 problems), each naming the file, line, job and field::

    batch: demo                      # required: letters, digits, . _ -; no leading dot; <= 64
    output: "{batch}/{id}.{ext}"     # path template (the default); see output_paths.py
    limits: {max_in_flight: 4, requests_per_second: 2}
    budget_usd: 5                    # the batch's spending cap, in USD (>= 0)
    priority: 0                      # with other manifests in one run: higher is sent first
    prices: {runway/aleph: 0.5, google/veo-3: {per_second: 0.12}}   # see prices.py
    defaults: {model: kling/kling-2.5, duration: 5, aspect_ratio: "16:9"}
    defaults_by_model: {minimax/hailuo-02: {aspect_ratio: null, resolution: 768p}}
    jobs:
      - id: eagle
        prompt: a majestic eagle ...

A job entry's own keywords are ``id``, ``model``, ``expand``, ``takes``, ``output`` and
``params``; every other key is a request parameter, sent to Krea as written and merged over
``defaults`` then ``defaults_by_model`` for the job's model (the entry wins; ``key: null``
unsets a default for that job or model: it is not sent; see defaults.py), so a new Krea
parameter needs no code change here. ``params`` is a mapping of parameters whose names clash
with a keyword (Hailuo's own ``model`` field).
``model`` is the endpoint's path under /generate/: ``image/...`` makes a still, ``video/...`` a
clip, and a video model may leave out ``video/`` (``kling/kling-2.5``); it may be expanded
over. A default only the other kind of model has (a clip's ``duration``) is not given to a job.

Expansion and ids:

* ``expand: {aspect_ratio: ["16:9", "9:16"], duration: [5, 10]}`` makes one job per combination,
  the first key varying slowest; ``takes: N`` (1-1000) makes N identical takes of each.
* An expanded id is the entry id, then ``_`` + each expanded value slugged (``16:9`` -> ``16x9``,
  ``kling/kling-2.5`` -> ``kling_kling-2.5``, long text cut to 24 characters with a hash; a list
  or mapping value is named by its 1-based position), then ``_t1`` .. ``_tN`` when takes > 1:
  ``shot_16x9_5_t2``. ``{base_id}`` and ``{take}`` are available to the output template.
* An entry without ``id`` gets ``<slug of the prompt's first 6 words>-<6 hex of its sha256>``.
* Ids are unicode letters/digits and ``. _ -`` (NFC), <= 100 characters, no leading dot;
  ``id: 7`` means ``"7"`` (and ``batch: 2024`` the batch ``"2024"``). Two jobs with the same
  expanded id are an error naming both lines.

Other decisions: ``defaults`` holds ``model``, ``params`` and request parameters only (``id``,
``expand``, ``takes`` and ``output`` belong to entries; ``output`` also at the top level).
Values are YAML 1.2 (yaml_safe.py): ``16:9`` is text, ``05`` stays text. A local media path is
relative to the manifest's folder (absolute paths are allowed) and becomes
``asset:sha256:<hex>`` (local_files.py). A clip's output path gets ``.mp4`` appended when it
does not end with it; a still's ends with the extension of its verified format (output_paths.py).
A manifest expanding to more than 1,000,000 jobs is refused.

The work is split by concept: yaml_safe.py parses (hostile input), entries.py expands entries
into drafts, planning.py checks each job (schema, price, local files, output path, key), with
local_files.py, output_paths.py and prices.py beneath it. This module owns the top level.
``JobSpec.key`` comes from ``jobs.job_key``: formatting, key order or quoting changes in the
YAML change no key, and editing one prompt changes exactly one.

A run keeps a manifest's :class:`ManifestHeader` (everything but the jobs) in its ledger, under
:func:`planner_fingerprint`: resuming the same bytes then needs none of this (startup.py).
Loading 100,000 jobs holds the parsed tree and the JobSpecs at once only briefly: each entry is
released as soon as it is expanded (entries.py), and JobSpec is slotted.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from orchestrator.errors import ManifestError
from orchestrator.jobs import JobSpec
from orchestrator.manifest.defaults import parse_by_model
from orchestrator.manifest.entries import (
    KEYWORDS,
    Defaults,
    Problems,
    did_you_mean,
    entry_params,
    expand_entries,
    misspelt_keywords,
    template_problem,
)
from orchestrator.manifest.output_paths import DEFAULT_TEMPLATE
from orchestrator.manifest.planning import Planner
from orchestrator.manifest.references import References
from orchestrator.manifest.yaml_safe import YamlList, YamlMap, line_of, parse_yaml, read_capped
from orchestrator.money.prices import PriceOverrides, micro_from_usd, parse_override
from orchestrator.spec import close_match, resolve_model

TOP_LEVEL = (
    "batch", "defaults", "defaults_by_model", "jobs", "output", "limits", "budget_usd", "prices",
    "priority",
)  # fmt: skip
#: ``priority:`` bounds (one run of several manifests sends the higher first, starving none).
PRIORITY_RANGE = (-100, 100)
#: What decides the jobs a manifest becomes (see planner_fingerprint).
PLANNER_FILES = (
    "manifest/manifest.py", "manifest/entries.py", "manifest/ids.py", "manifest/defaults.py",
    "manifest/planning.py", "manifest/yaml_safe.py", "manifest/output_paths.py",
    "manifest/local_files.py", "manifest/references.py", "chains.py", "money/prices.py",
    "spec.py", "jobs.py", "data/krea-openapi.json", "data/prices.json",
)  # fmt: skip
LIMITS = ("max_in_flight", "requests_per_second")
MAX_PROBLEMS = 50
_BATCH = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Limits:
    """The manifest's ``limits:``; None means "not set here" (flags and defaults decide)."""

    max_in_flight: int | None = None
    requests_per_second: float | None = None


@dataclass(frozen=True)
class ManifestHeader:
    """What a run needs of a manifest once its jobs are in the ledger: everything but the jobs.

    The ledger keeps it with the batch, so that resuming an unchanged manifest need not parse
    and check every entry again (see startup.py).
    """

    path: str
    batch: str
    sha256: str  #: of the file's bytes
    limits: Limits
    budget_micro: int | None
    local_files: dict[str, str] = field(default_factory=dict)  #: absolute path -> its sha256
    priority: int = 0  #: among the manifests of one run, the higher is sent first

    @property
    def files(self) -> dict[str, str]:
        """sha256 -> a local path with that content: what the uploader sends."""
        return {digest: path for path, digest in self.local_files.items()}


@dataclass(frozen=True)
class Manifest:
    """A loaded manifest: every job expanded, validated and priced, in manifest order."""

    path: str
    batch: str
    sha256: str  #: of the file's bytes
    output_template: str
    limits: Limits
    budget_micro: int | None
    prices: PriceOverrides
    specs: list[JobSpec]  #: seq 0..n-1
    local_files: dict[str, str] = field(default_factory=dict)  #: absolute path -> its sha256
    priority: int = 0

    @property
    def header(self) -> ManifestHeader:
        """Everything but the jobs."""
        return ManifestHeader(
            self.path, self.batch, self.sha256, self.limits, self.budget_micro, self.local_files,
            self.priority,
        )  # fmt: skip


def load_manifest(path: str | os.PathLike[str], *, keyed: bool = True) -> Manifest:
    """Load and check a manifest; raises ManifestErrors (every problem) or ManifestError.

    ``keyed=False`` leaves every ``JobSpec.key`` empty: for the commands that only check and
    price a manifest (validate, estimate), never for one whose jobs go to a ledger.
    """
    shown = os.fspath(path)
    data = read_capped(path)
    with _collector_paused():
        document = parse_yaml(data, path=shown)
        if not isinstance(document, YamlMap):
            message = "a manifest must be a mapping with `batch:` and `jobs:`"
            raise ManifestError(message, path=shown)
        return _TopLevel(shown, document).manifest(hashlib.sha256(data).hexdigest(), keyed)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a manifest loads, then back as it was.

    Loading builds millions of objects and frees none, so every collection the allocations
    trigger walks the growing tree and finds nothing: a third of the time of a 100,000-job
    load. Nothing here makes cycles (refcounting frees what a failed load leaves).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def manifest_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a manifest file's bytes (the same cap as loading it applies)."""
    return hashlib.sha256(read_capped(path)).hexdigest()


@cache
def planner_fingerprint() -> str:
    """A digest of the code and data that turn a manifest into jobs.

    A plan recorded in a ledger is reused only under the same fingerprint: a new price table,
    schema or validation rule makes the next run load its manifest in full again.
    """
    digest = hashlib.sha256()
    package = resources.files("orchestrator")
    for name in PLANNER_FILES:
        try:
            digest.update(package.joinpath(name).read_bytes())
        except OSError:  # installed without sources: nothing to tell versions apart by
            digest.update(name.encode())
    return digest.hexdigest()


class _TopLevel:
    """The checks of one manifest's top-level keys, then of every job."""

    def __init__(self, path: str, doc: YamlMap) -> None:
        self.path, self.doc = path, doc
        self.problems = Problems(path, MAX_PROBLEMS)
        self.misspelt: set[str] = set()  #: missing keys an unknown key is close to (reported)

    def manifest(self, sha256: str, keyed: bool = True) -> Manifest:
        self._unknown_keys()
        batch, overrides = self._batch(), self._overrides()
        defaults = self._defaults()
        by_model = parse_by_model(self.doc, self.problems)
        defaults.by_model = by_model.params
        limits, budget, priority = self._limits(), self._budget(), self._priority()
        base_dir = os.path.dirname(os.path.abspath(self.path))
        raw_defaults = self.doc.get("defaults")
        source = raw_defaults if isinstance(raw_defaults, YamlMap) else None
        planner = Planner(batch, overrides, self.problems, base_dir, source, by_model, keyed=keyed)
        jobs = self._jobs()
        references = References(planner.report, _entry_ids(jobs))
        specs: list[JobSpec] = []
        seq = 0
        for draft in expand_entries(jobs, defaults, self.problems):
            for variant in references.variants(draft):  # one per job it takes a result from
                spec = planner.plan(variant, seq)
                references.record(variant, spec)
                seq += 1
                if spec is not None:
                    specs.append(spec)
        references.finish()
        self.problems.raise_if_any()
        template = defaults.template or DEFAULT_TEMPLATE
        files = planner.hasher.hashed()
        return Manifest(
            self.path, batch, sha256, template, limits, budget, overrides, specs, files, priority
        )  # fmt: skip

    def _add(self, message: str, key: str | None = None, field: str | None = None) -> None:
        line = line_of(self.doc, key) if key in self.doc else self.doc.line
        self.problems.add(message, line, field=field)

    def _unknown_keys(self) -> None:
        missing = [key for key in TOP_LEVEL if key not in self.doc]
        for key in self.doc:
            if key not in TOP_LEVEL:
                self._add(f"unknown top-level key {key!r}{did_you_mean(str(key), TOP_LEVEL)}", key)
                meant = close_match(str(key), missing)
                self.misspelt.update([meant] if meant else [])

    def _batch(self) -> str:
        value = self.doc.get("batch")
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
        if not _BATCH.fullmatch(text) and not (value is None and "batch" in self.misspelt):
            got = "it is missing" if value is None else f"got {value!r}"
            rule = "1-64 letters, digits, '.', '_' or '-', not starting with '.'"
            self._add(f"must be {rule} ({got})", "batch", "batch")
        return text

    def _jobs(self) -> YamlList:
        jobs = self.doc.get("jobs")
        if isinstance(jobs, YamlList) and jobs:
            return jobs
        if jobs is None and "jobs" in self.misspelt:
            return YamlList(0)  # `jbos:` is reported, with a did-you-mean
        self._add("must be a non-empty list of jobs", "jobs", "jobs")
        return YamlList(0)

    def _defaults(self) -> Defaults:
        defaults = Defaults()
        if "output" in self.doc:
            defaults.template_line = line_of(self.doc, "output")
            problem = template_problem(self.doc["output"])
            if problem:
                self._add(problem, "output", "output")
            defaults.template = None if problem else self.doc["output"]
        raw = self.doc.get("defaults")
        if raw is None:
            defaults.model_broken = "defaults" in self.misspelt  # no "no model" for every job
            return defaults
        if not isinstance(raw, YamlMap):
            self._add("`defaults:` must be a mapping of request parameters", "defaults")
            return defaults
        for key in sorted(KEYWORDS & set(raw) - {"model", "params"}):
            self.problems.add(f"{key!r} belongs in a job entry, not in defaults", line_of(raw, key))
        typos = misspelt_keywords(raw, ("model", "params"))
        for key, keyword in typos.items():
            message = f"unknown key in `defaults:`; did you mean {keyword!r}?"
            self.problems.add(message, line_of(raw, key), field=key)
        defaults.params = entry_params(raw, self.problems, None, skip=typos)
        defaults.model_broken = "model" in typos.values()
        if "model" in raw:
            try:
                defaults.model = resolve_model(raw["model"])
            except ValueError as error:
                self.problems.add(str(error), line_of(raw, "model"), field="model")
                defaults.model_broken = True
        return defaults

    def _limits(self) -> Limits:
        raw = self.doc.get("limits")
        if raw is None:
            return Limits()
        if not isinstance(raw, YamlMap):
            self._add("`limits:` must be a mapping", "limits")
            return Limits()
        for key in raw:
            if key not in LIMITS:
                hint = did_you_mean(str(key), LIMITS)
                self.problems.add(f"unknown key {key!r} in `limits:`{hint}", line_of(raw, key))
        in_flight, rate = raw.get("max_in_flight"), raw.get("requests_per_second")
        if in_flight is not None and not (_is_int(in_flight) and in_flight >= 1):
            message = f"max_in_flight must be an integer >= 1 (got {in_flight!r})"
            self.problems.add(message, line_of(raw, "max_in_flight"), field="max_in_flight")
            in_flight = None
        if rate is not None and not (_is_number(rate) and 0 < rate < float("inf")):
            message = f"requests_per_second must be a number > 0 (got {rate!r})"
            self.problems.add(
                message, line_of(raw, "requests_per_second"), field="requests_per_second"
            )
            rate = None
        return Limits(in_flight, None if rate is None else float(rate))

    def _priority(self) -> int:
        raw = self.doc.get("priority", 0)
        low, high = PRIORITY_RANGE
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            self._add(f"must be a whole number from {low} to {high}", "priority", "priority")
            return 0
        return raw

    def _budget(self) -> int | None:
        if self.doc.get("budget_usd") is None:
            return None
        try:
            return micro_from_usd(self.doc["budget_usd"])
        except ValueError as error:
            self._add(str(error), "budget_usd", "budget_usd")
            return None

    def _overrides(self) -> PriceOverrides:
        raw = self.doc.get("prices")
        if raw is None:
            return PriceOverrides()
        if not isinstance(raw, YamlMap):
            self._add("must map model names to prices", "prices", "prices")
            return PriceOverrides()
        found = {}
        for key, value in raw.items():
            try:
                found[resolve_model(key)] = parse_override(value)
            except ValueError as error:
                self.problems.add(str(error), line_of(raw, key), field=f"prices.{key}")
        return PriceOverrides(found)


def _entry_ids(jobs: YamlList) -> dict[str, int]:
    """The ``id:`` of each entry that has one, with its line (for references.py)."""
    found: dict[str, int] = {}
    for entry in jobs:
        if isinstance(entry, YamlMap) and isinstance(entry.get("id"), str | int):
            found.setdefault(str(entry["id"]), entry.line)
    return found


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
