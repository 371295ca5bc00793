"""yaml_safe: hostile YAML gives a ManifestError with a line, never a traceback or a side effect."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import ManifestError
from orchestrator.manifest.yaml_safe import (
    MAX_DEPTH,
    YamlList,
    YamlMap,
    line_of,
    load_yaml,
    parse_yaml,
    read_capped,
)
from tests.samples import LOL_BOMB

both_parsers = pytest.mark.parametrize("pure", [False, True], ids=["libyaml", "pure-python"])


def parse(text: str | bytes, pure: bool = False) -> Any:
    return parse_yaml(text, path="m.yaml", pure_python=pure)


def refused(text: str | bytes, pure: bool = False) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        parse(text, pure)
    return caught.value


@both_parsers
def test_plain_values_come_back_with_the_line_of_every_key_and_item(pure: bool) -> None:
    """Mappings and sequences carry 1-based lines for themselves, their keys and their items."""
    doc = parse("batch: demo\njobs:\n  - id: a\n    prompt: x\n  - id: b\n", pure)
    assert doc == {"batch": "demo", "jobs": [{"id": "a", "prompt": "x"}, {"id": "b"}]}
    assert isinstance(doc, YamlMap)
    assert doc.key_lines == {"batch": 1, "jobs": 2}
    jobs = doc["jobs"]
    assert isinstance(jobs, YamlList)
    assert jobs.item_lines == [3, 5]
    assert line_of(jobs[0], "prompt") == 4
    assert line_of(jobs, 1) == 5


@both_parsers
def test_unquoted_16_9_is_the_string_16_9_not_sexagesimal(pure: bool) -> None:
    """YAML 1.1 reads 16:9 as 969; we read the text the user wrote."""
    assert parse("aspect_ratio: 16:9\nt: 1:30:00", pure) == {"aspect_ratio": "16:9", "t": "1:30:00"}


@both_parsers
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("NO", "NO"),
        ("yes", "yes"),
        ("on", "on"),
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("", None),
        ("05", "05"),
        ("007", "007"),
        ("0", 0),
        ("-12", -12),
        ("0x1F", 31),
        ("0o17", 15),
        ("1.10", 1.1),
        ("1e3", 1000.0),
        ("2024-01-01", "2024-01-01"),
        ("1_000", "1_000"),
        ("'5'", "5"),
        ('"true"', "true"),
    ],
)
def test_plain_scalars_follow_the_yaml_1_2_core_schema(pure: bool, text: str, value: Any) -> None:
    """Only true/false are booleans, and a leading-zero number stays text."""
    loaded = parse(f"v: {text}", pure)["v"]
    assert loaded == value
    assert type(loaded) is type(value)


def test_infinity_and_nan_are_floats() -> None:
    """.inf and .nan are the core schema's special floats (the manifest refuses them later)."""
    doc = parse("a: .inf\nb: -.Inf\nc: .nan")
    assert doc["a"] == math.inf
    assert doc["b"] == -math.inf
    assert math.isnan(doc["c"])


@both_parsers
def test_the_lol_alias_bomb_is_refused_at_its_first_anchor(pure: bool) -> None:
    """Anchors and aliases are refused outright, so the exponential walk never starts."""
    error = refused(LOL_BOMB, pure)
    assert error.line == 1
    assert "anchors" in error.reason


@pytest.mark.timeout(1)
def test_the_lol_alias_bomb_is_refused_within_one_second() -> None:
    """The 9-level bomb costs nothing to refuse."""
    refused(LOL_BOMB)


@both_parsers
def test_an_alias_is_refused_with_its_line(pure: bool) -> None:
    """An alias to an anchor is named at the alias's line when the anchor is not seen first."""
    error = refused("a: 1\nb: *x\n", pure)
    assert error.line == 2


def test_deep_flow_nesting_is_a_manifest_error() -> None:
    """'[' * 5000 raises RecursionError in plain PyYAML; here it is a clean error with a line."""
    error = refused("[" * 5000)
    assert error.line == 1


@both_parsers
def test_deep_block_nesting_is_refused_past_the_limit(pure: bool) -> None:
    """Nesting deeper than MAX_DEPTH is refused; just under it loads."""
    assert parse("- " * (MAX_DEPTH - 1) + "x", pure) is not None
    error = refused("- " * (MAX_DEPTH + 1) + "x", pure)
    assert f"{MAX_DEPTH} levels" in error.reason


def test_pure_python_deep_flow_nesting_is_a_manifest_error() -> None:
    """The pure-Python parser has no nesting cap of its own; ours applies."""
    assert "levels" in refused("[" * 5000, pure=True).reason


@both_parsers
def test_python_object_tags_are_refused_and_never_run(
    pure: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """!!python/object/apply:os.system is refused with its line; the canary is not created."""
    monkeypatch.chdir(tmp_path)
    error = refused('batch: x\nrun: !!python/object/apply:os.system ["touch canary"]\n', pure)
    assert error.line == 2
    assert "python/object/apply" in error.reason
    assert not (tmp_path / "canary").exists()


@pytest.mark.parametrize(
    "text",
    [
        "a: !!binary aGVsbG8=",
        "a: !!timestamp 2024-01-01",
        "a: !!set {x, y}",
        "a: !!omap [x: 1]",
        "a: !custom 1",
        "a: !!python/name:os.system",
        "a: !<tag:example.com,2000:x> 1",
        "a: !!int abc",
        "a: !!bool maybe",
        "a: !!null x",
    ],
)
def test_tags_beyond_plain_data_are_refused(text: str) -> None:
    """Only str/int/float/bool/null/seq/map tags are allowed, and they must fit their value."""
    assert refused(text).line == 1


def test_standard_explicit_tags_are_honoured() -> None:
    """!!str keeps text, !!int and !!float convert, !!map and !!seq are plain containers."""
    doc = parse('a: !!str 5\nb: !!int "7"\nc: !!float 2\nd: !!seq [1]\ne: !!map {x: 1}\nf: ! 5')
    assert doc == {"a": "5", "b": 7, "c": 2.0, "d": [1], "e": {"x": 1}, "f": "5"}


@both_parsers
def test_duplicate_keys_are_refused_naming_both_lines(pure: bool) -> None:
    """Duplicate prompt: keys are not silently last-wins."""
    error = refused("jobs:\n  - id: a\n    prompt: one\n    prompt: two\n", pure)
    assert "'prompt'" in error.reason
    assert "lines 3 and 4" in error.reason
    assert error.line == 4


def test_collection_keys_are_refused() -> None:
    """A mapping key must be a scalar."""
    assert "plain scalars" in refused("? [a, b]\n: c\n").reason


def test_a_second_document_is_refused() -> None:
    """One file, one manifest."""
    assert refused("a: 1\n---\nb: 2\n").line == 2


@pytest.mark.parametrize(
    "data",
    [b"a: \xff\xfe\xfa", b"a: [1, 2", b"a: 'unterminated", b"\x00", "a: \ud800", b"a:\n\tb: 1"],
)
def test_malformed_yaml_is_a_manifest_error(data: str | bytes) -> None:
    """Broken bytes, brackets, quotes, NUL, surrogates and tabs all give a clean error."""
    reason = refused(data).reason
    assert reason.startswith(("invalid YAML", "not UTF-8 text")), reason


def test_an_empty_document_is_none() -> None:
    """An empty file has no value (the manifest then says what it needs)."""
    assert parse("") is None
    assert parse("# only a comment\n") is None


def test_files_over_the_size_cap_are_refused_before_parsing(tmp_path: Path) -> None:
    """The cap is checked on the bytes read, and the message states the limit."""
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: " + b"x" * 2 * 1024 * 1024)
    with pytest.raises(ManifestError, match="larger than the 1 MiB limit"):
        read_capped(path, max_bytes=1024 * 1024)
    with pytest.raises(ManifestError, match="1 MiB"):
        load_yaml(path, max_bytes=1024 * 1024)


def test_a_file_at_the_cap_loads(tmp_path: Path) -> None:
    """Exactly max_bytes is still allowed."""
    path = tmp_path / "ok.yaml"
    path.write_bytes(b"a: 1\n")
    assert load_yaml(path, max_bytes=5) == {"a": 1}


def test_an_unreadable_path_is_a_manifest_error(tmp_path: Path) -> None:
    """A missing file or a directory names the path."""
    with pytest.raises(ManifestError, match="cannot read") as caught:
        load_yaml(tmp_path / "missing.yaml")
    assert caught.value.path == os.fspath(tmp_path / "missing.yaml")
    with pytest.raises(ManifestError, match="cannot read"):
        load_yaml(tmp_path)


YAMLISH = st.lists(
    st.sampled_from(
        [
            "a", "b:", ": ", "- ", "-", "\n", "  ", "    ", "\t", "[", "]", "{", "}", ",", "'", '"',
            "&x ", "*x", "&y", "*y", "!!str ", "!!python/object/apply:os.system ", "!x ", "!!int ",
            "? ", "|", ">", "---", "...", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "#", "16:9", "NO",
            "05", ".inf", "~", "\\", "\x00", "\ufeff", "é", "e\u0301", "\u2028", "<<: ", "1e9",
        ]
    ),
    max_size=40,
).map("".join)  # fmt: skip


def _only_manifest_errors(data: str | bytes, pure: bool) -> None:
    with contextlib.suppress(ManifestError):
        parse(data, pure)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.text(), st.binary(), YAMLISH), pure=st.booleans())
def test_arbitrary_input_gives_a_value_or_a_manifest_error(data: str | bytes, pure: bool) -> None:
    """Text, bytes, unicode and YAML-ish token soup never raise anything but ManifestError."""
    _only_manifest_errors(data, pure)


@both_parsers
def test_text_that_is_not_utf8_is_refused_naming_its_line_and_byte(pure: bool) -> None:
    """A Latin-1 file (é as 0xe9) is one clear error at its line, not a decoder's message."""
    error = refused("batch: x\njobs:\n  - prompt: café\n".encode("latin-1"), pure)
    assert error.line == 3
    assert "not UTF-8 text (byte 0xe9)" in error.message


def test_utf16_with_a_byte_order_mark_still_reads() -> None:
    """YAML allows UTF-16 with a BOM; the UTF-8 check leaves it to the reader."""
    assert parse("batch: x\n".encode("utf-16")) == {"batch": "x"}
