"""YAML for hostile input: plain values with line numbers, or a ManifestError, nothing else.

A manifest may come from anyone, and PyYAML's defaults are unsafe for that (RELIABILITY.md §6):
``yaml.load`` can build Python objects, aliases turn a 400-byte file into an exponential walk,
deep nesting raises ``RecursionError`` (not ``YAMLError``), YAML 1.1 reads ``16:9`` as the
integer 969 and ``NO`` as False, and duplicate keys silently keep the last value.

So this module lets libyaml (``CSafeLoader``, else the pure-Python ``SafeLoader``) do the
*parsing* only, and builds the values itself from the event stream, with an explicit stack:

* anchors and aliases are refused at their line (no shared nodes, so no bomb);
* a tag other than str/int/float/bool/null/seq/map is refused before anything is built
  (``!!python/object/apply:...`` never runs);
* duplicate mapping keys are refused naming both lines; keys must be scalars;
* nesting deeper than :data:`MAX_DEPTH` is refused; no recursion happens here at all;
* files over ``max_bytes`` (64 MiB by default) are refused before parsing;
* more than :data:`MAX_VALUES` values (keys, scalars and collections together) are refused at
  the line where the count is passed: each value costs 70-250 bytes once built, so under the byte
  cap alone a 64 MiB file of ``[[],[],...]`` would need ~7 GB (a 100,000-job manifest has ~500k);
* plain scalars follow the YAML 1.2 *core* schema: only ``true``/``false`` (any case style
  the spec lists) are booleans, ``null``/``~``/empty is null, ``16:9`` and ``NO`` are strings,
  ``0x1F``/``0o17`` are ints, ``1.10`` is the float 1.1, ``.inf``/``.nan`` are floats.
  One deliberate deviation: a decimal with a leading zero (``05``, ``007``) stays a *string*,
  because YAML 1.1 reads it as octal and 1.2 as decimal; keeping the text never guesses.

Mappings come back as :class:`YamlMap` (a dict that also knows the line of each key) and
sequences as :class:`YamlList` (a list that knows the line of each item), so callers can name
the file and line of any problem. Every failure is a :class:`ManifestError`.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from typing import Any

import yaml

from orchestrator.errors import ManifestError

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MAX_DEPTH = 100
MAX_VALUES = 1_000_000

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TAG = "tag:yaml.org,2002:"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_INT_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+")
_INT_OCT = re.compile(r"0o[0-7]+")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_NUMBER_START = frozenset("0123456789+-.")
_MAYBE_TYPED = frozenset("0123456789+-.~nNtTfF")  #: how a null, boolean or number may start
_SPECIAL_FLOATS = {
    **{
        f"{sign}.{inf}": float(f"{sign or '+'}inf")
        for sign in ("", "+", "-")
        for inf in ("inf", "Inf", "INF")
    },
    **{f".{nan}": float("nan") for nan in ("nan", "NaN", "NAN")},
}


class YamlMap(dict[Any, Any]):
    """A YAML mapping: a dict plus the line of the mapping and of each key (1-based)."""

    __slots__ = ("key_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


class YamlList(list[Any]):
    """A YAML sequence: a list plus the line of the sequence and of each item (1-based)."""

    __slots__ = ("item_lines", "line")

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


def line_of(container: Any, key: Any = None) -> int | None:
    """The line of ``container[key]`` (or of the container itself), when it came from YAML."""
    if isinstance(container, YamlMap):
        return container.key_lines.get(key, container.line) if key is not None else container.line
    if isinstance(container, YamlList):
        if isinstance(key, int) and 0 <= key < len(container.item_lines):
            return container.item_lines[key]
        return container.line
    return None


def read_capped(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The file's bytes, refusing (before parsing) a file larger than ``max_bytes``."""
    shown = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)  # read one byte past the cap: no stat/read race
    except OSError as error:
        raise ManifestError(
            f"cannot read the file: {error.strerror or error}", path=shown
        ) from None
    if len(data) > max_bytes:
        cap = f"{max_bytes / 1024 / 1024:g} MiB"
        raise ManifestError(f"the file is larger than the {cap} limit for a manifest", path=shown)
    return data


def load_yaml(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Read and parse one YAML document safely (see the module docstring)."""
    return parse_yaml(read_capped(path, max_bytes), path=os.fspath(path))


def parse_yaml(
    data: bytes | str, *, path: str = "", pure_python: bool = False, inline: bool = True
) -> Any:
    """Parse one YAML document into plain values; every failure is a ManifestError.

    ``pure_python`` uses PyYAML's own parser, the fallback when libyaml is not installed.
    ``inline=False`` takes every event through the general path: the reference that the
    inline one (the same values, lines and errors, faster) is tested against.
    """
    if isinstance(data, bytes):
        _check_utf8(data, path)
    try:
        loader = yaml.SafeLoader if pure_python else _Loader
        return _Builder(path).build(data, loader, inline)
    except ManifestError:
        raise
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = " ".join(filter(None, [error.context, error.problem])) or "invalid YAML"
        raise ManifestError(f"invalid YAML: {reason}", path=path, line=line) from None
    except (yaml.YAMLError, UnicodeError) as error:
        raise ManifestError(f"invalid YAML: {_one_line(error)}", path=path) from None
    except RecursionError:
        raise ManifestError("invalid YAML: nested too deeply", path=path) from None


def _check_utf8(data: bytes, path: str) -> None:
    """Refuse text that is not UTF-8 (YAML's encoding here) naming the line and the byte."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return  # a UTF-16 byte-order mark: the YAML reader decodes it itself
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        byte = data[error.start : error.start + 1].hex()
        raise ManifestError(
            f"not UTF-8 text (byte 0x{byte}); save the file as UTF-8", path=path, line=line
        ) from None


class _Builder:
    """Turns parser events into YamlMap / YamlList / scalars with an explicit stack."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stack: list[YamlMap | YamlList] = []
        self.pending: list[tuple[Any, int] | None] = []  # per open mapping: its key, if read
        self.root: Any = None
        self.documents = 0
        self.values = 0

    def build(self, data: bytes | str, loader_class: Any, inline: bool = True) -> Any:
        loader = loader_class(data)
        try:
            if inline:
                self._run(loader.check_event, loader.get_event)
            else:
                while loader.check_event():
                    self._handle(loader.get_event())
        finally:
            loader.dispose()
        return self.root

    def _run(self, check_event: Callable[[], bool], get_event: Callable[[], Any]) -> None:
        """The event loop: ends, and plain values inside a collection, inline (nearly every
        event); the rest (tags, anchors, aliases, the first value, a collection as a key, the
        depth and value limits) by _handle, so every check and message stays the same."""
        stack, pending = self.stack, self.pending
        while check_event():
            event = get_event()
            kind = type(event)
            if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                if type(stack.pop()) is YamlMap:
                    pending.pop()
                continue
            opens = kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent
            if (
                not stack
                or not (opens or kind is yaml.ScalarEvent)
                or event.tag is not None
                or event.anchor is not None
                or self.values >= MAX_VALUES
                or (not opens and not event.implicit[0])
                or (opens and len(stack) >= MAX_DEPTH)
                or (opens and type(stack[-1]) is YamlMap and pending[-1] is None)  # as a key
            ):
                self._handle(event)
                continue
            mark = event.start_mark
            line = mark.line + 1 if mark is not None else 0
            if opens:
                value = YamlMap(line) if kind is yaml.MappingStartEvent else YamlList(line)
            else:
                text = event.value
                value = _resolve_plain(text) if not text or text[0] in _MAYBE_TYPED else text
            self._put(stack[-1], value, line)
            if opens:
                stack.append(value)
                if kind is yaml.MappingStartEvent:
                    pending.append(None)

    def _handle(self, event: yaml.Event) -> None:
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        handler = _HANDLERS.get(type(event))
        if handler is None:
            self._structure(event, line)
            return
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._fail(f"anchors (&{anchor}) are not allowed; repeat the value instead", line)
        handler(self, event, line)

    def _structure(self, event: yaml.Event, line: int) -> None:
        """Events that carry no data: documents and the stream, and (refused) aliases."""
        if isinstance(event, yaml.AliasEvent):
            self._fail(f"aliases (*{event.anchor}) are not allowed; repeat the value instead", line)
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                self._fail("only one YAML document is allowed (found a second '---')", line)

    def _scalar(self, event: yaml.ScalarEvent, line: int) -> None:
        self._add(_scalar_value(event, self.path, line), line)

    def _start_map(self, event: yaml.MappingStartEvent, line: int) -> None:
        self._check_tag(event.tag, "map", line)
        self._open(YamlMap(line), line)
        self.pending.append(None)

    def _start_list(self, event: yaml.SequenceStartEvent, line: int) -> None:
        self._check_tag(event.tag, "seq", line)
        self._open(YamlList(line), line)

    def _end(self, event: yaml.Event, line: int) -> None:
        if isinstance(self.stack.pop(), YamlMap):
            self.pending.pop()

    def _open(self, container: YamlMap | YamlList, line: int) -> None:
        if len(self.stack) >= MAX_DEPTH:
            self._fail(f"nested deeper than {MAX_DEPTH} levels", line)
        self._add(container, line)
        self.stack.append(container)

    def _add(self, value: Any, line: int) -> None:
        if self.values >= MAX_VALUES:
            self._fail(
                f"more than {MAX_VALUES:,} values, the limit for one manifest; split it into "
                "several batches, or use expand:/takes: for repeats",
                line,
            )
        if self.stack:
            self._put(self.stack[-1], value, line)
        else:
            self.values += 1
            self.root = value

    def _put(self, top: YamlMap | YamlList, value: Any, line: int) -> None:
        """``value`` into the open collection ``top`` (as its next item, key or value)."""
        self.values += 1
        if isinstance(top, YamlList):
            top.append(value)
            top.item_lines.append(line)
            return
        key = self.pending[-1]
        if key is None:
            self._set_key(top, value, line)
        else:
            top[key[0]] = value
            top.key_lines[key[0]] = key[1]
            self.pending[-1] = None

    def _set_key(self, mapping: YamlMap, key: Any, line: int) -> None:
        if isinstance(key, YamlMap | YamlList):
            self._fail("mapping keys must be plain scalars, not collections", line)
        if key in mapping.key_lines:
            first = mapping.key_lines[key]
            self._fail(f"duplicate key {key!r} at lines {first} and {line}", line)
        # 100,000 entries repeat the same few keys: one shared string each, not 100,000 copies
        self.pending[-1] = (sys.intern(key) if type(key) is str else key, line)

    def _check_tag(self, tag: str | None, kind: str, line: int) -> None:
        if tag is not None and tag not in ("!", _TAG + kind):
            self._fail(f"the tag {tag!r} is not allowed here (only plain YAML data)", line)

    def _fail(self, message: str, line: int | None) -> None:
        raise ManifestError(message, path=self.path, line=line)


_HANDLERS: dict[type[yaml.Event], Callable[[_Builder, Any, int], None]] = {
    yaml.ScalarEvent: _Builder._scalar,
    yaml.MappingStartEvent: _Builder._start_map,
    yaml.SequenceStartEvent: _Builder._start_list,
    yaml.MappingEndEvent: _Builder._end,
    yaml.SequenceEndEvent: _Builder._end,
}


def _scalar_value(event: yaml.ScalarEvent, path: str, line: int) -> Any:
    tag, text = event.tag, event.value
    if tag is None:
        return _resolve_plain(text) if event.implicit[0] else text
    if tag in ("!", _TAG + "str"):
        return text
    parse = _EXPLICIT.get(tag.removeprefix(_TAG)) if tag.startswith(_TAG) else None
    if parse is None:
        raise ManifestError(
            f"the tag {tag!r} is not allowed (only plain YAML data)", path=path, line=line
        )
    value = parse(text)
    if value is _NOT_THIS:
        raise ManifestError(
            f"{text!r} is not a valid {tag.removeprefix(_TAG)}", path=path, line=line
        )
    return value


def _resolve_plain(text: str) -> Any:
    """The value of an untagged plain scalar under the YAML 1.2 core schema (see above)."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    value = _number(text)
    return text if value is _NOT_THIS else value


_NOT_THIS: Any = object()


def _number(text: str) -> Any:
    if not text or text[0] not in _NUMBER_START:
        return _NOT_THIS  # most scalars are words: skip the regular expressions
    if _INT.fullmatch(text):
        return _int(text, 10)
    if _INT_LEADING_ZERO.fullmatch(text):
        return _NOT_THIS  # 05: octal in YAML 1.1, decimal in 1.2; kept as text
    if _INT_HEX.fullmatch(text):
        return _int(text[2:], 16)
    if _INT_OCT.fullmatch(text):
        return _int(text[2:], 8)
    if _FLOAT.fullmatch(text):
        return float(text)
    return _SPECIAL_FLOATS.get(text, _NOT_THIS)


def _int(text: str, base: int) -> Any:
    try:
        return int(text, base)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        return _NOT_THIS


def _explicit_int(text: str) -> Any:
    value = _number(text)
    return value if isinstance(value, int) else _NOT_THIS


def _explicit_float(text: str) -> Any:
    value = _number(text)
    if not isinstance(value, int | float):
        return _NOT_THIS
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


_EXPLICIT: dict[str, Callable[[str], Any]] = {
    "int": _explicit_int,
    "float": _explicit_float,
    "bool": lambda text: _BOOLS.get(text, _NOT_THIS),
    "null": lambda text: None if text in _NULLS else _NOT_THIS,
}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
