"""One manifest, several models: ``null`` unsets a default, ``defaults_by_model:`` (issue 14.2)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.manifest.manifest import PLANNER_FILES, TOP_LEVEL, Manifest
from tests.samples import MINIMAL
from tests.unit.test_manifest import load, problems

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator"

#: minimax/hailuo has neither ``duration`` nor ``aspect_ratio``; kling/kling-2.5 has both.
MIXED = """\
batch: mix
defaults: {duration: 5, aspect_ratio: "16:9"}
jobs:
  - id: h1
    model: minimax/hailuo
    prompt: a quiet harbour at dawn
    duration: null
    aspect_ratio: null
  - id: k1
    model: kling/kling-2.5
    prompt: an eagle over snowy mountains
"""


def requests(manifest: Manifest) -> dict[str, dict[str, object]]:
    return {spec.entry_id: spec.request for spec in manifest.specs}


# -- null unsets a default ------------------------------------------------------------------


def test_null_in_a_job_unsets_a_default_for_that_job_only(tmp_path: Path) -> None:
    """The hailuo job sends no duration/aspect_ratio; the kling job keeps both defaults."""
    found = requests(load(tmp_path, MIXED))
    assert found["h1"] == {"prompt": "a quiet harbour at dawn"}
    assert found["k1"] == {
        "prompt": "an eagle over snowy mountains",
        "duration": 5,
        "aspect_ratio": "16:9",
    }


def test_null_for_a_key_nothing_sets_is_simply_absent(tmp_path: Path) -> None:
    """`seed: null` with no default for seed: no error, and no seed in the request."""
    text = MIXED.replace("    aspect_ratio: null\n", "    aspect_ratio: null\n    seed: null\n")
    assert "seed" not in requests(load(tmp_path, text))["h1"]
    text = MIXED.replace("  - id: k1\n", "  - id: k1\n    params: {start_video: null}\n")
    assert "start_video" not in requests(load(tmp_path, text))["k1"]


# -- defaults_by_model ----------------------------------------------------------------------


BY_MODEL = """\
batch: mix
defaults: {duration: 5, aspect_ratio: "16:9"}
defaults_by_model:
  video/minimax/hailuo-02: {aspect_ratio: null, duration: 6, resolution: 768p}
  kling/kling-2.5: {mode: pro, duration: 10}
jobs:
  - id: h2
    model: minimax/hailuo-02
    prompt: a quiet harbour at dawn
  - id: h2_long
    model: /generate/video/minimax/hailuo-02
    prompt: a quiet harbour at dusk
    duration: 10
  - id: k1
    model: kling/kling-2.5
    prompt: an eagle over snowy mountains
  - id: k1_own
    model: kling/kling-2.5
    prompt: an eagle over snowy mountains
    duration: 5
"""


def test_defaults_by_model_apply_per_model_and_the_entry_still_wins(tmp_path: Path) -> None:
    """Model names as in `model:`; general defaults, then the model's, then the entry's own."""
    found = requests(load(tmp_path, BY_MODEL))
    assert found["h2"] == {"prompt": "a quiet harbour at dawn", "duration": 6, "resolution": "768p"}
    assert found["h2_long"]["duration"] == 10, "the entry wins over defaults_by_model"
    assert found["k1"] == {
        "prompt": "an eagle over snowy mountains",
        "duration": 10,
        "aspect_ratio": "16:9",
        "mode": "pro",
    }
    assert found["k1_own"]["duration"] == 5, "the entry wins over defaults_by_model"
    assert "defaults_by_model" in TOP_LEVEL


def test_a_null_in_defaults_by_model_unsets_a_general_default(tmp_path: Path) -> None:
    """hailuo-02 has no aspect_ratio: `aspect_ratio: null` under its model keeps it out."""
    text = """\
batch: mix
defaults: {duration: 6, aspect_ratio: "16:9"}
defaults_by_model: {minimax/hailuo-02: {aspect_ratio: null}}
jobs:
  - {id: h2, model: minimax/hailuo-02, prompt: a quiet harbour at dawn}
  - {id: k1, model: kling/kling-2.5, prompt: an eagle, duration: 5}
"""
    found = requests(load(tmp_path, text))
    assert found["h2"] == {"prompt": "a quiet harbour at dawn", "duration": 6}
    assert found["k1"]["aspect_ratio"] == "16:9"


def test_defaults_by_model_follow_an_expanded_model(tmp_path: Path) -> None:
    """`expand: {model: [...]}` gives each job its own model's defaults."""
    text = """\
batch: mix
defaults: {model: google/veo-3, duration: 6, aspect_ratio: "16:9"}
defaults_by_model: {minimax/hailuo-02: {aspect_ratio: null}}
jobs:
  - id: shot
    prompt: a quiet harbour at dawn
    expand: {model: [minimax/hailuo-02, google/veo-3]}
"""
    manifest = load(tmp_path, text)
    assert [("aspect_ratio" in s.request, s.model) for s in manifest.specs] == [
        (False, "minimax/hailuo-02"),
        (True, "google/veo-3"),
    ]


def test_an_unknown_model_in_defaults_by_model_is_an_error_with_a_suggestion(
    tmp_path: Path,
) -> None:
    text = BY_MODEL.replace("  kling/kling-2.5: {mode", "  kling/klign-2.5: {mode")
    (error,) = problems(tmp_path, text)
    assert "unknown model 'kling/klign-2.5'" in error.message
    assert "did you mean 'kling/kling-2.5'?" in error.message
    assert (error.path, error.line) == (str(tmp_path / "jobs.yaml"), 5)


def test_defaults_by_model_must_be_mappings(tmp_path: Path) -> None:
    job = "jobs:\n  - {model: google/veo-3, prompt: x}\n"
    text = "batch: b\ndefaults_by_model: [kling/kling-2.5]\n" + job
    (error,) = problems(tmp_path, text)
    assert "`defaults_by_model:` must map model names" in error.message
    assert error.line == 2
    text = "batch: b\ndefaults_by_model: {google/veo-3: 5}\n" + job
    (error,) = problems(tmp_path, text)
    assert "must be a mapping of request parameters" in error.message


# -- a default the job's model lacks ----------------------------------------------------------


def test_a_default_the_model_lacks_names_its_source_and_both_ways_out(tmp_path: Path) -> None:
    """At the job's line, naming the defaults' line, with `null` and defaults_by_model: offered."""
    text = MIXED.replace("    duration: null\n", "")
    (error,) = problems(tmp_path, text)
    assert str(error) == (
        f"{tmp_path / 'jobs.yaml'}:4: job 'h1': field 'duration': minimax/hailuo has no field "
        "'duration', which comes from defaults: (line 2); unset it for this job with "
        "'duration: null', or move it under defaults_by_model:"
    )


def test_a_field_the_entry_sets_itself_keeps_the_usual_message(tmp_path: Path) -> None:
    """An entry's own unknown field is the entry's mistake: the schema's message, its line."""
    text = MIXED.replace("    duration: null\n", "    duration: 5\n")
    (error,) = problems(tmp_path, text)
    assert error.line == 7
    assert error.reason.startswith("unknown field for minimax/hailuo")


def test_a_field_a_model_block_sets_but_the_model_lacks_points_there(tmp_path: Path) -> None:
    text = """\
batch: mix
defaults_by_model:
  minimax/hailuo: {duration: 5}
jobs:
  - {id: h1, model: minimax/hailuo, prompt: a quiet harbour}
"""
    (error,) = problems(tmp_path, text)
    assert error.line == 5
    assert error.reason == (
        "minimax/hailuo has no field 'duration', which comes from `defaults_by_model:` for "
        "minimax/hailuo (line 3); remove it there"
    )


# -- stable keys --------------------------------------------------------------------------


#: Computed on the code before null/defaults_by_model existed: these pin key stability. A
#: manifest using neither must keep every job's key, or a resumed run would send jobs again.
PINNED = """\
batch: pin
defaults: {model: kling/kling-2.5, duration: 5}
jobs:
  - id: eagle
    prompt: a majestic eagle soaring over snow-capped mountains at sunrise
  - id: harbour
    prompt: a foggy harbour at dawn
    duration: 10
    expand: {aspect_ratio: ["16:9", "9:16"]}
  - prompt: a hailuo job with its own fields
    model: minimax/hailuo-02
    params: {duration: 6}
"""


def test_an_unchanged_manifest_keeps_its_job_keys(tmp_path: Path) -> None:
    assert {s.entry_id: s.key for s in load(tmp_path, PINNED).specs} == {
        "eagle": "3331ffebed18bfbf3091684ad15ba53c",
        "harbour_16x9": "5e1e2e218015b0898a0daad57ab29ab9",
        "harbour_9x16": "6f9418ef871b6e0738321a3b854c70d2",
        "a-hailuo-job-with-its-own-61a7d6": "81c93147ebd47389592dfd35dca61b44",
    }
    assert [s.key for s in load(tmp_path, MINIMAL).specs] == [
        "364b6bf82e9eef103ddeacc13b9dc0c1",
        "6f027b9a57b31c4d3da87095820255dd",
    ]


def test_the_planner_fingerprint_reads_every_file_it_names() -> None:
    """A missing name is fingerprinted by its name only: a rule change would go unnoticed."""
    assert [name for name in PLANNER_FILES if not (PACKAGE / name).is_file()] == []
