"""Did-you-mean for unknown keys: top level, job entry, request field (issue 14, item 3).

A misspelt key is one mistake, so it is one error: the unknown key, with its line and the
closest valid key, and no second "X is required" / "no model" for the key it was meant to be.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ManifestError, ManifestErrors
from orchestrator.manifest.manifest import load_manifest
from orchestrator.spec import request_problems

HEAD = "batch: b\ndefaults: {model: kling/kling-2.5}\njobs:\n"


def problems(folder: Path, text: str) -> list[ManifestError]:
    path = folder / "jobs.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestErrors) as caught:
        load_manifest(path)
    return caught.value.errors


def one_problem(folder: Path, text: str) -> ManifestError:
    found = problems(folder, text)
    assert len(found) == 1, [e.message for e in found]
    return found[0]


# -- top level ----------------------------------------------------------------------------


def test_a_misspelt_jobs_is_one_error_with_a_suggestion(tmp_path: Path) -> None:
    """`jbos:` is named with its line and 'jobs'; `jobs` is not also reported missing."""
    error = one_problem(tmp_path, "batch: b\njbos:\n  - {prompt: x}\n")
    assert error.line == 2
    assert error.reason == "unknown top-level key 'jbos'; did you mean 'jobs'?"
    assert error.message == f"{tmp_path / 'jobs.yaml'}:2: {error.reason}"


def test_a_misspelt_batch_is_one_error_with_a_suggestion(tmp_path: Path) -> None:
    """`bacth:` suggests 'batch' and the batch is not also reported missing."""
    text = "bacth: b\ndefaults: {model: kling/kling-2.5}\njobs:\n  - {prompt: x}\n"
    error = one_problem(tmp_path, text)
    assert (error.line, error.reason) == (1, "unknown top-level key 'bacth'; did you mean 'batch'?")


def test_misspelt_defaults_do_not_make_every_job_lack_a_model(tmp_path: Path) -> None:
    """`defualts:` is one error, not one more "no model" per job."""
    text = "batch: b\ndefualts: {model: kling/kling-2.5}\njobs:\n  - {prompt: x}\n  - {prompt: y}\n"
    error = one_problem(tmp_path, text)
    assert error.line == 2
    assert "did you mean 'defaults'?" in error.reason


# -- job entries --------------------------------------------------------------------------


def test_a_misspelt_prompt_is_one_error_naming_the_key_and_the_fix(tmp_path: Path) -> None:
    """`promt:` -> 'prompt', at the key's line; no "'prompt' is required" besides."""
    error = one_problem(tmp_path, HEAD + "  - id: a\n    promt: hello\n")
    assert (error.line, error.job, error.field) == (5, "a", "promt")
    assert error.reason.startswith("unknown field for kling/kling-2.5; did you mean 'prompt'? (")
    assert error.message.startswith(f"{tmp_path / 'jobs.yaml'}:5: job 'a': field 'promt': ")


def test_a_misspelt_model_is_an_unknown_entry_key_not_a_request_field(tmp_path: Path) -> None:
    """`modle:` is not judged against the default model's schema: it is a misspelt keyword."""
    text = HEAD + "  - id: a\n    modle: google/veo-3\n    prompt: x\n"
    error = one_problem(tmp_path, text)
    assert (error.line, error.job, error.field) == (5, "a", "modle")
    assert error.reason == "unknown key in a job entry; did you mean 'model'?"
    assert "kling" not in error.reason


def test_a_misspelt_model_without_a_default_model_is_one_error(tmp_path: Path) -> None:
    """No "no model: set `model:`" on top of the did-you-mean."""
    text = "batch: b\njobs:\n  - id: a\n    modle: kling/kling-2.5\n    prompt: x\n"
    error = one_problem(tmp_path, text)
    assert (error.line, error.field) == (4, "modle")
    assert "did you mean 'model'?" in error.reason


@pytest.mark.parametrize(
    ("typo", "value", "keyword"),
    [("take", "3", "takes"), ("outptu", "'x/{id}'", "output"), ("parms", "{mode: pro}", "params")],
)
def test_other_misspelt_entry_keywords(tmp_path: Path, typo: str, value: str, keyword: str) -> None:
    """Every entry keyword is a candidate."""
    error = one_problem(tmp_path, HEAD + f"  - id: a\n    prompt: x\n    {typo}: {value}\n")
    assert (error.line, error.field) == (6, typo)
    assert error.reason == f"unknown key in a job entry; did you mean {keyword!r}?"


def test_a_misspelt_model_in_defaults_is_named_there(tmp_path: Path) -> None:
    """`defaults: {modle: ...}` is one error at its line, not one per job."""
    text = (
        "batch: b\ndefaults:\n  modle: kling/kling-2.5\njobs:\n  - {prompt: x}\n  - {prompt: y}\n"
    )
    error = one_problem(tmp_path, text)
    assert (error.line, error.field) == (3, "modle")
    assert error.reason == "unknown key in `defaults:`; did you mean 'model'?"


# -- request fields -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "value", "field"),
    [("duraton", "5", "duration"), ("aspect_ration", "'16:9'", "aspect_ratio")],
)
def test_a_misspelt_request_field_suggests_the_schema_field(
    tmp_path: Path, typo: str, value: str, field: str
) -> None:
    """Fields of kling/kling-2.5's request schema are the candidates; the allowed list stays."""
    error = one_problem(tmp_path, HEAD + f"  - id: a\n    prompt: x\n    {typo}: {value}\n")
    assert (error.line, error.job, error.field) == (6, "a", typo)
    assert f"; did you mean {field!r}? (allowed: " in error.reason


def test_request_fields_in_params_expand_and_defaults_get_suggestions(tmp_path: Path) -> None:
    """Wherever a request field is written, its typo is caught with a suggestion."""
    head = "batch: b\ndefaults: {model: kling/kling-2.5, durtion: 5}\njobs:\n"
    body = (
        "  - id: a\n    prompt: x\n    params: {aspectratio: '16:9'}\n    expand: {mdoe: [std]}\n"
    )
    found = problems(tmp_path, head + body)
    got = {(e.field, e.line): e.reason.split(" (allowed")[0] for e in found}
    assert got == {
        ("aspectratio", 6): "unknown field for kling/kling-2.5; did you mean 'aspect_ratio'?",
        ("durtion", 2): "unknown field for kling/kling-2.5; did you mean 'duration'?",
        ("mdoe", 7): "unknown field for kling/kling-2.5; did you mean 'mode'?",
    }


def test_only_keys_with_a_close_match_get_a_suggestion(tmp_path: Path) -> None:
    """`duraton` gets one; `zzzqqq` (entry) and `qqqq` (top level) get none, still reported."""
    text = HEAD + "  - id: a\n    prompt: x\n    duraton: 5\n    zzzqqq: 1\nqqqq: 1\n"
    found = {e.field or e.reason.split("'")[1]: e.reason for e in problems(tmp_path, text)}
    assert "did you mean 'duration'?" in found["duraton"]
    assert found["zzzqqq"].startswith("unknown field for kling/kling-2.5 (allowed: ")
    assert found["qqqq"] == "unknown top-level key 'qqqq'"


def test_a_field_of_another_model_is_not_taken_for_a_keyword(tmp_path: Path) -> None:
    """`mode:` (a Kling field) on Veo is an unknown request field, not a misspelt `model:`."""
    error = one_problem(tmp_path, HEAD + "  - {id: a, model: google/veo-3, prompt: x, mode: pro}\n")
    assert error.field == "mode"
    assert error.reason.startswith("unknown field for google/veo-3 (allowed: ")


def test_the_simulator_messages_stay_as_krea_words_them() -> None:
    """request_problems suggests only when asked (the manifest asks; the simulator does not)."""
    asked = request_problems("kling/kling-2.5", {"promt": "x"}, suggest=True)
    assert [(p.field, p.message.split(" (")[0]) for p in asked] == [
        ("promt", "unknown field for kling/kling-2.5; did you mean 'prompt'?")
    ]
    plain = request_problems("kling/kling-2.5", {"promt": "x"})
    assert [p.field for p in plain] == ["prompt", "promt"]
    assert "did you mean" not in plain[1].message
