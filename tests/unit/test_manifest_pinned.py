"""Loading stays what it was: keys, prices, paths and messages pinned, and the inline YAML path.

The expected digests and messages were computed by the code as it was before loading was made
fast (issue 14): job keys identify jobs in existing ledgers, so none may change, nor any price,
output path or message. ``plan_digest`` covers every field of every JobSpec a run stores.
The YAML reader's inline event loop must give what the general one gives: the same values,
lines and errors, with either parser, on hostile and generated documents alike.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.errors import ManifestError, ManifestErrors
from orchestrator.manifest.manifest import load_manifest
from orchestrator.manifest.yaml_safe import YamlList, YamlMap, parse_yaml
from tests.samples import LOL_BOMB, MINIMAL

ROOT = Path(__file__).resolve().parents[2]

REPRESENTATIVE = """\
batch: pinned-1
output: "{batch}/{model}/{id}_{aspect_ratio}.mp4"
budget_usd: 50
priority: 3
limits: {max_in_flight: 4, requests_per_second: 2}
prices:
  runway/aleph: 0.50
  google/veo-3: {per_second: 0.12}
defaults:
  model: kling/kling-2.5
  duration: 5
  aspect_ratio: "16:9"
defaults_by_model:
  minimax/hailuo-02: {aspect_ratio: null, duration: 6, resolution: 768p}
  runway/aleph: {duration: null, aspect_ratio: null}
jobs:
  - id: eagle
    prompt: a majestic eagle soaring over snow-capped mountains at sunrise
  - id: harbour
    prompt: "a foggy harbour at dawn: slow dolly shot, cinematic"
    duration: 10
    output: "{batch}/{base_id}/{index}-{take}"
  - model: google/veo-3.1-lite
    prompt: a paper lantern drifting up into a starry night sky
    duration: 4
    resolution: 720p
  - id: city
    model: kling/kling-1
    mode: std
    prompt: a city at night, neon reflections on wet streets
    expand: {aspect_ratio: ["16:9", "9:16"], duration: [5, 10]}
    takes: 3
  - id: hailuo
    model: minimax/hailuo-02
    prompt: a red kite over a green hill
    params: {model: MiniMax-Hailuo-02}
    output: "{batch}/{model}/{id}-{duration}-{resolution}"
  - id: multi
    prompt: one prompt, many models
    expand: {model: [kling/kling-2.5, kling/kling-1], duration: [5, 10]}
    aspect_ratio: null
    output: "{batch}/{id}/{model}-{duration}.mp4"
  - id: aleph
    model: runway/aleph
    prompt: a car in the rain
    init_video: https://example.com/a.mp4
    output: "{batch}/aleph/{id}"
  - id: "Été-ünïcode"
    prompt: "Café — crème brûlée, 東京 at night"
    start_image: start-frame.png
    takes: 2
  - id: 7
    prompt: numeric id
    takes: 2
  - prompt: "   spaced    out: prompt / with slashes   "
    output: "{batch}/Ünï/{id}"
  - id: veo
    model: google/veo-3
    prompt: veo three
    duration: 4
    generate_audio: true
    expand: {resolution: ["720p", "1080p"]}
  - id: long-expand
    model: kling/kling-1
    prompt: expanding a long text value
    expand: {mode: [std, pro]}
    output: "{batch}/{mode}/{id}"
  - id: wan
    model: alibaba/wan-2.5
    prompt: wan with a seed
    seed: 12345
    duration: 5.0
    resolution: 720p
    aspect_ratio: null
"""

#: Problems of every kind, several in entries with takes (each take reports its own).
BROKEN = """\
batch: pinned-2
output: "{batch}/{model}/{id}_{aspect_ratio}.mp4"
defaults:
  model: kling/kling-2.5
  duration: 5
  aspect_ratio: "16:9"
defaults_by_model:
  minimax/hailuo-02: {aspect_ratio: null, duration: 6}
jobs:
  - id: hailuo
    model: minimax/hailuo-02
    prompt: a red kite
    params: {model: standard}
  - id: multi
    prompt: one prompt, many models
    expand: {model: [kling/kling-2.5, google/veo-3, minimax/hailuo-02], duration: [6, 8]}
  - id: aleph
    model: runway/aleph
    prompt: no price for this one
    takes: 2
    output: "{batch}/{id}"
  - id: missing
    prompt: a file that is not there
    start_image: nowhere.png
    takes: 2
  - id: same
    prompt: two takes, one path
    takes: 2
    output: "{batch}/same"
  - id: long
    prompt: "{long}"
  - id: mode
    model: kling/kling-2.5
    prompt: an enum it lacks
    expand: {mode: [std, pro]}
    takes: 2
  - id: veo
    model: google/veo-3
    prompt: its table has no row for four seconds
    duration: 4
    takes: 2
    output: "{batch}/{id}"
  - id: same
    prompt: a duplicate id
  - promt: a typo
""".replace("{long}", "x" * 2600)


def interactive_shape(jobs: int) -> str:
    """bench/interactive.py's manifest: one entry per 8 jobs, two models."""
    models = (("kling/kling-2.5", "aspect_ratio: '16:9'"), ("kling/kling-1", "mode: std"))
    text = "batch: inter\ndefaults:\n  model: kling/kling-2.5\njobs:\n"
    for index in range(jobs // 8):
        model, extra = models[index % 2]
        text += (
            f"  - id: shot{index:05d}\n    model: {model}\n    {extra}\n"
            f"    prompt: scene {index}, a slow pan across the harbour at dusk\n"
            "    expand: {duration: [5, 10]}\n    takes: 4\n"
        )
    return text


def listed_shape(jobs: int) -> str:
    """bench/workload.py's manifest: one entry per job."""
    text = "batch: listed\ndefaults:\n  model: kling/kling-2.5\n  duration: 5\njobs:\n"
    for index in range(jobs):
        text += f"  - id: clip{index:06d}\n    prompt: scene {index}, slow pan at dusk\n"
    return text


def plan_digest(path: Path) -> tuple[str, int, list[str]]:
    """(sha256 over every JobSpec's stored fields, job count, the first three keys)."""
    manifest = load_manifest(path)
    lines = []
    for s in manifest.specs:
        stored = [s.key, s.entry_id, s.model, s.request, s.price_micro, s.output_path, s.seq]
        stored += [s.line, sorted(s.files)]
        lines.append(json.dumps(stored, sort_keys=True, ensure_ascii=False))
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return digest, len(lines), [s.key for s in manifest.specs[:3]]


def problems(path: Path) -> list[tuple[int | None, str | None, str | None, str]]:
    """(line, job, field, message) of each problem loading ``path`` reports."""
    with pytest.raises(ManifestErrors) as caught:
        load_manifest(path)
    shown = str(path)
    found = caught.value.errors
    return [(e.line, e.job, e.field, e.message.replace(shown, "jobs.yaml")) for e in found]


def write(folder: Path, text: str) -> Path:
    path = folder / "jobs.yaml"
    path.write_text(text, encoding="utf-8")
    shutil.copy(ROOT / "data" / "start-frame.png", folder / "start-frame.png")
    return path


#: name -> (manifest, sha256 of its plan, job count, first keys), computed before the change.
PINNED_PLANS = {
    "representative": (
        REPRESENTATIVE,
        "b2c351d956c39f9e71a6d194327dd0b236926c529e1546e8a99ba43b1068f710",
        31,
        [
            "ab781ef0b4f32530d553b9ee4e2558d4",
            "e345aa729a1d2d9f2174fdc1a7b59b94",
            "1ce0dcaec4d655f59ab27cc39344cbb4",
        ],
    ),
    "interactive": (
        interactive_shape(800),
        "f39d1ccd47723ec7fc868ec1472292282a40121e1cd7236bb0662ac6de2feb47",
        800,
        [
            "23c4b44c1fa042484fab98d588f5e11c",
            "f417b9208188302e94ad674b994ca94d",
            "4d3f7215b0df9040a74a97ff5a49d18a",
        ],
    ),
    "listed": (
        listed_shape(300),
        "6f6e7a787b9a8f9d37b8df49514aa3d904fab5b92abd30775f256897bb405cf4",
        300,
        [
            "117893e8fc3cdd8d6ccbd5119f9d5f02",
            "37775392b0b38ff331c11410d66ecb92",
            "684a1927ab7eb2d15aa483884b096af8",
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(PINNED_PLANS))
def test_keys_prices_and_paths_are_those_of_before(tmp_path: Path, name: str) -> None:
    """Every JobSpec field (key, request, price, path, seq, line, files) is as it was."""
    text, digest, count, first_keys = PINNED_PLANS[name]
    assert plan_digest(write(tmp_path, text)) == (digest, count, first_keys)


#: sha256 of the JSON list of BROKEN's problems, [line, job, field, message] each (updated
#: once, when `{ext}` joined the placeholders the unknown-placeholder message lists).
PROBLEMS_SHA256 = "95c22205572cb6ec98d78306d41eb4085d4c2bda0ff8a5b9f43921657f66282e"


def test_the_problems_are_those_of_before(tmp_path: Path) -> None:
    """Each problem keeps its line, job, field and words, takes included, in the same order."""
    found = [list(p) for p in problems(write(tmp_path, BROKEN))]
    assert len(found) == 18
    assert found[-3][1:3] == ["veo_t1", None]  # a price it cannot find, per take
    assert found[-3][3].startswith("jobs.yaml:37: job 'veo_t1': cannot price this job: no row")
    assert hashlib.sha256(json.dumps(found, ensure_ascii=False).encode()).hexdigest() == (
        PROBLEMS_SHA256
    )


# -- the YAML reader's inline event loop ----------------------------------------------------


def tree(value: Any) -> Any:
    """A parsed value with its types and every line, comparable with ``==``."""
    if isinstance(value, YamlMap):
        items = [[repr(k), value.key_lines[k], tree(x)] for k, x in value.items()]
        return ["map", value.line, items]
    if isinstance(value, YamlList):
        return ["list", value.line, value.item_lines, [tree(x) for x in value]]
    return [type(value).__name__, repr(value)]


def outcome(data: str | bytes, pure: bool, inline: bool) -> Any:
    """The tree, or the error's text and line."""
    try:
        return tree(parse_yaml(data, path="x.yaml", pure_python=pure, inline=inline))
    except ManifestError as error:
        return ["error", str(error), error.line]


HOSTILE = [
    LOL_BOMB,
    MINIMAL,
    REPRESENTATIVE,
    BROKEN,
    "[" * 5000,
    "a:\n" + "  " * 150 + "b: 1\n",
    "!!python/object/apply:os.system ['true']\n",
    "a: !!python/object/apply:os.system ['true']\n",
    "batch: b\nbatch: c\njobs: []\n",
    "a: {b: 1, b: 2}\n",
    "? [a]\n: 1\n",
    "{[1]: 2}\n",
    "a: &x 1\nb: *x\n",
    "- &y [1]\n- *y\n",
    "a: !!map {b: 1}\nc: !custom 2\nd: !!seq [1]\ne: !!str 5\nf: !!int 0x1F\ng: !!float x\n",
    "a: 1\n---\nb: 2\n",
    "[~, null, '', true, TRUE, tRue, 05, 0x1F, 0o17, 1.10, .inf, -.Inf, .nan, 16:9, NO, +5, -0]\n",
    "a:\nb: \nc: ''\nd: \"\"\n- x\n",
    "- a\n- b: c\n  d: [e, {f: g}]\n-\n- - - deep\n",
    "'unterminated\n",
    b"batch: b\njobs:\n  - prompt: \xff\n",
    "\ufeffa: 1\n",
    "9" * 5000 + "\n",
]


@pytest.mark.parametrize("pure", [False, True], ids=["libyaml", "pure-python"])
@pytest.mark.parametrize("data", HOSTILE, ids=range(len(HOSTILE)))
def test_the_inline_loop_reads_hostile_documents_as_the_general_one(
    data: str | bytes, pure: bool
) -> None:
    """Same values, lines and errors from either loop, with either parser."""
    assert outcome(data, pure, inline=True) == outcome(data, pure, inline=False)


def test_both_parsers_read_the_representative_manifest_alike() -> None:
    """libyaml and PyYAML's own parser give the same tree, lines included."""
    assert outcome(REPRESENTATIVE, True, True) == outcome(REPRESENTATIVE, False, True)


@pytest.mark.parametrize(
    ("limit", "values", "data"),
    [
        ("MAX_VALUES", range(1, 12), "a: [1, {b: c}]\nd:\n  - e\n  - [f]\ng: h\n"),
        ("MAX_DEPTH", range(1, 6), "a:\n  b: [c, {d: [[e]]}]\n"),
    ],
)
def test_a_lowered_cap_is_reported_at_the_same_line_by_both_loops(
    limit: str, values: range, data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lower value cap or depth limit trips on a scalar, a collection or a key alike, at the
    same place, whichever loop reads."""
    from orchestrator.manifest import yaml_safe

    for value in values:
        monkeypatch.setattr(yaml_safe, limit, value)
        assert outcome(data, False, True) == outcome(data, False, False)


YAMLISH = st.lists(
    st.sampled_from(
        ["a", "b", ":", ": ", "- ", "\n", "  ", "{", "}", "[", "]", ",", "'", '"', "&x ", "*x",
         "!!str ", "!t ", "? ", "#", "|", ">", "~", "null", "true", "16:9", "05", "0x1F", ".5",
         "-.inf", "é", "---", "..."]
    ),
    max_size=40,
).map("".join)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=YAMLISH, pure=st.booleans())
def test_the_inline_loop_reads_any_token_soup_as_the_general_one(data: str, pure: bool) -> None:
    """Generated near-YAML: the same outcome from both loops, errors included."""
    assert outcome(data, pure, inline=True) == outcome(data, pure, inline=False)
