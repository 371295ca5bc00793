"""Drafts -> JobSpecs: the per-job checks of a manifest, each failure reported with its line.

For every expanded job, in order: local media files are checked and hashed (local_files.py),
the request is validated against Krea's schema, the job is priced (prices.py), its output path
is rendered and proven safe and unique (output_paths.py), and its stable key is computed
(``jobs.job_key``). A job with any problem produces no JobSpec; the manifest then refuses to load.

Validation is the expensive part, so its verdict is cached by (model, request without
``prompt``), and the prompt is checked on its own against its schema (type string, minLength,
maxLength). A 100,000-job manifest whose jobs differ only in their prompts therefore costs one
schema validation, not 100,000. This relies on no request schema tying ``prompt`` to another
field (true of every endpoint in the spec; ``tests/unit/test_manifest.py`` keeps it so).

Drafts of one shape (entries.py) differ only in their prompt, so once one of them passes every
check, the next reuse its results whole (:class:`_Passed`): each then costs its prompt check,
its output path and its key, whose request JSON is the shape's with the prompt spliced in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from orchestrator.chains import field_path, replaced
from orchestrator.errors import PriceUnknown
from orchestrator.jobs import JobSpec, canonical_json, job_key
from orchestrator.manifest import local_files, output_paths
from orchestrator.manifest.defaults import ByModel, lacking_message, sets_itself
from orchestrator.manifest.entries import Draft, Problems
from orchestrator.manifest.references import stand_ins
from orchestrator.manifest.yaml_safe import YamlMap
from orchestrator.money.prices import PriceOverrides, price_micro
from orchestrator.spec import (
    REQUIRED,
    Problem,
    is_image_model,
    load_spec,
    request_fields,
    request_problems,
    without_suggested,
)
from orchestrator.still_names import EXT_PLACEHOLDER

_SCALARS = frozenset({str, int, float, bool, type(None)})
_encode_text = json.encoder.encode_basestring  #: canonical_json's text (ensure_ascii=False)
#: (request to send, price, files, the request's canonical JSON when known) of one draft.
_Checked = tuple[dict[str, Any], int, dict[str, str], str | None]


class Planner:
    """Turns drafts into JobSpecs for one manifest, remembering ids and paths already taken."""

    def __init__(
        self,
        batch: str,
        overrides: PriceOverrides,
        problems: Problems,
        base_dir: str,
        defaults: YamlMap | None = None,
        by_model: ByModel | None = None,
        *,
        keyed: bool = True,
    ) -> None:
        self.batch, self.overrides, self.problems = batch, overrides, problems
        self.keyed = keyed  #: False: every JobSpec.key is "" (see manifest.load_manifest)
        self.defaults = defaults  #: the manifest's ``defaults:``, for the lines of its fields
        self.by_model = by_model or ByModel()  #: ``defaults_by_model:``, likewise
        self.hasher = local_files.FileHasher(base_dir)
        self.verdicts: dict[tuple[str, Hashable], list[Problem]] = {}
        #: Prices by the verdict's key: a price depends on the model and the request but its
        #: prompt (no table is keyed on it; an override is per model or per second).
        self.prices: dict[tuple[str, Hashable], int] = {}
        self.ids: dict[str, int] = {}
        self.paths: dict[str, tuple[str, int]] = {}
        self.template_problems: set[tuple[int | None, str]] = set()
        self.passed: dict[object, _Passed] = {}  #: by the drafts' shape (entries.py)

    def plan(self, draft: Draft, seq: int) -> JobSpec | None:
        """The JobSpec for ``draft`` at position ``seq``, or None after reporting why not."""
        if not self._claim_id(draft):
            return None
        combination = self._combination(draft)
        if combination is False:
            return None
        path = self._output_path(draft, draft.request, seq)  # placeholders see the YAML values
        if combination is None or path is None:
            return None
        request, price, files, request_json = combination
        key = ""
        if self.keyed:
            key = job_key(
                self.batch, draft.entry_id, draft.model, request, request_json=request_json
            )
        return JobSpec(
            key=key,
            batch=self.batch,
            entry_id=draft.entry_id,
            model=draft.model,
            request=request,
            price_micro=price,
            output_path=path,
            seq=seq,
            line=draft.line,
            files=files,
            inputs=draft.inputs,
        )

    def _combination(self, draft: Draft) -> _Checked | Literal[False] | None:
        """(request to send, price, files, its canonical JSON or None) of a valid draft; False
        when its request is invalid, None when it cannot be sent or priced (both reported)."""
        passed = self.passed.get(draft.shape)
        if passed is not None and not _prompt_problems(draft.model, draft.request):
            return passed.results(draft.request)
        request, checked, files = self._local_files(draft)
        cache_key = (draft.model, _shape(checked))
        if not self._valid(draft, checked, cache_key):
            return False
        price = self.prices.get(cache_key)
        if price is None:
            price = self._price(draft, checked)
            if price is not None:  # never a PriceUnknown: its message names the job's values
                self.prices[cache_key] = price
        if request is None or price is None:
            return None
        if draft.shape is not None:
            self.passed[draft.shape] = _Passed(request, price, files, *_json_around_prompt(request))
        return dict(request), price, dict(files), None

    def report(self, draft: Draft, message: str, field: str | None = None) -> None:
        """Record a problem of ``draft`` at the line of ``field``, wherever it was set."""
        line = self._field_line(draft, field)
        self.problems.add(message, line, job=draft.entry_id, field=field)

    def _field_line(self, draft: Draft, field: str | None) -> int:
        """The line of the field a problem is about, wherever it was set; else the entry's."""
        name = _head(field or "")
        entry = draft.entry
        defaults = self.defaults or YamlMap(0)
        by_model = self.by_model.blocks.get(draft.model, YamlMap(0))
        sources = (
            entry,
            entry.get("params"),
            entry.get("expand"),
            by_model,
            by_model.get("params"),
            defaults,
            defaults.get("params"),
        )
        for source in sources:
            if isinstance(source, YamlMap) and name in source.key_lines:
                return source.key_lines[name]
        return draft.line

    def _claim_id(self, draft: Draft) -> bool:
        first = self.ids.get(draft.entry_id)
        if first is None:
            self.ids[draft.entry_id] = draft.line
            return True
        if first != draft.line:
            hint = "give each entry its own `id:`, or use `takes:` for repeats"
            message = (
                f"duplicate job id {draft.entry_id!r} (lines {first} and {draft.line}); {hint}"
            )
        else:
            message = f"two expanded values give the same job id {draft.entry_id!r}"
        self.report(draft, message, "expand" if first == draft.line else None)
        return False

    def _local_files(
        self, draft: Draft
    ) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, str]]:
        """(request to send, request to validate, files) with local paths replaced by hashes."""
        request: dict[str, Any] = dict(draft.request)
        checked = stand_ins(request) if draft.inputs else request  # {from: ID} as a URL
        files, ok = {}, True
        for trail, written in local_files.local_refs(draft.model, draft.request):
            try:
                digest, absolute = self.hasher.digest(written)
                files[digest] = absolute
            except ValueError as error:
                self.report(draft, str(error), field_path(trail))
                digest, ok = "unreadable", False  # validate the rest of the request anyway
            request = replaced(request, trail, local_files.ASSET_PREFIX + digest)
            checked = replaced(checked, trail, local_files.VALIDATION_URL + digest)
        return (request if ok else None), checked, files

    def _valid(
        self, draft: Draft, request: dict[str, Any], cache_key: tuple[str, Hashable]
    ) -> bool:
        verdict = self.verdicts.get(cache_key)
        if verdict is None:
            verdict = self.verdicts[cache_key] = _problems_except_prompt(draft.model, request)
        prompt_problems = _prompt_problems(draft.model, request)
        if not verdict and not prompt_problems:
            return True
        problems = without_suggested([*verdict, *prompt_problems])
        for problem in problems:
            lacking = self._lacking_default(draft, problem)
            if lacking:  # at the job's line: the defaults' line is right for other jobs
                self.problems.add(lacking, draft.line, job=draft.entry_id, field=problem.field)
            else:
                self.report(draft, problem.message, problem.field)
        return not problems

    def _lacking_default(self, draft: Draft, problem: Problem) -> str | None:
        """The message for a default that the job's model has no field for, or None."""
        name = problem.field
        if name is None or name not in draft.request or sets_itself(draft.entry, name):
            return None
        if name in load_spec().endpoints[draft.model].fields or name not in request_fields():
            return None  # a value the model refuses, or a typo no model has: the usual message
        return lacking_message(draft.model, name, self.by_model, self.defaults)

    def _price(self, draft: Draft, request: dict[str, Any]) -> int | None:
        try:
            return price_micro(draft.model, request, self.overrides)
        except PriceUnknown as error:
            hint = f"add a price for {draft.model} under `prices:` (see README, Costs)"
            self.report(draft, f"cannot price this job: {error.detail}; {hint}")
            return None

    def _output_path(self, draft: Draft, request: dict[str, Any], seq: int) -> str | None:
        try:
            names = output_paths.template_fields(draft.template)
            values = {name: self._placeholder(name, draft, request, seq) for name in names}
            still = is_image_model(draft.model)
            rendered = output_paths.render(draft.template, values)
            path = output_paths.check_path(rendered, image=still)
        except ValueError as error:
            if (draft.template_line, str(error)) not in self.template_problems:
                self.template_problems.add((draft.template_line, str(error)))  # once per template
                self.problems.add(
                    str(error), draft.template_line, job=draft.entry_id, field="output"
                )
            return None
        taken = self.paths.setdefault(
            output_paths.collision_key(path), (draft.entry_id, draft.line)
        )
        if taken[0] != draft.entry_id:
            message = f"output path {path!r} is also the path of job {taken[0]!r} (line {taken[1]})"
            self.problems.add(message, draft.line, job=draft.entry_id, field="output")
            return None
        return path

    def _placeholder(self, name: str, draft: Draft, request: dict[str, Any], seq: int) -> Any:
        """A template placeholder's value: the job's own names, a request field, or its default."""
        if name == "batch":
            return self.batch
        if name == "id":
            return draft.entry_id
        if name == "base_id":
            return draft.base_id
        if name == "take":
            return draft.take
        if name == "index":
            return seq + 1
        if name == "model":
            return draft.model
        if name == "ext":  # a still's is known once its file is verified (output_paths)
            return output_paths.Verbatim(EXT_PLACEHOLDER) if is_image_model(draft.model) else "mp4"
        if name in request:
            return request[name]
        default = load_spec().endpoints[draft.model].default(name)
        if default is None:
            known = "batch, id, base_id, take, index, model, ext, or a request field"
            raise ValueError(f"unknown placeholder {{{name}}} in the output template ({known})")
        return default


@dataclass(frozen=True, slots=True)
class _Passed:
    """A shape whose draft passed every check: what each of its jobs sends, costs and uploads."""

    request: dict[str, Any]  #: to send, with the prompt of the draft that passed
    price: int
    files: dict[str, str]
    json_head: str | None  #: the request's canonical JSON up to its prompt's text (or all of it)
    json_tail: str | None  #: and after it; None: the prompt is not spliced (see below)

    def results(self, drafted: dict[str, Any]) -> _Checked:
        """The results of a draft of this shape whose prompt passed its checks."""
        request = dict(self.request)
        head, tail = self.json_head, self.json_tail
        if "prompt" not in request:
            return request, self.price, dict(self.files), head
        prompt = request["prompt"] = drafted["prompt"]
        text = None if head is None or tail is None else head + _encode_text(prompt) + tail
        return request, self.price, dict(self.files), text


def _json_around_prompt(request: dict[str, Any]) -> tuple[str | None, str | None]:
    """``canonical_json(request)`` around the text of its prompt: (before, after); the whole
    text and None without a prompt; (None, None) when the splice would not give that text."""
    whole = canonical_json(request)
    if "prompt" not in request:
        return whole, None
    prompt, items = request["prompt"], sorted(request.items())
    before = [f"{_encode_text(k)}:{canonical_json(v)}" for k, v in items if k < "prompt"]
    after = [f"{_encode_text(k)}:{canonical_json(v)}" for k, v in items if k > "prompt"]
    head = "{" + "".join(f"{item}," for item in before) + '"prompt":'
    tail = "".join(f",{item}" for item in after) + "}"
    if not isinstance(prompt, str) or head + _encode_text(prompt) + tail != whole:
        return None, None
    return head, tail


def _shape(request: dict[str, Any]) -> Hashable:
    """The request but its prompt, as a key of the verdict cache.

    A flat request (the common case) becomes a sorted tuple of (name, type, value): types are
    kept, so 5, 5.0 and True never share a verdict. Nested values fall back to canonical JSON.
    """
    rest = [(name, type(value), value) for name, value in request.items() if name != "prompt"]
    if all(kind in _SCALARS for _, kind, _ in rest):
        return tuple(sorted(rest, key=lambda item: item[0]))
    return canonical_json({name: value for name, _, value in rest})


def _head(field: str) -> str:
    return re.split(r"[.\[]", field, maxsplit=1)[0]


def _problems_except_prompt(model: str, request: dict[str, Any]) -> list[Problem]:
    """Schema problems of every field but ``prompt`` (checked per job by _prompt_problems)."""
    problems = request_problems(model, request, suggest=True)
    return [p for p in problems if _head(p.field or "") != "prompt"]


def _prompt_problems(model: str, request: dict[str, Any]) -> list[Problem]:
    """The prompt's own checks: present if required, a string, within min/maxLength."""
    schema, required = _prompt_schema(model)
    if "prompt" not in request:
        return [Problem("prompt", REQUIRED)] if required else []
    prompt = request["prompt"]
    if not isinstance(prompt, str):
        return [Problem("prompt", f"must be of type string (got {json.dumps(prompt)})")]
    if len(prompt) < schema.get("minLength", 0):
        return [Problem("prompt", f"must be at least {schema['minLength']} characters long")]
    if "maxLength" in schema and len(prompt) > schema["maxLength"]:
        limit = schema["maxLength"]
        return [Problem("prompt", f"is {len(prompt)} characters long (limit {limit})")]
    return []


@cache
def _prompt_schema(model: str) -> tuple[dict[str, Any], bool]:
    """The schema of ``model``'s prompt field, and whether the prompt is required."""
    endpoint = load_spec().endpoints[model]
    schema: dict[str, Any] = endpoint.request_schema.get("properties", {}).get("prompt", {})
    return schema, "prompt" in endpoint.required
