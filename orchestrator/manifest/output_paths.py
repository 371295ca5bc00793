"""Output paths: render a job's path template, and refuse any path that could escape or collide.

A manifest's ``output`` template decides where each MP4 lands under the output directory, and
the manifest may be hostile (RELIABILITY.md P6.5). So a rendered path is accepted only if it is
a plain relative POSIX path that stays inside the output directory on every OS we run on:

* ``/`` separators only; no backslash, no absolute path, no empty, ``.`` or ``..`` segment;
* no control characters (NUL included), line separators or bidi overrides, and none of the
  characters Windows forbids (``< > : " | ? *``);
* no Windows device names (CON, PRN, AUX, NUL, COM1-9, LPT1-9, any case, with or without an
  extension) and no segment ending in a dot or a space;
* at most 240 characters in all and 255 UTF-8 bytes per segment;
* normalised to Unicode NFC, and ``.mp4`` is appended when the path does not already end with
  it (any case), so ``{batch}/{id}`` works and ``x.mov`` becomes ``x.mov.mp4``.

A still (an image model's job) is saved under the extension of the format its bytes are
verified to be (PNG, JPEG or WebP), which is known only once it is downloaded. So its planned
path ends with the literal ``.{ext}`` (``still_names``: ``{ext}`` renders as itself for a
still, as ``mp4`` for a clip, and a still's path gets ``.{ext}`` in place of any media
extension its template gives), and the file is named once its format is known. Two stills
whose paths differ only in that extension collide.

Two jobs collide when their paths are equal after NFC + casefold (:func:`collision_key`): on a
case-insensitive filesystem one would overwrite the other, so the manifest refuses both.

Placeholders are plain names only (``{id}``, ``{duration}``); attribute access, indexing,
conversions and nested fields are refused, so a template can never reach into Python objects.
Values are slugged (:func:`slug`): ``16:9`` becomes ``16x9``, ``/`` becomes ``_``.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Mapping
from functools import cache
from typing import Any

from orchestrator.still_names import IMAGE_EXTENSIONS, IMAGE_SUFFIX, still_stem

DEFAULT_TEMPLATE = "{batch}/{id}.{ext}"
MAX_PATH_CHARS = 240
MAX_SEGMENT_BYTES = 255
EXTENSION = ".mp4"
#: Media extensions a still's rendered path gives up for ``.{ext}``.
_REPLACED = (*IMAGE_EXTENSIONS, ".jpeg", EXTENSION)


class Verbatim(str):
    """A placeholder value rendered as it is, not slugged: ``{ext}`` of a still."""


DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{name}{n}" for name in ("COM", "LPT") for n in range(1, 10)}
)
_FORBIDDEN = frozenset('\\<>:"|?*')
_BAD_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
PLAIN = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?")
_SAFE_ASCII = re.compile(r"[ !#-)+-.0-9;=@-\[\]-{}~/]*")  # printable ASCII except \\ < > : " | ? *
#: A printable-ASCII path, ``.mp4`` appended, that the full checks accept: non-empty segments
#: of _SAFE_ASCII characters but ``/``, none ending in a dot or a space (so never ``.`` or
#: ``..``) nor a device name (its text up to the first dot, spaces stripped, in any case).
#: _DEVICE spells DEVICES out, by prefix: one alternative per name is half as fast.
_DEVICE = r" *(?i:AUX|COM[1-9]|CON(?:IN\$|OUT\$)?|LPT[1-9]|NUL|PRN) *(?:[./]|\Z)"
_SEGMENT = rf"(?!{_DEVICE})[ !#-)+-.0-9;=@-\[\]-{{}}~]*[!#-)+-\-0-9;=@-\[\]-{{}}~]"
_ACCEPTED = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*", re.ASCII)
_BIDI = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def slug(value: Any) -> str:
    """A value as safe path/id text: ``16:9`` -> ``16x9``, ``a/b`` -> ``a_b``, 5.0 -> ``5``."""
    text: str = value if type(value) is str else value_text(value)  # exactly str: its own text
    if (text.isascii() and text.isalnum()) or (PLAIN.fullmatch(text) and "--" not in text):
        return text  # the common case (ids, numbers): nothing to change
    text = unicodedata.normalize("NFC", text).replace(":", "x").replace("/", "_")
    kept = "".join(c if c.isalnum() or c in "._-" else "-" for c in text)
    while "--" in kept:
        kept = kept.replace("--", "-")
    return kept.strip("-.") or "_"


def value_text(value: Any) -> str:
    """A placeholder's value as text, before slugging: YAML's spelling of booleans and null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@cache
def template_fields(template: str) -> tuple[str, ...]:
    """The placeholder names of ``template``; ValueError when it is malformed or unsafe."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(f"malformed output template {template!r}: {error}") from None
    names = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(f"placeholder {{{name}}} must be a plain name like {{id}}")
        if conversion or spec:
            raise ValueError(
                f"placeholder {{{name}}}: conversions and format specs are not supported"
            )
        names.append(name)
    return tuple(names)


def render(template: str, values: Mapping[str, Any]) -> str:
    """The template with each placeholder replaced by its slugged value (names must be known)."""
    try:
        form, names = _form(template)
    except ValueError:  # malformed: refuse with what a reading from the left meets first
        for _, name, _, _ in string.Formatter().parse(template):  # raises at the fault
            _known(name, values)
        raise
    texts = []
    for name in names:
        _known(name, values)
        value = values[name]
        texts.append(value if type(value) is Verbatim else slug(value))
    return form % tuple(texts)


def _known(name: str | None, values: Mapping[str, Any]) -> None:
    if name is not None and name not in values:
        raise ValueError(f"unknown placeholder {{{name}}} in the output template")


@cache
def _form(template: str) -> tuple[str, tuple[str, ...]]:
    """``template`` as a %-format of its literal text, and its placeholders' names in order."""
    parts = list(string.Formatter().parse(template))
    form = "".join(
        literal.replace("%", "%%") + ("" if name is None else "%s") for literal, name, _, _ in parts
    )
    return form, tuple(name for _, name, _, _ in parts if name is not None)


def check_path(path: str, *, image: bool = False) -> str:
    """The safe, NFC-normalised form of a rendered path; ValueError says why it is refused.

    ``image``: the path of a still, which ends with :data:`IMAGE_SUFFIX` (see the docstring).

    A printable-ASCII path (the common case) is accepted by one match of :data:`_ACCEPTED`,
    which holds each rule such a path can break; anything it does not accept goes through the
    full checks, so every refusal and its message comes from them (test_output_paths_fast.py
    compares the two).
    """
    if image:
        path = _image_form(path)
    if path.isascii() and path[-1:] not in ("", "/"):  # else an empty last segment: refused
        text = path if image or path[-4:].lower() == EXTENSION else path + EXTENSION
        if len(text) <= MAX_PATH_CHARS and _ACCEPTED.fullmatch(text):
            return text  # ASCII is NFC; no segment of <= 240 ASCII characters exceeds 255 bytes
    return checked_fully(path, image=image)


def checked_fully(path: str, *, image: bool = False) -> str:
    """:func:`check_path` by every rule, one at a time: the reference its fast match is tested
    against, and the source of every refusal and its message."""
    text = path if path.isascii() else unicodedata.normalize("NFC", path)  # ASCII is NFC
    if image:
        text = _image_form(text)
    _check_characters(text)
    segments = text.split("/")
    if not all(segments):
        raise ValueError(f"output path {text!r} must be relative, without empty segments")
    if not image and not text.casefold().endswith(EXTENSION):
        text += EXTENSION
        segments[-1] += EXTENSION
    for segment in segments:
        _check_segment(segment)
    if len(text) > MAX_PATH_CHARS:
        raise ValueError(f"output path is {len(text)} characters long (limit {MAX_PATH_CHARS})")
    return text


def collision_key(path: str) -> str:
    """Paths equal under this key would overwrite each other on some filesystem; a still's
    path and its file's (``x.{ext}``, ``x.png``) have one key."""
    key = (path if path.isascii() else unicodedata.normalize("NFC", path)).casefold()
    stem = still_stem(key)
    return key if stem is None else stem + IMAGE_SUFFIX


def _image_form(path: str) -> str:
    """A still's rendered path with ``.{ext}`` in place of a media extension, or added."""
    if path.endswith(IMAGE_SUFFIX):
        return path
    folded = path.casefold()
    for extension in _REPLACED:
        if folded.endswith(extension) and len(path) > len(extension):
            return path[: -len(extension)] + IMAGE_SUFFIX
    return path + IMAGE_SUFFIX


def _check_characters(text: str) -> None:
    if _SAFE_ASCII.fullmatch(text):
        return
    for char in text:
        if char in _FORBIDDEN or char in _BIDI or unicodedata.category(char) in _BAD_CATEGORIES:
            raise ValueError(f"output path {text!r} contains the forbidden character {char!r}")


def _check_segment(segment: str) -> None:
    if segment in (".", "..") or segment.endswith((".", " ")):
        raise ValueError(f"output path segment {segment!r} must not be '..' or end in a dot/space")
    if segment.split(".")[0].strip().upper() in DEVICES:
        raise ValueError(f"output path segment {segment!r} is a reserved device name on Windows")
    if len(segment.encode()) > MAX_SEGMENT_BYTES:
        raise ValueError(f"output path segment is longer than {MAX_SEGMENT_BYTES} bytes")
