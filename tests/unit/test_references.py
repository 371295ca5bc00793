"""``{from: ID}`` in a manifest: which jobs it makes, their ids and keys, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.chains import markers
from orchestrator.manifest.manifest import load_manifest
from orchestrator.manifest.references import STAND_IN_URL, stand_ins
from tests.unit.test_manifest import load, one_problem, problems

FRAME = """\
  - id: keeper-frame
    model: image/google/nano-banana-pro
    prompt: an old lighthouse keeper on a spiral staircase, lantern light, 35mm film
"""
SHOT = """\
  - id: keeper-shot
    model: kling/kling-2.5
    prompt: the keeper climbs slowly, the camera follows, dust in the light
    start_image: {from: keeper-frame}
"""
HEAD = 'batch: lighthouse\ndefaults: {duration: 5, aspect_ratio: "16:9"}\njobs:\n'


def by_id(folder: Path, text: str) -> dict[str, object]:
    return {spec.entry_id: spec for spec in load(folder, text).specs}


def test_a_shot_takes_its_frames_result_and_its_key_covers_the_frames(tmp_path: Path) -> None:
    """The issue's storyboard: the shot's request holds the frame's key where its URL goes."""
    frame, shot = load(tmp_path, HEAD + FRAME + SHOT).specs
    assert shot.request["start_image"] == {"from": frame.key}
    assert shot.inputs == (frame.key,)
    assert frame.inputs == ()
    assert list(markers(shot.request)) == [(("start_image",), frame.key)]
    assert shot.price_micro == load(tmp_path, HEAD + SHOT.replace(
        "{from: keeper-frame}", "https://example.com/a.png")).specs[0].price_micro  # fmt: skip


def test_takes_on_the_frame_make_one_shot_each_with_matching_ids(tmp_path: Path) -> None:
    frame = FRAME + "    takes: 3\n"
    specs = by_id(tmp_path, HEAD + frame + SHOT)
    assert list(specs) == [
        "keeper-frame_t1", "keeper-frame_t2", "keeper-frame_t3",
        "keeper-shot_t1", "keeper-shot_t2", "keeper-shot_t3",
    ]  # fmt: skip
    for take in (1, 2, 3):
        shot, made = specs[f"keeper-shot_t{take}"], specs[f"keeper-frame_t{take}"]
        assert shot.inputs == (made.key,)  # type: ignore[attr-defined]
        assert shot.output_path == f"lighthouse/keeper-shot_t{take}.mp4"  # type: ignore[attr-defined]


def test_the_shots_own_takes_and_expand_multiply_after_the_frames_suffix(tmp_path: Path) -> None:
    frame = FRAME + "    takes: 2\n"
    shot = SHOT + "    takes: 2\n    expand: {duration: [5, 10]}\n"
    specs = by_id(tmp_path, HEAD + frame + shot)
    shots = sorted(name for name in specs if name.startswith("keeper-shot"))
    assert specs["keeper-shot_t2_10_t1"].inputs == (specs["keeper-frame_t2"].key,)  # type: ignore[attr-defined]
    assert shots == [
        "keeper-shot_t1_10_t1", "keeper-shot_t1_10_t2", "keeper-shot_t1_5_t1",
        "keeper-shot_t1_5_t2", "keeper-shot_t2_10_t1", "keeper-shot_t2_10_t2",
        "keeper-shot_t2_5_t1", "keeper-shot_t2_5_t2",
    ]  # fmt: skip


def test_one_take_by_its_own_id_makes_one_job(tmp_path: Path) -> None:
    frame = FRAME + "    takes: 3\n"
    shot = SHOT.replace("{from: keeper-frame}", "{from: keeper-frame_t2}")
    specs = by_id(tmp_path, HEAD + frame + shot)
    assert [name for name in specs if name.startswith("keeper-shot")] == ["keeper-shot"]
    assert specs["keeper-shot"].inputs == (specs["keeper-frame_t2"].key,)  # type: ignore[attr-defined]


def test_two_named_entries_make_every_combination_and_one_entry_twice_is_one(
    tmp_path: Path,
) -> None:
    sea = FRAME.replace("keeper-frame", "sea-frame") + "    takes: 2\n"
    frame = FRAME + "    takes: 2\n"
    shot = SHOT + "    end_image: {from: sea-frame}\n"
    specs = by_id(tmp_path, HEAD + frame + sea + shot)
    shots = {k: v for k, v in specs.items() if k.startswith("keeper-shot")}
    assert list(shots) == [
        "keeper-shot_t1_t1", "keeper-shot_t1_t2", "keeper-shot_t2_t1", "keeper-shot_t2_t2",
    ]  # fmt: skip
    assert shots["keeper-shot_t2_t1"].inputs == (  # type: ignore[attr-defined]
        specs["keeper-frame_t2"].key,  # type: ignore[attr-defined]
        specs["sea-frame_t1"].key,  # type: ignore[attr-defined]
    )
    both = SHOT + "    end_image: {from: keeper-frame}\n"
    specs = by_id(tmp_path, HEAD + frame + both)
    assert [k for k in specs if k.startswith("keeper-shot")] == ["keeper-shot_t1", "keeper-shot_t2"]
    assert specs["keeper-shot_t1"].request["end_image"] == {  # type: ignore[attr-defined]
        "from": specs["keeper-frame_t1"].key  # type: ignore[attr-defined]
    }


def test_editing_the_frame_changes_the_frame_and_its_shots_keys_only(tmp_path: Path) -> None:
    other = "  - id: other\n    model: kling/kling-2.5\n    prompt: unrelated\n"
    before = by_id(tmp_path, HEAD + FRAME + SHOT + other)
    after = by_id(tmp_path, HEAD + FRAME.replace("35mm film", "16mm film") + SHOT + other)
    changed = {name for name in before if before[name].key != after[name].key}  # type: ignore[attr-defined]
    assert changed == {"keeper-frame", "keeper-shot"}


def test_references_in_lists_and_objects_are_found(tmp_path: Path) -> None:
    """Each item of ``reference_images`` and an image model's ``style_images[].url``."""
    veo = (
        "  - id: veo\n    model: google/veo-3.1\n    prompt: x\n    duration: 8\n"
        "    reference_images: [{from: keeper-frame}, https://example.com/b.png]\n"
    )
    restyle = (
        "  - id: restyle\n    model: image/google/nano-banana-pro\n    prompt: the same, in ink\n"
        "    style_images: [{url: {from: keeper-frame}, strength: 1}]\n"
    )
    specs = by_id(tmp_path, HEAD + FRAME + veo + restyle)
    frame_key = specs["keeper-frame"].key  # type: ignore[attr-defined]
    assert specs["veo"].request["reference_images"] == [  # type: ignore[attr-defined]
        {"from": frame_key}, "https://example.com/b.png",
    ]  # fmt: skip
    assert specs["restyle"].request["style_images"] == [  # type: ignore[attr-defined]
        {"url": {"from": frame_key}, "strength": 1}
    ]


def test_checks_and_prices_see_a_stand_in_url() -> None:
    request = {"prompt": "p", "reference_images": [{"from": "k1"}, {"from": "k2"}]}
    assert stand_ins(request)["reference_images"] == [STAND_IN_URL + "k1", STAND_IN_URL + "k2"]
    assert request["reference_images"] == [{"from": "k1"}, {"from": "k2"}]  # not changed


@pytest.mark.parametrize(
    ("shot", "message", "field"),
    [
        ("    start_image: {from: keeper-fram}\n",
         "no entry has the id 'keeper-fram'; did you mean 'keeper-frame'?", "start_image"),
        ("    start_video: {from: keeper-frame}\n",
         "start_video takes a clip, but 'keeper-frame' makes a still", "start_video"),
        ("    start_image: {from: keeper-frame, strength: 2}\n",
         "a reference is `{from: ID}` alone", "start_image"),
        ("    params: {negative_prompt: {from: keeper-frame}}\n",
         "`{from: ...}` goes only where kling/kling-2.5 takes a media URL", "negative_prompt"),
    ],
)  # fmt: skip
def test_a_wrong_reference_is_one_error_naming_line_job_and_field(
    tmp_path: Path, shot: str, message: str, field: str
) -> None:
    text = HEAD + FRAME + SHOT.replace("    start_image: {from: keeper-frame}\n", shot)
    error = one_problem(tmp_path, text)
    assert message in error.message
    assert (error.job, error.field) == ("keeper-shot", field)
    assert error.line == text.splitlines().index(shot.splitlines()[0]) + 1


def test_a_field_that_takes_no_still_or_clip_refuses_a_reference(tmp_path: Path) -> None:
    wan = "  - id: wan\n    model: alibaba/wan-2.5\n    prompt: x\n"
    wan += "    audio_url: {from: keeper-frame}\n"
    error = one_problem(tmp_path, HEAD + FRAME + wan)
    assert "audio_url takes no still or clip" in error.message


def test_an_input_below_or_itself_is_refused_so_no_loop_can_form(tmp_path: Path) -> None:
    error = one_problem(tmp_path, HEAD + SHOT + FRAME)
    assert error.message.endswith(
        "'keeper-frame' (line 8) comes after this job: an input must come before it"
    )
    assert error.line == 7
    itself = SHOT.replace("{from: keeper-frame}", "{from: keeper-shot}")
    assert "comes after this job" in one_problem(tmp_path, HEAD + itself).message


def test_a_broken_input_is_reported_once_at_its_own_line(tmp_path: Path) -> None:
    """The frame's problem is the one error; the shots below it add none of their own."""
    broken = FRAME.replace("nano-banana-pro", "nano-banana-proo")
    then = SHOT + SHOT.replace("keeper-shot", "keeper-shot2").replace(
        "{from: keeper-frame}", "{from: keeper-shot}")  # fmt: skip
    found = problems(tmp_path, HEAD + broken + then)
    assert [error.job for error in found] == ["keeper-frame"]


def test_validate_and_estimate_need_no_keys(tmp_path: Path) -> None:
    """Unkeyed loads (validate, estimate) still chain: by the named job's id."""
    path = tmp_path / "m.yaml"
    path.write_text(HEAD + FRAME + SHOT)
    frame, shot = load_manifest(path, keyed=False).specs
    assert shot.request["start_image"] == {"from": "keeper-frame"}
    assert frame.price_micro > 0
    assert shot.price_micro > 0
