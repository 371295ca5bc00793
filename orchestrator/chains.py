"""Jobs that take another job's result: the marker a stored request carries in its place.

A manifest entry may name another entry's result as an input (``start_image: {from: frame}``,
see manifest/references.py). Until that result exists its URL is unknown, so the planned request
holds ``{"from": "<key of the job it comes from>"}`` at that place. The marker is part of the
request, hence of the job's key: editing the frame gives it a new key, which gives each shot
made from it a new key too. Just before the POST each marker is replaced by a URL of the
result (input_urls.py); the ledger keeps the edges (``JobSpec.inputs``).

A place in a request is a *trail* (``("reference_images", 0)``): :func:`field_path` names it
and :func:`replaced` swaps what is there, for markers and local files (local_files.py) alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

FROM = "from"

Trail = tuple[str | int, ...]


def marker(key: str) -> dict[str, str]:
    """What a request holds where the result of job ``key`` goes."""
    return {FROM: key}


def is_marker(value: Any) -> bool:
    """Whether ``value`` is a marker: a mapping of exactly ``from`` to text."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(FROM), str)


def markers(value: Any, trail: Trail = ()) -> Iterator[tuple[Trail, str]]:
    """Each (place, key) of a marker inside ``value``, in order."""
    if is_marker(value):
        yield trail, value[FROM]
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from markers(item, (*trail, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from markers(item, (*trail, index))


def field_path(trail: Trail) -> str:
    """A trail as a field path: ``reference_images[0]``, ``video_reference.url``."""
    text = ""
    for part in trail:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def replaced(value: Any, trail: Trail, new: Any) -> Any:
    """A copy of ``value`` with the item at ``trail`` replaced (containers on the way copied)."""
    if not trail:
        return new
    head, rest = trail[0], trail[1:]
    if isinstance(value, dict) and isinstance(head, str):
        return {**value, head: replaced(value[head], rest, new)}
    if isinstance(value, list) and isinstance(head, int):
        return [*value[:head], replaced(value[head], rest, new), *value[head + 1 :]]
    return value
