"""Manifest fuzzing: any YAML, any structure, any unicode gives a clean InputError or a valid plan.

test_yaml_safe.py fuzzes the parser with token soup; here whole documents of any shape go through
``load_manifest`` (expansion, schema, prices, local files, output paths), and every plan that
comes out is checked for the promises a run relies on.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import InputError
from orchestrator.manifest.manifest import Manifest, load_manifest

#: Scalars of every YAML type, with the unicode that breaks naive code (NUL, RTL, NFD, surrogates
#: are unencodable in YAML and excluded by the dumper's own rules).
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["16:9", "9:16", "NO", "05", "0x1F", "..", "../x", "/etc/passwd", "CON",
                     "e\u0301", "\u202e", "{id}", "{nope}", "a.png", "kling/kling-2.5"]),
)  # fmt: skip
ANY = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
ENTRY_KEYS = ["id", "prompt", "model", "duration", "aspect_ratio", "expand", "takes", "output",
              "params", "start_image", "negative_prompt", "seed", "x"]  # fmt: skip
ENTRY = st.dictionaries(st.sampled_from(ENTRY_KEYS), ANY, max_size=6)
TOP_KEYS = ["batch", "defaults", "jobs", "output", "limits", "budget_usd", "prices", "job"]
MANIFESTISH = st.fixed_dictionaries(
    {"batch": st.one_of(st.sampled_from(["b", "demo-1", ".x", ""]), SCALARS)},
    optional={
        "jobs": st.one_of(st.lists(ENTRY, max_size=4), ANY),
        "defaults": st.one_of(ENTRY, ANY),
        **{k: ANY for k in TOP_KEYS if k not in ("batch", "jobs", "defaults")},
    },
)


def _dump(document: Any) -> bytes:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False).encode(
        "utf-8", "surrogatepass"
    )


def _load(folder: Path, data: bytes) -> Manifest | None:
    path = folder / "jobs.yaml"
    path.write_bytes(data)
    try:
        return load_manifest(path)
    except InputError as error:
        message = str(error)
    assert message.strip(), "an error with no message"
    assert "Traceback" not in message
    return None


def _check_plan(manifest: Manifest, out: Path) -> None:
    """What every accepted plan promises: unique keys, unique safe paths inside out/."""
    keys = [s.key for s in manifest.specs]
    assert len(set(keys)) == len(keys)
    folded = [unicodedata.normalize("NFC", s.output_path).casefold() for s in manifest.specs]
    assert len(set(folded)) == len(folded), "two jobs would write the same file"
    for spec in manifest.specs:
        assert (out / spec.output_path).resolve().is_relative_to(out.resolve())
        assert spec.price_micro >= 0


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(document=ANY)
def test_any_yaml_structure_is_an_input_error_or_a_plan(
    tmp_path_factory: pytest.TempPathFactory, document: Any
) -> None:
    """Any YAML value at all (lists, maps, scalars, unicode) never raises past InputError."""
    folder = tmp_path_factory.mktemp("any")
    manifest = _load(folder, _dump(document))
    if manifest is not None:
        _check_plan(manifest, folder / "out")


@FUZZ
@given(document=MANIFESTISH)
def test_manifest_shaped_documents_are_an_input_error_or_a_safe_plan(
    tmp_path_factory: pytest.TempPathFactory, document: dict[str, Any]
) -> None:
    """Documents with the right keys and hostile values reach every check, and fail only cleanly."""
    folder = tmp_path_factory.mktemp("shaped")
    manifest = _load(folder, _dump(document))
    if manifest is not None:
        _check_plan(manifest, folder / "out")


VALID_HEAD = "batch: b\ndefaults: {model: kling/kling-2.5, duration: 5}\njobs:\n"


@FUZZ
@given(
    prompts=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5),
    template=st.text(max_size=30),
)
def test_any_unicode_in_prompts_and_templates_is_an_input_error_or_a_safe_plan(
    tmp_path_factory: pytest.TempPathFactory, prompts: list[str], template: str
) -> None:
    """Every unicode string as a prompt and as the output template: a clean result either way."""
    folder = tmp_path_factory.mktemp("unicode")
    document = {
        "batch": "b",
        "output": template,
        "defaults": {"model": "kling/kling-2.5", "duration": 5},
        "jobs": [{"prompt": p} for p in prompts],
    }
    manifest = _load(folder, _dump(document))
    if manifest is not None:
        _check_plan(manifest, folder / "out")


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_after_a_valid_head_are_an_input_error_or_a_plan(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    """A valid start then any bytes (cut files, binary junk, bad UTF-8) fails only cleanly."""
    folder = tmp_path_factory.mktemp("bytes")
    manifest = _load(folder, VALID_HEAD.encode() + data)
    if manifest is not None:
        _check_plan(manifest, folder / "out")
