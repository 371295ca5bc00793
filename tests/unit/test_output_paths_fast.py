"""The fast paths of output_paths.py give what the full code gives: the same path or the same error.

``render`` (a cached %-format, a shortcut in ``slug``) and ``check_path`` (one regex match for a
printable-ASCII path) are compared with the code as it was before they were made fast, kept
here as the reference, on random and hostile templates, values and paths: device names in any
case and with spaces or extensions, dots, spaces, separators, forbidden and unicode characters,
and values long enough to break the limits.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.manifest import output_paths
from orchestrator.manifest.output_paths import DEVICES, check_path, render, slug

NAMES = ("batch", "id", "model", "take", "index", "duration", "aspect_ratio")
#: Characters that each take some branch of the checks or of ``slug``.
HOSTILE = (
    string.ascii_letters
    + string.digits
    + " ._-/:\\<>\"|?*%$#{}~!'()+,;=@[]^`&"
    + "\x00\t\n\x1f\x7f"
    + "é\u0301ÉıİſK\u212a\u212b\u2126\u1100\u1161ﬁ東\u00a0\u2028\u202e\u200f\U0001f3ac\ud800"
)


def _reference_slug(value: Any) -> str:
    text = output_paths.value_text(value)
    if output_paths.PLAIN.fullmatch(text) and "--" not in text:
        return text
    text = unicodedata.normalize("NFC", text).replace(":", "x").replace("/", "_")
    kept = "".join(c if c.isalnum() or c in "._-" else "-" for c in text)
    while "--" in kept:
        kept = kept.replace("--", "-")
    return kept.strip("-.") or "_"


def _reference_render(template: str, values: Mapping[str, Any]) -> str:
    pieces = []
    for literal, name, _, _ in string.Formatter().parse(template):
        pieces.append(literal)
        if name is not None:
            if name not in values:
                raise ValueError(f"unknown placeholder {{{name}}} in the output template")
            pieces.append(_reference_slug(values[name]))
    return "".join(pieces)


def _outcome(function: Callable[..., str], *args: Any) -> tuple[str, str]:
    try:
        return "ok", function(*args)
    except ValueError as error:
        return "refused", str(error)


def _any_case(text: str, upper: list[bool]) -> str:
    flags = upper + [False] * len(text)
    return "".join(c.upper() if up else c.lower() for c, up in zip(text, flags, strict=False))


devices = st.builds(
    lambda lead, name, upper, trail, rest: " " * lead + _any_case(name, upper) + " " * trail + rest,
    st.integers(0, 2),
    st.sampled_from(sorted(DEVICES | {"COM0", "LPT10", "CONIN", "CONOUT", "CONX", "AU", "NULL"})),
    st.lists(st.booleans(), max_size=7),
    st.integers(0, 2),
    st.sampled_from(["", ".", ".mp4", ".MP4", ".txt", "..", "x", ".tar.gz", " .a", "$"]),
)
long_texts = st.builds(
    lambda c, n: c * n, st.sampled_from(["a", "é", "東", ".", "ab."]), st.integers(0, 300)
)
texts = st.one_of(
    st.text(HOSTILE, max_size=12), devices, long_texts, st.sampled_from(["", ".", ".."])
)
values = st.one_of(
    texts,
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
segments = st.one_of(texts, st.sampled_from(["{batch}", "{id}", "{id}.mp4", "{model}", "{take}"]))
literals = st.text(HOSTILE + "{}", max_size=6).map(
    lambda t: t.replace("{", "{{").replace("}", "}}")
)
placeholders = st.sampled_from([f"{{{n}}}" for n in (*NAMES, "unknown")])
templates = st.one_of(
    st.lists(st.one_of(literals, placeholders), max_size=6).map("".join),
    st.lists(segments, min_size=1, max_size=4).map("/".join),
    st.sampled_from(
        [output_paths.DEFAULT_TEMPLATE, "{batch}/{id}", "{", "}", "{a.b}", "{0}", "{id!r}"]
    ),
    st.sampled_from(
        ["{id:>5}", "%s{id}%%", "{batch}//{id}", "/{id}", "{id}/", "{batch}/aleph/{id}"]
    ),
)
#: ASCII the fast check sees, dense in dots, spaces, separators and device-name letters.
dense = st.text("aCoNuLx1 ./-_$%", max_size=10)
paths = st.one_of(
    dense,
    st.lists(texts, min_size=1, max_size=4).map("/".join),
    st.text(HOSTILE, max_size=40),
    st.builds(
        lambda head, n, end: f"{head}/{'a' * n}{end}",
        texts,
        st.integers(225, 250),
        st.sampled_from(["", ".mp4", ".MP4", ".Mp4", ".mov", ".", " "]),
    ),
)
job_values = st.fixed_dictionaries({name: values for name in NAMES})
fast = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(values)
def test_slug_is_the_full_slug(value: Any) -> None:
    assert slug(value) == _reference_slug(value)


@fast
@given(templates, job_values)
def test_render_is_the_full_render(template: str, job: dict[str, Any]) -> None:
    assert _outcome(render, template, job) == _outcome(_reference_render, template, job)


@fast
@given(paths)
def test_check_path_is_the_full_check(path: str) -> None:
    assert _outcome(check_path, path) == _outcome(output_paths.checked_fully, path)


@fast
@given(templates, job_values)
def test_rendered_and_checked_as_before(template: str, job: dict[str, Any]) -> None:
    """What planning does per job: the same path or the same message as the full code."""

    def before() -> str:
        return output_paths.checked_fully(_reference_render(template, job))

    assert _outcome(lambda: check_path(render(template, job))) == _outcome(before)


@pytest.mark.parametrize("name", sorted(DEVICES))
@pytest.mark.parametrize("form", ["{}", "{}.mp4", " {} .txt", "x/{}", "{}/x", "{}.", "a/{} /b"])
def test_every_device_name_is_refused_in_any_case(name: str, form: str) -> None:
    for variant in (name, name.lower(), name.capitalize(), name.swapcase().capitalize()):
        path = form.format(variant)
        outcome = _outcome(check_path, path)
        assert outcome[0] == "refused"
        assert outcome == _outcome(output_paths.checked_fully, path)


@pytest.mark.parametrize(
    "path", ["a /b", "a./b", "./a", "../a", "a/..", "a/. /b", "a/", "/a", "a//b", "", " ", "."]
)
def test_dots_spaces_and_empty_segments_as_before(path: str) -> None:
    assert _outcome(check_path, path) == _outcome(output_paths.checked_fully, path)


@pytest.mark.parametrize("path", ["COM0", "LPT10", "CONX", "xCON", "NULL.mp4", "a/AUXx", "CONIN"])
def test_near_device_names_are_accepted_as_before(path: str) -> None:
    assert check_path(path) == output_paths.checked_fully(path)


def test_a_malformed_template_is_refused_for_what_comes_first() -> None:
    """An unknown placeholder before the fault is named, as the full code names it (found by
    hypothesis: ``{}{``)."""
    job = {"id": "a"}
    for template in ("{}{", "{x}{", "{id}{"):
        assert _outcome(render, template, job) == _outcome(_reference_render, template, job)
