"""manifest: YAML in, validated/expanded/priced JobSpecs out; every problem names file:line."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import ManifestError, ManifestErrors
from orchestrator.jobs import job_key
from orchestrator.manifest.entries import derived_id
from orchestrator.manifest.local_files import FileHasher
from orchestrator.manifest.manifest import Limits, Manifest, load_manifest
from orchestrator.manifest.output_paths import check_path, render
from orchestrator.spec import load_spec
from tests.samples import MINIMAL

ROOT = Path(__file__).resolve().parents[2]
PNG = ROOT / "data" / "start-frame.png"


def write(folder: Path, text: str, name: str = "jobs.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load(folder: Path, text: str) -> Manifest:
    return load_manifest(write(folder, text))


def problems(folder: Path, text: str) -> list[ManifestError]:
    with pytest.raises(ManifestErrors) as caught:
        load(folder, text)
    return caught.value.errors


def one_problem(folder: Path, text: str) -> ManifestError:
    found = problems(folder, text)
    assert len(found) == 1, [e.message for e in found]
    return found[0]


def jobs(body: str, head: str = "batch: b\ndefaults: {model: kling/kling-2.5}\n") -> str:
    return head + "jobs:\n" + body


# -- the minimal manifest -------------------------------------------------------------------


def test_the_minimal_manifest_loads_exactly_as_written(tmp_path: Path) -> None:
    """Two jobs, defaults merged (job wins), priced, default output paths, lines, seq."""
    path = write(tmp_path, MINIMAL)
    manifest = load_manifest(path)
    assert manifest.batch == "demo"
    assert manifest.path == str(path)
    assert manifest.sha256 == hashlib.sha256(MINIMAL.encode()).hexdigest()
    assert manifest.output_template == "{batch}/{id}.{ext}"
    assert manifest.limits == Limits()
    assert manifest.budget_micro is None
    eagle, harbour = manifest.specs
    assert eagle.request == {
        "prompt": "a majestic eagle soaring over snow-capped mountains at sunrise",
        "duration": 5,
        "aspect_ratio": "16:9",
    }
    assert harbour.request["duration"] == 10
    assert (eagle.entry_id, eagle.model, eagle.seq, eagle.line) == (
        "eagle",
        "kling/kling-2.5",
        0,
        7,
    )
    assert (harbour.seq, harbour.line) == (1, 9)
    assert (eagle.price_micro, harbour.price_micro) == (366_700, 735_234)
    assert (eagle.output_path, harbour.output_path) == ("demo/eagle.mp4", "demo/harbour.mp4")
    assert eagle.key == job_key("demo", "eagle", "kling/kling-2.5", eagle.request)
    assert eagle.files == {}


def test_loading_writes_nothing(tmp_path: Path) -> None:
    """load_manifest only reads: the folder is unchanged afterwards."""
    write(tmp_path, MINIMAL)
    before = sorted(os.listdir(tmp_path))
    load_manifest(tmp_path / "jobs.yaml")
    assert sorted(os.listdir(tmp_path)) == before


# -- keys ---------------------------------------------------------------------------------


def test_reloading_gives_the_same_keys(tmp_path: Path) -> None:
    """The same manifest always maps onto the same ledger rows."""
    assert [s.key for s in load(tmp_path, MINIMAL).specs] == [
        s.key for s in load(tmp_path, MINIMAL).specs
    ]


def test_formatting_key_order_and_quoting_change_no_key(tmp_path: Path) -> None:
    """Whitespace, comments, key order, flow style and quoting are not part of a job's identity."""
    reformatted = """\
# the same manifest, written differently
jobs:
  - prompt: "a majestic eagle soaring over snow-capped mountains at sunrise"
    id: 'eagle'

  - {duration: 10, prompt: 'a foggy harbour at dawn, slow dolly shot, cinematic', id: harbour}
defaults: {aspect_ratio: '16:9', duration: 5, model: "kling/kling-2.5"}
batch:    "demo"
"""
    assert [s.key for s in load(tmp_path, MINIMAL).specs] == [
        s.key for s in load(tmp_path, reformatted).specs
    ]


def test_editing_one_prompt_changes_exactly_one_key(tmp_path: Path) -> None:
    """Only the edited job gets a new key (so only it is sent again)."""
    before = [s.key for s in load(tmp_path, MINIMAL).specs]
    after = [s.key for s in load(tmp_path, MINIMAL.replace("foggy", "misty")).specs]
    assert before[0] == after[0]
    assert before[1] != after[1]


# -- top level ----------------------------------------------------------------------------


def test_unknown_top_level_keys_suggest_the_closest(tmp_path: Path) -> None:
    """A typo in a top-level key is named with its line and a did-you-mean."""
    error = one_problem(tmp_path, MINIMAL + "budget: 5\n")
    assert error.line == 12
    assert "'budget'" in error.reason
    assert "did you mean 'budget_usd'" in error.reason


@pytest.mark.parametrize("batch", ["", ".hidden", "a b", "a/b", "x" * 65, "true", "[1]"])
def test_bad_batch_names_are_refused(tmp_path: Path, batch: str) -> None:
    """batch: letters, digits, . _ -, no leading dot, at most 64 characters."""
    error = one_problem(tmp_path, MINIMAL.replace("batch: demo", f"batch: {batch}"))
    assert error.field == "batch"
    assert error.line == 1


def test_a_numeric_batch_is_its_text(tmp_path: Path) -> None:
    """`batch: 2024` is the batch "2024"."""
    assert load(tmp_path, MINIMAL.replace("batch: demo", "batch: 2024")).batch == "2024"


@pytest.mark.parametrize(
    "text", ["", "- a\n- b\n", "just text\n", "batch: demo\n", "batch: demo\njobs: []\n"]
)
def test_a_manifest_needs_a_mapping_with_batch_and_jobs(tmp_path: Path, text: str) -> None:
    """Empty files, lists, scalars and missing/empty jobs are refused with a message."""
    with pytest.raises((ManifestError, ManifestErrors)):
        load(tmp_path, text)


def test_limits_and_budget_are_read(tmp_path: Path) -> None:
    """limits and budget_usd land on the Manifest (budget in integer micro-USD)."""
    head = "limits: {max_in_flight: 3, requests_per_second: 0.5}\nbudget_usd: 2.5\n"
    manifest = load(tmp_path, head + MINIMAL)
    assert manifest.limits == Limits(max_in_flight=3, requests_per_second=0.5)
    assert manifest.budget_micro == 2_500_000
    assert manifest.priority == 0
    assert load(tmp_path, "priority: -7\n" + MINIMAL).header.priority == -7


@pytest.mark.parametrize(
    ("head", "field"),
    [
        ("limits: {max_in_flight: 0}\n", "max_in_flight"),
        ("limits: {max_in_flight: true}\n", "max_in_flight"),
        ("limits: {requests_per_second: 0}\n", "requests_per_second"),
        ("limits: {requests_per_second: .inf}\n", "requests_per_second"),
        ("limits: {rps: 1}\n", None),
        ("limits: 4\n", None),
        ("budget_usd: -1\n", "budget_usd"),
        ("budget_usd: '5'\n", "budget_usd"),
        ("priority: 101\n", "priority"),
        ("priority: 1.5\n", "priority"),
        ("priority: true\n", "priority"),
        ("prices: {kling/kling-2.5: -1}\n", "prices.kling/kling-2.5"),
        ("prices: {nope/model: 1}\n", "prices.nope/model"),
        ("prices: [1]\n", "prices"),
        ("output: 5\n", "output"),
        ("output: '{id'\n", "output"),
        ("output: '{id.__class__}'\n", "output"),
        ("output: '{id!r}'\n", "output"),
    ],
)
def test_bad_settings_are_refused_with_their_line(
    tmp_path: Path, head: str, field: str | None
) -> None:
    """Every top-level setting is checked, and the problem is on line 1 where it was written."""
    error = one_problem(tmp_path, head + MINIMAL)
    assert error.line == 1
    assert error.field == field


# -- models, params -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["/generate/video/kling/kling-2.5", "video/kling/kling-2.5", "kling/kling-2.5/"]
)
def test_model_prefixes_are_dropped(tmp_path: Path, model: str) -> None:
    """A model may be written as the full endpoint path."""
    manifest = load(tmp_path, MINIMAL.replace("model: kling/kling-2.5", f"model: {model}"))
    assert {s.model for s in manifest.specs} == {"kling/kling-2.5"}


def test_unknown_models_suggest_the_closest(tmp_path: Path) -> None:
    """`kling-2.5` is unknown, but `kling/kling-2.5` is suggested (reported once, not per job)."""
    error = one_problem(tmp_path, MINIMAL.replace("model: kling/kling-2.5", "model: kling-2.5"))
    assert (error.line, error.field) == (3, "model")
    assert "did you mean 'kling/kling-2.5'" in error.reason


def test_a_job_model_overrides_the_default(tmp_path: Path) -> None:
    """Per-job model and parameters; the other defaults still apply."""
    body = "  - {id: a, model: kling/kling-1, mode: pro, prompt: x}\n"
    (spec,) = load(tmp_path, jobs(body)).specs
    assert spec.model == "kling/kling-1"
    assert spec.request == {"prompt": "x", "mode": "pro"}
    assert spec.price_micro == 385_035


def test_a_job_without_any_model_is_refused(tmp_path: Path) -> None:
    """No model in the entry nor in defaults: say where to put one."""
    error = one_problem(tmp_path, "batch: b\njobs:\n  - {id: a, prompt: x}\n")
    assert (error.line, error.job) == (3, "a")
    assert "no model" in error.reason


def test_params_carries_names_that_clash_with_keywords(tmp_path: Path) -> None:
    """Hailuo's own `model` field is sent through `params:`."""
    body = "  - id: h\n    model: minimax/hailuo\n    prompt: x\n    params: {model: S2V-01}\n"
    (spec,) = load(tmp_path, jobs(body, "batch: b\n")).specs
    assert spec.request == {"prompt": "x", "model": "S2V-01"}


def test_unknown_params_are_sent_as_is_and_refused_by_the_schema(tmp_path: Path) -> None:
    """Every non-keyword key is a request field; the spec names unknown ones (and renames)."""
    found = problems(tmp_path, jobs("  - {id: a, prompt: x, aspectRatio: '16:9', colour: red}\n"))
    assert {(e.field, e.line) for e in found} == {("aspectRatio", 4), ("colour", 4)}
    assert any("Krea renamed it to 'aspect_ratio'" in e.reason for e in found)


# -- validation -----------------------------------------------------------------------------


def test_schema_problems_name_file_line_job_and_field(tmp_path: Path) -> None:
    """duration 7 on Kling 2.5 is reported at the line of `duration:`."""
    path = write(tmp_path, jobs("  - id: a\n    prompt: x\n    duration: 7\n"))
    with pytest.raises(ManifestErrors) as caught:
        load_manifest(path)
    (error,) = caught.value.errors
    assert (error.path, error.line, error.job, error.field) == (str(path), 6, "a", "duration")
    assert error.message.startswith(f"{path}:6: job 'a': field 'duration': must be one of 5, 10")


def test_a_problem_in_defaults_is_reported_at_the_defaults_line(tmp_path: Path) -> None:
    """A bad default is named where it was written, for the job it breaks."""
    text = "batch: b\ndefaults:\n  model: kling/kling-2.5\n  duration: 7\n"
    text += "jobs:\n  - {id: a, prompt: x}\n"
    error = one_problem(tmp_path, text)
    assert (error.line, error.job, error.field) == (4, "a", "duration")


def test_the_prompt_is_checked_per_job_even_when_the_rest_is_cached(tmp_path: Path) -> None:
    """Jobs sharing everything but the prompt share a verdict; a bad prompt is still caught."""
    body = (
        "".join(f"  - {{id: j{i}, prompt: p{i}}}\n" for i in range(3))
        + "  - {id: bad, prompt: 5}\n"
    )
    body += "  - {id: none}\n  - {id: long, model: kling/kling-3.0, prompt: " + "x" * 2501 + "}\n"
    found = problems(tmp_path, jobs(body))
    assert [(e.job, e.field) for e in found] == [
        ("bad", "prompt"),
        ("none", "prompt"),
        ("long", "prompt"),
    ]
    assert "must be of type string" in found[0].reason
    assert "is required" in found[1].reason
    assert "limit 2500" in found[2].reason


def test_values_equal_in_python_but_of_other_types_never_share_a_verdict(tmp_path: Path) -> None:
    """5 is valid; "5" and true (== 1 in Python) are checked on their own and refused."""
    body = "  - {id: a, prompt: x, duration: 5}\n  - {id: b, prompt: x, duration: '5'}\n"
    body += "  - {id: c, prompt: x, duration: true}\n  - {id: d, prompt: x, duration: 5.0}\n"
    found = problems(tmp_path, jobs(body))
    assert [(e.job, e.field) for e in found] == [("b", "duration"), ("c", "duration")]


def test_no_request_schema_ties_the_prompt_to_another_field() -> None:
    """The validation cache assumes it: top-level schemas have no cross-field keywords."""
    allowed = {"type", "properties", "required", "additionalProperties"}
    for endpoint in load_spec().endpoints.values():
        assert set(endpoint.request_schema) <= allowed, endpoint.model


def test_non_finite_numbers_are_refused(tmp_path: Path) -> None:
    """.inf cannot be sent as JSON."""
    error = one_problem(
        tmp_path, jobs("  - {id: a, prompt: x, model: alibaba/wan-2.5, seed: .inf}\n")
    )
    assert "finite" in error.reason


def test_problems_are_capped_at_fifty(tmp_path: Path) -> None:
    """Hundreds of bad jobs give 50 problems and a count of the rest."""
    body = "".join(f"  - {{id: j{i}, prompt: p, duration: 7}}\n" for i in range(120))
    found = problems(tmp_path, jobs(body))
    assert len(found) == 51
    assert found[-1].reason == "... and 70 more problems"


# -- expansion and ids ----------------------------------------------------------------------


def test_expand_makes_the_cartesian_product_in_order(tmp_path: Path) -> None:
    """First key slowest; ids get a slug per value (16:9 -> 16x9)."""
    body = "  - id: c\n    prompt: x\n    expand:\n"
    body += "      aspect_ratio: ['16:9', '9:16']\n      duration: [5, 10]\n"
    specs = load(tmp_path, jobs(body)).specs
    assert [s.entry_id for s in specs] == ["c_16x9_5", "c_16x9_10", "c_9x16_5", "c_9x16_10"]
    assert [(s.request["aspect_ratio"], s.request["duration"]) for s in specs] == [
        ("16:9", 5), ("16:9", 10), ("9:16", 5), ("9:16", 10),
    ]  # fmt: skip
    assert [s.seq for s in specs] == [0, 1, 2, 3]
    assert len({s.key for s in specs}) == 4


def test_takes_repeat_each_combination(tmp_path: Path) -> None:
    """takes: N gives _t1.._tN ids, distinct keys, identical requests."""
    body = "  - {id: w, prompt: x, takes: 2, expand: {duration: [5, 10]}}\n"
    specs = load(tmp_path, jobs(body)).specs
    assert [s.entry_id for s in specs] == ["w_5_t1", "w_5_t2", "w_10_t1", "w_10_t2"]
    assert specs[0].request == specs[1].request
    assert specs[0].key != specs[1].key


def test_one_take_adds_no_suffix(tmp_path: Path) -> None:
    """takes: 1 is the same as no takes."""
    assert load(tmp_path, jobs("  - {id: w, prompt: x, takes: 1}\n")).specs[0].entry_id == "w"


def test_expanding_over_models(tmp_path: Path) -> None:
    """`expand: {model: [...]}` compares models; the slug of a model swaps / for _."""
    body = "  - {id: m, prompt: x, expand: {model: [kling/kling-2.5, video/kling/kling-1]}}\n"
    specs = load(tmp_path, jobs(body)).specs
    assert [(s.entry_id, s.model) for s in specs] == [
        ("m_kling_kling-2.5", "kling/kling-2.5"), ("m_kling_kling-1", "kling/kling-1"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("{id: a, prompt: x, takes: 0}", "takes"),
        ("{id: a, prompt: x, takes: 1001}", "takes"),
        ("{id: a, prompt: x, takes: two}", "takes"),
        ("{id: a, prompt: x, expand: [1]}", "expand"),
        ("{id: a, prompt: x, expand: {duration: []}}", "duration"),
        ("{id: a, prompt: x, expand: {duration: 5}}", "duration"),
        ("{id: a, prompt: x, duration: 5, expand: {duration: [5]}}", "expand"),
        ("{id: a, prompt: x, expand: {id: [a]}}", "expand"),
        ("{id: a, prompt: x, expand: {model: [nope]}}", "model"),
        ("{id: a, prompt: x, expand: {aspect_ratio: ['16:9', '16x9']}}", "expand"),
        ("{id: a, prompt: x, takes: 1000, expand: {seed: [" + "1, " * 1000 + "2]}}", "expand"),
    ],
)
def test_bad_takes_and_expand_are_refused(tmp_path: Path, entry: str, field: str) -> None:
    """takes is 1..1000; expand maps parameters to non-empty lists; expanded ids stay unique."""
    found = problems(tmp_path, jobs(f"  - {entry}\n"))
    assert found[0].field == field
    assert found[0].line == 4


def test_an_entry_without_id_is_named_after_its_prompt(tmp_path: Path) -> None:
    """<slug of the first 6 words>-<6 hex of sha256(prompt)>."""
    prompt = "A Majestic eagle: soaring over snow-capped mountains at sunrise"
    (spec,) = load(tmp_path, jobs(f"  - prompt: '{prompt}'\n")).specs
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:6]
    assert spec.entry_id == f"a-majestic-eagle-soaring-over-snow-capped-{digest}"
    assert derived_id(None, 4) == "entry-5"


@pytest.mark.parametrize("bad", ["''", "'.dot'", "a/b", "'a b'", "x" * 101, "true", '"a\\0"'])
def test_bad_ids_are_refused(tmp_path: Path, bad: str) -> None:
    """Ids: letters/digits/._-, at most 100 characters, no leading dot, text or a number."""
    error = one_problem(tmp_path, jobs(f"  - {{id: {bad}, prompt: x}}\n"))
    assert (error.field, error.line) == ("id", 4)


def test_unicode_ids_are_normalised_to_nfc(tmp_path: Path) -> None:
    """An NFD id (macOS) is the same id as its NFC form."""
    (spec,) = load(tmp_path, jobs('  - {id: "cafe\u0301", prompt: x}\n')).specs
    assert spec.entry_id == "caf\u00e9"


def test_numeric_ids_are_text(tmp_path: Path) -> None:
    """`id: 7` is "7"; `id: 007` stays "007" (leading zeros are text)."""
    specs = load(tmp_path, jobs("  - {id: 7, prompt: x}\n  - {id: 007, prompt: y}\n")).specs
    assert [s.entry_id for s in specs] == ["7", "007"]


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    """Two entries with one id: both lines, and a hint."""
    error = one_problem(tmp_path, jobs("  - {id: a, prompt: x}\n  - {id: a, prompt: y}\n"))
    assert (error.line, error.job) == (5, "a")
    assert "lines 4 and 5" in error.reason


def test_identical_prompts_without_ids_collide(tmp_path: Path) -> None:
    """Same prompt, no ids: same derived id, reported (use takes for repeats)."""
    error = one_problem(tmp_path, jobs("  - prompt: x\n  - prompt: x\n"))
    assert "takes" in error.reason


# -- local files ----------------------------------------------------------------------------


def test_local_files_become_content_hashes(tmp_path: Path) -> None:
    """start_image: a path next to the manifest -> asset:sha256:<hex>, files[hex] = abs path."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(PNG.read_bytes())
    body = "  - {id: a, prompt: x, start_image: img/a.png}\n"
    body += "  - {id: b, prompt: y, start_image: ./img/../img/a.png}\n"
    first, second = load(tmp_path, jobs(body)).specs
    digest = hashlib.sha256(PNG.read_bytes()).hexdigest()
    assert first.request["start_image"] == f"asset:sha256:{digest}"
    assert first.files == second.files == {digest: str(tmp_path / "img" / "a.png")}


def test_remote_and_data_urls_are_left_alone(tmp_path: Path) -> None:
    """http(s) and data: URLs are sent as written."""
    body = "  - {id: a, prompt: x, start_image: 'https://example.com/a.png'}\n"
    body += "  - {id: b, prompt: x, start_image: 'data:image/png;base64,AAAA'}\n"
    specs = load(tmp_path, jobs(body)).specs
    assert [s.request["start_image"] for s in specs] == [
        "https://example.com/a.png",
        "data:image/png;base64,AAAA",
    ]
    assert all(s.files == {} for s in specs)


def test_nested_media_references_are_found(tmp_path: Path) -> None:
    """reference_images items and video_reference.url are local files too."""
    (tmp_path / "a.png").write_bytes(b"png")
    (tmp_path / "v.mp4").write_bytes(b"mp4")
    body = (
        "  - {id: r, model: google/veo-3.1, prompt: x, reference_images: [a.png, 'https://e.com/b.png']}\n"
        "  - {id: o, model: kling/kling-o1, prompt: x, video_reference: {url: v.mp4, tag: ref}}\n"
    )
    body += "  - id: w\n    model: runway/aleph\n    prompt: x\n    init_video: v.mp4\n"
    body += "    references: [{type: image, uri: a.png}]\n"
    veo, kling, aleph = load(tmp_path, jobs(body, "batch: b\nprices: {runway/aleph: 1}\n")).specs
    assert veo.request["reference_images"][0].startswith("asset:sha256:")
    assert veo.request["reference_images"][1] == "https://e.com/b.png"
    assert (
        kling.request["video_reference"]["url"]
        == "asset:sha256:" + hashlib.sha256(b"mp4").hexdigest()
    )
    assert kling.price_micro == 881_914  # the video-reference row: 481 CU
    assert aleph.request["references"][0]["uri"] == veo.request["reference_images"][0]
    assert len(aleph.files) == 2


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing.png", "cannot be read"),
        ("notes.txt", "extensions"),
        ("folder.png", "not a regular file"),
        ("huge.mp4", "75 MB"),
    ],
)
def test_bad_local_files_name_file_line_job_and_field(
    tmp_path: Path, name: str, reason: str
) -> None:
    """Missing, wrong extension, not a file, over 75 MB: each is an error on the field's line."""
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "folder.png").mkdir()
    with open(tmp_path / "huge.mp4", "wb") as handle:
        handle.truncate(75_000_001)  # sparse: costs no disk
    entry = "  - id: a\n    prompt: x\n    model: google/veo-3.1\n"
    text = jobs(entry + f"    reference_images:\n      - {name}\n")
    error = one_problem(tmp_path, text)
    assert (error.line, error.job, error.field) == (7, "a", "reference_images[0]")
    assert reason in error.reason


def test_each_distinct_file_is_hashed_once(tmp_path: Path) -> None:
    """The hasher remembers a file: a later change to it is not read again in one load."""
    image = tmp_path / "a.png"
    image.write_bytes(b"one")
    hasher = FileHasher(str(tmp_path))
    first = hasher.digest("a.png")
    image.write_bytes(b"two")
    assert hasher.digest("./a.png") == first


# -- output paths -------------------------------------------------------------------------


def test_output_templates_render_every_placeholder(tmp_path: Path) -> None:
    """{batch} {id} {base_id} {take} {index} {model} and request params (slugged)."""
    head = (
        "batch: b\noutput: '{batch}/{model}/{aspect_ratio}/{base_id}-{take}-{index}-{duration}'\n"
    )
    head += "defaults: {model: kling/kling-2.5, aspect_ratio: '16:9'}\n"
    specs = load(tmp_path, jobs("  - {id: a, prompt: x, takes: 2}\n", head)).specs
    assert [s.output_path for s in specs] == [
        "b/kling_kling-2.5/16x9/a-1-1-5.mp4", "b/kling_kling-2.5/16x9/a-2-2-5.mp4",
    ]  # fmt: skip


def test_a_job_output_overrides_the_template(tmp_path: Path) -> None:
    """Per-job output; .mp4 is appended when missing."""
    (spec,) = load(tmp_path, jobs("  - {id: a, prompt: x, output: 'special/{id}'}\n")).specs
    assert spec.output_path == "special/a.mp4"


def test_unknown_placeholders_are_named_once(tmp_path: Path) -> None:
    """{nope} is an error at the template's line, reported once for all jobs."""
    body = "  - {id: a, prompt: x}\n  - {id: b, prompt: y}\n"
    error = one_problem(tmp_path, "output: '{batch}/{nope}'\n" + jobs(body))
    assert (error.line, error.field) == (1, "output")
    assert "{nope}" in error.reason


@pytest.mark.parametrize(
    "template",
    [
        "/abs/{id}",
        "../{id}",
        "a/../{id}",
        "a//{id}",
        "a\\\\{id}",
        "CON/{id}",
        "a/aux.txt/{id}",
        "a./{id}",
        "c:/{id}",
        "x" * 241,
    ],
)
def test_unsafe_output_paths_are_refused(tmp_path: Path, template: str) -> None:
    """Absolute, .., empty segments, backslashes, device names, trailing dots, colons, length."""
    error = one_problem(tmp_path, f'output: "{template}"\n' + jobs("  - {id: a, prompt: x}\n"))
    assert error.field == "output"


def test_paths_equal_after_casefold_collide(tmp_path: Path) -> None:
    """Eagle and eagle would overwrite each other on macOS/Windows: both lines are named."""
    error = one_problem(tmp_path, jobs("  - {id: Eagle, prompt: x}\n  - {id: eagle, prompt: y}\n"))
    assert (error.line, error.job) == (5, "eagle")
    assert "'Eagle' (line 4)" in error.reason


def test_paths_equal_after_nfc_collide(tmp_path: Path) -> None:
    """An NFD and an NFC spelling of one name are one path."""
    body = '  - {id: a, prompt: x, output: "caf\u00e9"}\n'
    body += '  - {id: b, prompt: y, output: "cafe\u0301"}\n'
    assert "also the path of job 'a'" in one_problem(tmp_path, jobs(body)).reason


HOSTILE = st.sampled_from(
    ["../", "..", "/", "\x00", "..\\", "\\", "CON", "con.txt", "NUL", "LPT1", ".", " ", "a", "é",
     "e\u0301", "\u202e", "\n", ":", "~", "$HOME", "{id}", "{batch}", "{model}", "{{", "}}"]
)  # fmt: skip
PIECES = st.lists(HOSTILE, max_size=8).map("".join)
#: names that often pass the id/batch rules, with device names and NFC/NFD pairs in them
ASCII_NAMES = ["a", "B", "CON", "nul", "Lpt1", "-", "_", ".", "1"]
BATCHISH = st.lists(st.sampled_from(ASCII_NAMES), min_size=1, max_size=4).map("".join)
NAMEISH = st.lists(st.sampled_from([*ASCII_NAMES, "é", "e\u0301"]), min_size=1, max_size=4).map(
    "".join
)
TEMPLATEISH = st.lists(
    st.sampled_from(["{batch}", "{id}", "{model}", "/", "..", ".", "CON", "a", "é", "e\u0301"]),
    min_size=1,
    max_size=6,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(template=PIECES, value=PIECES)
def test_every_accepted_path_stays_inside_the_output_dir(
    tmp_path_factory: pytest.TempPathFactory, template: str, value: str
) -> None:
    """Hostile templates and values: any path check_path accepts resolves inside out/."""
    out = tmp_path_factory.getbasetemp() / "out"
    try:
        path = check_path(render(template, {"id": value, "batch": value, "model": value}))
    except ValueError:
        return
    assert (out / path).resolve().is_relative_to(out.resolve())
    assert path.endswith(".mp4")


def _quoted(text: str) -> str:
    """A YAML double-quoted string (JSON's escapes are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batch=BATCHISH,
    ids=st.lists(NAMEISH, min_size=1, max_size=3),
    template=st.one_of(TEMPLATEISH, PIECES),
)
def test_hostile_manifests_only_produce_safe_paths(
    tmp_path: Path, batch: str, ids: list[str], template: str
) -> None:
    """Whole manifests with hostile batch/ids/templates: accepted paths stay inside out/."""
    body = "".join(f"  - {{id: {_quoted(i)}, prompt: p{n}}}\n" for n, i in enumerate(ids))
    head = f"batch: {_quoted(batch)}\noutput: {_quoted(template)}\n"
    path = write(tmp_path, jobs(body, head + "defaults: {model: kling/kling-2.5}\n"))
    try:
        manifest = load_manifest(path)
    except (ManifestError, ManifestErrors):
        return
    out = tmp_path / "out"
    for spec in manifest.specs:
        assert (out / spec.output_path).resolve().is_relative_to(out.resolve())


# -- prices -------------------------------------------------------------------------------


def test_unpriceable_jobs_are_errors_naming_the_parameters(tmp_path: Path) -> None:
    """Veo 3 at 4 s has no row: an error at the entry's line, never a zero price."""
    error = one_problem(
        tmp_path, jobs("  - {id: v, model: google/veo-3, prompt: x, duration: 4}\n")
    )
    assert (error.line, error.job) == (4, "v")
    assert "duration=4" in error.reason
    assert "prices:" in error.reason


def test_overrides_price_what_the_table_cannot(tmp_path: Path) -> None:
    """A per_second override prices Veo 3 at 4 s; a flat one prices Aleph."""
    head = "batch: b\nprices:\n  google/veo-3: {per_second: 0.12}\n  video/runway/aleph: 0.5\n"
    body = "  - {id: v, model: google/veo-3, prompt: x, duration: 4}\n"
    body += "  - {id: a, model: runway/aleph, prompt: x, init_video: 'https://e.com/v.mp4'}\n"
    manifest = load(tmp_path, jobs(body, head))
    assert [s.price_micro for s in manifest.specs] == [480_000, 500_000]
    assert set(manifest.prices.by_model) == {"google/veo-3", "runway/aleph"}


# -- the example and scale ----------------------------------------------------------------


def test_the_example_manifest_loads_cleanly_and_is_cheap() -> None:
    """jobs.yaml.example: every feature, at most 16 jobs, a few dollars, a local start image."""
    manifest = load_manifest(ROOT / "jobs.yaml.example")
    assert 1 <= len(manifest.specs) <= 16
    assert sum(s.price_micro for s in manifest.specs) <= 5_000_000
    assert manifest.budget_micro is not None
    assert manifest.limits.max_in_flight is not None
    assert manifest.prices.by_model
    assert any(s.files for s in manifest.specs)
    assert any("_t2" in s.entry_id for s in manifest.specs)
    assert any(s.model != manifest.specs[0].model for s in manifest.specs)
    assert any(s.inputs for s in manifest.specs)  # the demo's two-step chain


def test_the_storyboard_example_chains_every_shot_to_its_frame() -> None:
    """storyboard.yaml.example: 3 frame takes -> 3 shots with matching ids; a 2-input shot."""
    specs = {s.entry_id: s for s in load_manifest(ROOT / "storyboard.yaml.example").specs}
    for take in (1, 2, 3):
        assert specs[f"keeper-shot_t{take}"].inputs == (specs[f"keeper-frame_t{take}"].key,)
    assert specs["sea-shot"].inputs == (specs["sea-frame"].key, specs["keeper-frame_t1"].key)


def test_a_hundred_thousand_jobs_load(tmp_path: Path) -> None:
    """100,000 jobs differing only in prompt load and validate (timed in the report, not here)."""
    lines = ["batch: big", "defaults: {model: kling/kling-2.5, duration: 5}", "jobs:"]
    lines += [
        f"  - {{id: j{i}, prompt: an eagle number {i} over the mountains}}" for i in range(100_000)
    ]
    path = write(tmp_path, "\n".join(lines) + "\n")
    started = time.perf_counter()
    manifest = load_manifest(path)
    elapsed = time.perf_counter() - started
    assert len(manifest.specs) == 100_000
    assert manifest.specs[-1].seq == 99_999
    print(f"100,000 jobs loaded in {elapsed:.2f} s")
