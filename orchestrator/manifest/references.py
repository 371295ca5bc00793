"""``{from: ID}``: one job's result as another job's input, checked and unrolled at load time.

A media field of an entry may name an entry *above* it instead of a URL or a file::

    - id: keeper-frame
      model: image/google/nano-banana-pro
      takes: 3
    - id: keeper-shot
      start_image: {from: keeper-frame}

The rules, which the README states and tests/unit/test_references.py pins:

* ``ID`` is the id of an entry above (the whole entry: each of its jobs) or of one of its jobs
  (``keeper-frame_t2``: that job only). Naming only entries above makes a loop impossible, and
  an unknown or later id is refused before anything is sent.
* The kind must fit the field: a field whose path says ``video`` takes a clip, one that says
  ``image`` or ``style`` a still; any other media field (``audio_url``) takes neither.
* Fan-out: the taking entry makes one job per job of each entry it names (several named entries:
  one per combination, the first named varying slowest), times its own ``expand`` and ``takes``.
  Each job's id is the entry's id, then the named job's suffix, then its own:
  ``keeper-shot_t2`` takes ``keeper-frame_t2``'s still; with ``takes: 2`` of its own,
  ``keeper-shot_t2_t1`` and ``keeper-shot_t2_t2``.
* The planned request holds ``{"from": <key of the named job>}`` there (chains.py), so a job's
  key covers its inputs' keys: editing the frame re-makes the frame and its shots, nothing else.
  Schema checks and prices see a stand-in URL, as they do for local files.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.chains import FROM, Trail, field_path, marker, markers, replaced
from orchestrator.jobs import JobSpec
from orchestrator.manifest.entries import Draft, did_you_mean
from orchestrator.manifest.local_files import is_media_place
from orchestrator.spec import is_image_model

#: Records a problem of a draft, at the line of a field (``planning.Planner.report``).
Report = Callable[[Draft, str, str | None], None]
#: What a reference becomes for schema validation and pricing (never sent anywhere).
STAND_IN_URL = "https://results.krea.invalid/"


@dataclass(frozen=True, slots=True)
class _Site:
    """One ``{from: ID}`` in a draft's request."""

    trail: Trail
    name: str  #: the id as written


class References:
    """The jobs planned so far, by id and by entry, and the drafts that take their results."""

    def __init__(self, report: Report, entry_ids: dict[str, int] | None = None) -> None:
        self.report = report  #: the planner's: a problem at the line its field was set on
        #: The ``id:`` of every entry, with its line: one that made no job has a problem of
        #: its own (reported), and one below is named as such.
        self.entry_ids = entry_ids or {}
        #: entry id -> its jobs, in order, for an entry of several (expand, takes)
        self.by_entry: dict[str, list[JobSpec]] = {}
        self.by_id: dict[str, JobSpec] = {}
        self.broken: set[str] = set()  #: ids of jobs not planned (their problem is reported)
        self.unknown: list[tuple[Draft, str, str]] = []  #: (draft, id, field) not found above
        self._plain_shapes: set[object] = set()  #: shapes whose requests hold no reference

    def finish(self) -> None:
        """Report each id that named no entry above: below it, or nowhere."""
        for draft, name, where in self.unknown:
            later = self.by_entry.get(name) or ([self.by_id[name]] if name in self.by_id else [])
            line = later[0].line if later else self.entry_ids.get(name)
            if line is not None and line < draft.line:
                continue  # an entry above with a problem of its own, reported at its line
            if line is not None or name in self.broken:
                where_below = f" (line {line})" if line is not None else ""
                message = (
                    f"{name!r}{where_below} comes after this job: an input must come before it"
                )
            else:
                hint = did_you_mean(name, [*self.by_entry, *self.by_id])
                message = f"no entry has the id {name!r}{hint}"
            self.report(draft, message, where)

    def record(self, draft: Draft, spec: JobSpec | None) -> None:
        """Remember a planned draft (None: it had a problem) for the entries below it."""
        if spec is None:
            self.broken.update((draft.entry_id, draft.base_id))
            return
        self.by_id[draft.entry_id] = spec
        if draft.entry_id != draft.base_id:  # an entry of one job is found by its id alone
            self.by_entry.setdefault(draft.base_id, []).append(spec)

    def variants(self, draft: Draft) -> list[Draft]:
        """``draft`` unrolled over the jobs it takes results from ([draft] when it takes none;
        [] after reporting a problem)."""
        sites = self._sites(draft)
        if not sites:
            return [] if sites is None else [draft]
        names = list(dict.fromkeys(site.name for site in sites))
        choices = [self._jobs_named(draft, name, sites) for name in names]
        if any(choice is None for choice in choices):
            self.broken.update((draft.entry_id, draft.base_id))
            return []
        own_suffix = draft.entry_id[len(draft.base_id) :]
        variants = []
        for combo in itertools.product(*[c for c in choices if c is not None]):
            chosen = dict(zip(names, combo, strict=True))
            request = draft.request
            for site in sites:
                spec = chosen[site.name][1]
                request = replaced(request, site.trail, marker(spec.key or spec.entry_id))
            suffix = "".join(found_suffix for found_suffix, _ in combo)
            inputs = tuple(dict.fromkeys(spec.key or spec.entry_id for _, spec in combo))
            variants.append(
                replace(
                    draft,
                    entry_id=draft.base_id + suffix + own_suffix,
                    request=request,
                    shape=None,  # each variant's request differs: no shared verdict to reuse
                    inputs=inputs,
                )
            )
        return variants

    def _sites(self, draft: Draft) -> list[_Site] | None:
        """The references in ``draft``'s request, or None after reporting a malformed one."""
        if draft.shape is not None and draft.shape in self._plain_shapes:
            return []  # drafts of one shape differ only in their prompt (entries.py)
        sites = self._found_sites(draft)
        if sites is None:
            self.broken.update((draft.entry_id, draft.base_id))  # no "unknown id" below
        elif not sites and draft.shape is not None:
            self._plain_shapes.add(draft.shape)
        return sites

    def _found_sites(self, draft: Draft) -> list[_Site] | None:
        sites, ok = [], True
        for trail, value in _mappings_with_from(draft.request):
            where = field_path(trail)
            written = value[FROM]
            if len(value) != 1 or not isinstance(written, str | int) or isinstance(written, bool):
                self.report(draft, "a reference is `{from: ID}` alone, ID an entry's id", where)
                ok = False
            elif not is_media_place(draft.model, trail):
                message = f"`{{from: ...}}` goes only where {draft.model} takes a media URL"
                self.report(draft, message, where)
                ok = False
            else:
                sites.append(_Site(trail, str(written)))
        return sites if ok else None

    def _jobs_named(
        self, draft: Draft, name: str, sites: list[_Site]
    ) -> list[tuple[str, JobSpec]] | None:
        """(id suffix, job) of each job ``name`` stands for, after checking each site's kind."""
        where = field_path(next(site.trail for site in sites if site.name == name))
        if name in self.by_entry:
            found = [(spec.entry_id[len(name) :], spec) for spec in self.by_entry[name]]
        elif name in self.by_id:
            found = [("", self.by_id[name])]
        elif name in self.broken:
            return None  # its own problem is reported at its line
        else:
            self.unknown.append((draft, name, where))  # reported by finish(): it may be below
            return None
        for site in sites:
            if site.name != name:
                continue
            wanted = _kind_wanted(site.trail)
            place = field_path(site.trail)
            if wanted is None:
                message = f"{place} takes no still or clip: it cannot take the result of {name!r}"
                self.report(draft, message, place)
                return None
            for _, spec in found:
                made = "still" if is_image_model(spec.model) else "clip"
                if made != wanted:
                    message = (
                        f"{place} takes a {wanted}, but {spec.entry_id!r} makes a {made} "
                        f"({spec.model})"
                    )
                    self.report(draft, message, place)
                    return None
        return found


def stand_ins(request: dict[str, Any]) -> dict[str, Any]:
    """``request`` with each ``{"from": ...}`` marker replaced by a stand-in URL (for checks)."""
    checked = request
    for trail, key in list(markers(request)):
        checked = replaced(checked, trail, STAND_IN_URL + key)
    return checked


def _kind_wanted(trail: Trail) -> str | None:
    """``clip``, ``still`` or None: what the field at ``trail`` takes, by its path's words."""
    path = field_path(trail).lower()
    if "video" in path:
        return "clip"
    if "image" in path or "style" in path:
        return "still"
    return None


def _mappings_with_from(value: Any, trail: Trail = ()) -> list[tuple[Trail, dict[str, Any]]]:
    """Each mapping inside ``value`` with a ``from`` key (a reference, or a malformed one)."""
    found: list[tuple[Trail, dict[str, Any]]] = []
    if isinstance(value, dict):
        if FROM in value:
            return [(trail, value)]
        for name, item in value.items():
            found += _mappings_with_from(item, (*trail, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _mappings_with_from(item, (*trail, index))
    return found
