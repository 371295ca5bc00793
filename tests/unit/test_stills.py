"""Stills in a manifest: image models by their path, defaults by kind, paths named by format."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.manifest.output_paths import check_path, checked_fully, collision_key
from orchestrator.spec import generate_path, resolve_model
from orchestrator.still_names import final_path, is_still, same_file, still_stem
from tests.unit.test_manifest import load, one_problem

#: The issue's storyboard head: defaults shared by a still and a clip.
FRAME_AND_SHOT = """\
batch: lighthouse
defaults: {duration: 5, aspect_ratio: "16:9"}
jobs:
  - id: keeper-frame
    model: image/google/nano-banana-pro
    prompt: an old lighthouse keeper on a spiral staircase, lantern light, 35mm film
  - id: keeper-shot
    model: kling/kling-2.5
    prompt: the keeper climbs slowly, the camera follows, dust in the light
"""


def test_a_model_is_its_path_under_generate() -> None:
    """``image/...`` is a still's model; a clip's may be written with or without ``video/``."""
    assert resolve_model("image/google/nano-banana-pro") == "image/google/nano-banana-pro"
    assert resolve_model("video/kling/kling-2.5") == resolve_model("kling/kling-2.5")
    assert resolve_model("/generate/video/kling/kling-2.5") == "kling/kling-2.5"
    assert generate_path("image/bfl/flux-1-dev") == "/generate/image/bfl/flux-1-dev"
    assert generate_path("kling/kling-2.5") == "/generate/video/kling/kling-2.5"
    with pytest.raises(ValueError, match="did you mean 'image/google/nano-banana-pro'"):
        resolve_model("nano-banana-pro")


def test_a_clips_default_is_not_given_to_a_still(tmp_path: Path) -> None:
    """``duration`` (no image model has it) stays with the clip; ``aspect_ratio``, a field of
    both, goes to both; each is priced from its own table."""
    manifest = load(tmp_path, FRAME_AND_SHOT)
    frame, shot = manifest.specs
    assert frame.request == {
        "prompt": "an old lighthouse keeper on a spiral staircase, lantern light, 35mm film",
        "aspect_ratio": "16:9",
    }
    assert shot.request["duration"] == 5
    assert shot.request["aspect_ratio"] == "16:9"
    assert frame.price_micro == 110_193  # 60.1 CU at 1K, the schema's default resolution
    assert (frame.output_path, shot.output_path) == (
        "lighthouse/keeper-frame.{ext}",
        "lighthouse/keeper-shot.mp4",
    )


def test_a_default_an_image_model_lacks_is_still_named(tmp_path: Path) -> None:
    """A field other image models have (``aspect_ratio``) but this one lacks is the usual
    error at the job's line, naming where the default came from."""
    text = FRAME_AND_SHOT.replace("google/nano-banana-pro", "bfl/flux-1-dev")
    error = one_problem(tmp_path, text)
    assert (error.line, error.job, error.field) == (4, "keeper-frame", "aspect_ratio")
    assert "image/bfl/flux-1-dev has no field 'aspect_ratio'" in error.message


@pytest.mark.parametrize(
    ("rendered", "planned"),
    [
        ("frames/a", "frames/a.{ext}"),
        ("frames/a.png", "frames/a.{ext}"),
        ("frames/a.JPEG", "frames/a.{ext}"),
        ("frames/a.mp4", "frames/a.{ext}"),
        ("frames/a.{ext}", "frames/a.{ext}"),
        ("frames/a.tif", "frames/a.tif.{ext}"),
    ],
)
def test_a_stills_path_ends_with_its_format_to_come(rendered: str, planned: str) -> None:
    """Any media extension a template gives a still becomes ``.{ext}``; both checkers agree."""
    assert check_path(rendered, image=True) == checked_fully(rendered, image=True) == planned
    assert check_path(rendered) != planned  # a clip's path keeps .mp4 rules


def test_the_template_placeholder_ext_renders_per_kind(tmp_path: Path) -> None:
    """``{ext}`` is ``mp4`` for a clip and the format to come for a still."""
    text = FRAME_AND_SHOT.replace("defaults:", 'output: "out/{id}-{ext}.{ext}"\ndefaults:')
    frame, shot = load(tmp_path, text).specs
    assert frame.output_path == "out/keeper-frame-{ext}.{ext}"
    assert shot.output_path == "out/keeper-shot-mp4.mp4"


def test_a_still_is_named_after_its_verified_format() -> None:
    """``x.{ext}`` becomes ``x.png``/``x.jpg``; a saved still is where the plan wants it; its
    file and its plan collide with any other still of that stem."""
    assert is_still("f/a.{ext}")
    assert not is_still("f/a.mp4")
    assert final_path("f/a.{ext}", ".jpg") == "f/a.jpg"
    assert final_path("f/a.mp4", ".jpg") == "f/a.mp4"
    assert same_file("f/a.png", "f/a.{ext}")
    assert same_file("f/a.mp4", "f/a.mp4")
    assert not same_file("f/b.png", "f/a.{ext}")
    assert not same_file("f/a.png", "f/a.mp4")
    assert still_stem("f/a.webp") == "f/a"
    assert still_stem("f/a.mp4") is None
    assert collision_key("F/A.PNG") == collision_key("f/a.{ext}") == collision_key("f/a.jpg")
    assert collision_key("f/a.mp4") != collision_key("f/a.{ext}")


def test_two_stills_differing_only_in_extension_collide(tmp_path: Path) -> None:
    """``a.png`` and ``a.jpg`` would both be ``a.<format>``: the manifest refuses the second."""
    text = """\
batch: b
defaults: {model: image/google/nano-banana-pro}
jobs:
  - {id: one, prompt: a red door, output: "x/a.png"}
  - {id: two, prompt: a blue door, output: "x/a.jpg"}
"""
    error = one_problem(tmp_path, text)
    assert (error.job, error.field) == ("two", "output")
    assert "also the path of job 'one'" in error.message
