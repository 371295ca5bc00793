"""Defaults for a manifest mixing models: ``defaults_by_model:``, ``null`` unsets, and blame.

Kept apart from entries.py (the expansion step, near its size limit) because these rules are
about where a job's request parameters come from, and name that source when one is wrong:

* a job's request is ``defaults:``, then ``defaults_by_model:`` for the job's model, then the
  entry's own keys (``params:`` and ``expand:`` values included); the later wins (the merge
  itself is ``entries.merged_request``: entries.py uses it, and this module imports entries);
* ``null`` at any of those levels unsets the key: it is not sent (and ``null`` for a key that
  nothing else sets is simply absent). A nested ``null`` (inside a mapping value) is sent as is;
* ``defaults_by_model:`` maps model names, written as in ``model:``, to request parameters;
* a default that is some model's field but not the job's model's (and that the entry did not
  set itself) is reported at the job's line with where it came from and how to get rid of it
  (:func:`lacking_message`); a default no model has (a typo) keeps the schema's did-you-mean.

A manifest that uses neither ``null`` nor ``defaults_by_model:`` gives the same requests, so the
same job keys, as before these rules existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.manifest.entries import KEYWORDS, Problems, entry_params, misspelt_keywords
from orchestrator.manifest.yaml_safe import YamlMap, line_of
from orchestrator.spec import resolve_model

KEY = "defaults_by_model"


@dataclass
class ByModel:
    """The manifest's ``defaults_by_model:``, keyed by the resolved model."""

    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocks: dict[str, YamlMap] = field(default_factory=dict)  #: for the lines of its fields
    lines: dict[str, int | None] = field(default_factory=dict)  #: the line of each model's key


def parse_by_model(doc: YamlMap, problems: Problems) -> ByModel:
    """``defaults_by_model:`` checked (every problem reported), as a :class:`ByModel`."""
    found = ByModel()
    raw = doc.get(KEY)
    if raw is None:
        return found
    if not isinstance(raw, YamlMap):
        message = f"`{KEY}:` must map model names to mappings of request parameters"
        problems.add(message, line_of(doc, KEY), field=KEY)
        return found
    for key, block in raw.items():
        line, where = line_of(raw, key), f"{KEY}.{key}"
        try:
            model = resolve_model(key)
        except ValueError as error:
            problems.add(f"{error} (in `{KEY}:`)", line, field=where)
            continue
        if model in found.params:
            first = found.lines[model]
            problems.add(f"{model} is given twice in `{KEY}:` (lines {first} and {line})", line)
        elif not isinstance(block, YamlMap):
            problems.add("must be a mapping of request parameters", line, field=where)
        else:
            found.params[model] = _block_params(block, problems)
            found.blocks[model], found.lines[model] = block, line
    return found


def _block_params(block: YamlMap, problems: Problems) -> dict[str, Any]:
    """One model's parameters; keywords and misspelt ``params`` reported and left out."""
    for key in sorted(KEYWORDS & set(block) - {"params"}):
        hint = " (a request field named `model` goes under `params:`)" if key == "model" else ""
        message = f"{key!r} belongs in a job entry, not in `{KEY}:`{hint}"
        problems.add(message, line_of(block, key), field=key)
    typos = misspelt_keywords(block, ("params",))
    for key, keyword in typos.items():
        message = f"unknown key in `{KEY}:`; did you mean {keyword!r}?"
        problems.add(message, line_of(block, key), field=key)
    return entry_params(block, problems, None, skip=typos)


def sets_itself(entry: YamlMap, name: str) -> bool:
    """Whether the entry sets ``name`` itself (a key, under ``params:`` or ``expand:``)."""
    if name in entry and name not in KEYWORDS:
        return True
    return any(isinstance(entry.get(k), YamlMap) and name in entry[k] for k in ("params", "expand"))


def defaults_line(source: YamlMap | None, name: str) -> int | None:
    """The line of ``name`` in a defaults mapping (or under its ``params:``), if it is there."""
    for mapping in (source, source.get("params") if source is not None else None):
        if isinstance(mapping, YamlMap) and name in mapping.key_lines:
            return mapping.key_lines[name]
    return None


def lacking_message(
    model: str, name: str, by_model: ByModel, defaults: YamlMap | None
) -> str | None:
    """Why a field the job did not set itself is in its request, when ``model`` has no such field.

    None when the field is in neither ``defaults_by_model:`` for the model nor ``defaults:``.
    """
    lacks = f"{model} has no field {name!r}, which comes from"
    line = defaults_line(by_model.blocks.get(model), name)
    if line is not None:
        return f"{lacks} `{KEY}:` for {model} (line {line}); remove it there"
    line = defaults_line(defaults, name)
    if line is None:
        return None
    return (
        f"{lacks} defaults: (line {line}); unset it for this job with '{name}: null', "
        f"or move it under {KEY}:"
    )
