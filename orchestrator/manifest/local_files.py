"""Local media files named in a manifest: find them in a request, check them, hash them.

Krea's media fields (``start_image``, ``reference_images``, ``video_reference.url``, ...) take a
URL. A manifest may instead name a file next to it (``start_image: data/start-frame.png``); the
uploader sends such files to ``POST /assets`` at submit time. Here, at load time, each file is
checked (exists, regular file, <= 75 MB, an extension Krea accepts) and hashed once, and the
request carries ``asset:sha256:<hex>`` in its place. That keeps the job key tied to the file's
*content*: replacing the image changes the key, moving the folder does not.

A string is a media reference when the model's schema says ``format: uri`` at that place (so a
new Krea media field needs no code change) or its field is one of :data:`MEDIA_FIELDS`. It is
local unless it starts with ``http://``, ``https://`` or ``data:``. Paths are relative to the
manifest's folder; absolute paths are taken as they are.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from functools import cache
from typing import Any

from orchestrator.chains import Trail
from orchestrator.spec import load_spec

MAX_FILE_BYTES = 75_000_000
EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".heic", ".mp4", ".mov", ".webm", ".glb", ".wav", ".mp3"}
)
MEDIA_FIELDS = frozenset(
    {
        "start_image", "end_image", "start_video", "end_video", "init_video", "init_image_url",
        "edit_video", "audio_url", "reference_images", "uri", "url",
    }
)  # fmt: skip
REMOTE_PREFIXES = ("http://", "https://", "data:")
ASSET_PREFIX = "asset:sha256:"
#: what a local file becomes for schema validation (never sent anywhere)
VALIDATION_URL = "https://assets.krea.invalid/"


def local_refs(model: str, request: dict[str, Any]) -> Iterator[tuple[Trail, str]]:
    """Each (place in the request, path as written) of a local file in ``request``."""
    properties = _properties(model)
    for name in _media_capable(model):
        if name in request:
            yield from _walk(request[name], properties.get(name, {}), name, (name,))


def is_media_place(model: str, trail: Trail) -> bool:
    """Whether ``model``'s schema takes a media URL at ``trail`` (where a local path may go)."""
    if not trail or trail[0] not in _media_capable(model):
        return False
    schema, name = _properties(model).get(str(trail[0]), {}), str(trail[0])
    for part in trail[1:]:
        schema = _child(schema, part)
        name = part if isinstance(part, str) else name
    return name in MEDIA_FIELDS or _is_uri(schema)


class FileHasher:
    """Checks and hashes local files, each distinct file once."""

    def __init__(self, base_dir: str) -> None:
        self.base_dir = base_dir
        self._seen: dict[str, tuple[str, str] | str] = {}  # abs path -> (hex, path) | problem

    def digest(self, written: str) -> tuple[str, str]:
        """(sha256 hex, absolute path) of the file; ValueError says what is wrong with it."""
        absolute = os.path.abspath(os.path.join(self.base_dir, written))
        if absolute not in self._seen:
            try:
                self._seen[absolute] = (_hash_file(absolute, written), absolute)
            except ValueError as error:
                self._seen[absolute] = str(error)
        found = self._seen[absolute]
        if isinstance(found, str):
            raise ValueError(found)
        return found

    def hashed(self) -> dict[str, str]:
        """absolute path -> sha256 of every file hashed without a problem."""
        return {path: found[0] for path, found in self._seen.items() if isinstance(found, tuple)}


def _hash_file(absolute: str, written: str) -> str:
    extension = os.path.splitext(absolute)[1].lower()
    if extension not in EXTENSIONS:
        allowed = ", ".join(sorted(e[1:] for e in EXTENSIONS))
        raise ValueError(f"local file {written!r} must have one of the extensions {allowed}")
    try:
        info = os.stat(absolute)  # before open(): opening a FIFO would block
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"local file {written!r} is not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise ValueError(f"local file {written!r} is larger than Krea's 75 MB upload limit")
        with open(absolute, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(f"local file {written!r} cannot be read: {reason}") from None


def _walk(
    value: Any, schema: dict[str, Any], name: str, trail: Trail
) -> Iterator[tuple[Trail, str]]:
    if isinstance(value, str):
        if (name in MEDIA_FIELDS or _is_uri(schema)) and not value.startswith(REMOTE_PREFIXES):
            yield trail, value
    elif isinstance(value, list):
        items = _child(schema, 0)
        for index, item in enumerate(value):
            yield from _walk(item, items, name, (*trail, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                yield from _walk(item, _child(schema, key), key, (*trail, key))


@cache
def _properties(model: str) -> dict[str, Any]:
    properties: dict[str, Any] = load_spec().endpoints[model].request_schema.get("properties", {})
    return properties


@cache
def _media_capable(model: str) -> tuple[str, ...]:
    """Top-level fields that can hold a media reference somewhere inside them."""
    return tuple(
        name
        for name, schema in _properties(model).items()
        if name in MEDIA_FIELDS or _mentions_uri(schema)
    )


def _alternatives(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield schema
    for keyword in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(keyword, ()):
            if isinstance(option, dict):
                yield from _alternatives(option)


def _is_uri(schema: dict[str, Any]) -> bool:
    return any(option.get("format") == "uri" for option in _alternatives(schema))


def _mentions_uri(schema: Any) -> bool:
    if isinstance(schema, dict):
        return schema.get("format") == "uri" or any(_mentions_uri(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_mentions_uri(v) for v in schema)
    return False


def _child(schema: dict[str, Any], key: str | int) -> dict[str, Any]:
    for option in _alternatives(schema):
        found = (
            option.get("items") if isinstance(key, int) else option.get("properties", {}).get(key)
        )
        if isinstance(found, dict):
            return found
    return {}
