"""prices: every pricing rule, checked against Krea's own compute-unit tables."""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from orchestrator.errors import PriceUnknown
from orchestrator.money.prices import (
    Override,
    PriceOverrides,
    micro_from_usd,
    parse_override,
    price_micro,
    seconds_for,
    tables,
    usd,
)
from orchestrator.spec import USD_PER_CU, load_spec

ROOT = Path(__file__).resolve().parents[2]


def cu(units: str) -> int:
    """Micro-USD of a CU figure, the way Krea's USD prices are derived (half up)."""
    exact = Decimal(units) * Decimal(USD_PER_CU) * 1_000_000
    return int(exact.quantize(Decimal(1), rounding="ROUND_HALF_UP"))


def price(model: str, **request: Any) -> int:
    return price_micro(model, {"prompt": "p", **request})


def test_per_duration_kling_2_5_five_and_ten_seconds() -> None:
    """Kling 2.5: 5 s = 200 CU = 366,700 µ$; 10 s = 401 CU; no duration = the 5 s default."""
    assert price("kling/kling-2.5", duration=5) == 366_700
    assert price("kling/kling-2.5", duration=10) == cu("401") == 735_234
    assert price("kling/kling-2.5") == 366_700
    assert price("kling/kling-2.5", duration=5.0) == 366_700


@pytest.mark.parametrize(
    ("model", "request_", "units"),
    [
        ("xai/grok-video", {"duration": 1, "resolution": "480p"}, "28.6"),
        ("xai/grok-video", {"duration": 7, "resolution": "720p"}, "281"),
        ("xai/grok-video", {"duration": 15, "resolution": "720p"}, "601"),
        ("kling/kling-3.0", {"duration": 3}, "289"),
        ("kling/kling-3.0", {"duration": 10, "mode": "pro", "generate_audio": True}, "1924"),
        ("kling/kling-3.0", {"duration": 15, "mode": "4k"}, "3608"),
    ],
)
def test_per_second_tables_price_each_whole_second(
    model: str, request_: dict[str, Any], units: str
) -> None:
    """Grok Imagine and Kling 3.0 list one row per second; each second has its own price."""
    assert price(model, **request_) == cu(units)


def test_per_second_tables_are_linear_in_seconds() -> None:
    """Grok 480p costs ~28.6 CU per second across 1-15 s (Krea rounds to 3 significant figures)."""
    prices = [price("xai/grok-video", duration=s, resolution="480p") for s in range(1, 16)]
    for seconds, micro in enumerate(prices, start=1):
        assert abs(micro - seconds * cu("28.6")) <= 0.01 * micro


def test_fractional_seconds_on_a_per_second_table_are_unpriced() -> None:
    """7.5 s has no row: the estimate refuses rather than guessing."""
    with pytest.raises(PriceUnknown, match=r"duration=7\.5"):
        price("kling/kling-3.0", duration=7.5)


def test_per_mode_kling_1_std_versus_pro() -> None:
    """Kling 1.0: std 5 s = 60.1 CU, pro 5 s = 210 CU; mode defaults to std."""
    assert price("kling/kling-1", mode="std") == cu("60.1") == 110_193
    assert price("kling/kling-1", mode="pro") == cu("210")
    assert price("kling/kling-1") == cu("60.1")
    assert price("kling/kling-1", mode="pro", duration=10) == cu("421")


def test_per_resolution_wan_2_5() -> None:
    """Wan 2.5: 480p 5 s = 143 CU, 720p = 286, 1080p (the default) = 430."""
    assert price("alibaba/wan-2.5", resolution="480p") == cu("143")
    assert price("alibaba/wan-2.5", resolution="720p") == cu("286")
    assert price("alibaba/wan-2.5") == cu("430")
    assert price("alibaba/wan-2.5", resolution="1080p", duration=10) == cu("859")


def test_audio_veo_3_1_fast_4k_with_audio_8_seconds() -> None:
    """Veo 3.1 Fast 4K + audio 8 s = 1375 CU ($2.52); defaults are 720p, no audio, 8 s."""
    request = {"resolution": "4K", "generate_audio": True, "duration": 8}
    assert price("google/veo-3.1-fast", **request) == cu("1375") == 2_521_063
    assert price("google/veo-3.1-fast") == cu("367")
    assert price("google/veo-3.1-fast", generate_audio=True) == cu("458")


def test_video_reference_kling_o1() -> None:
    """Kling o1 costs more when a video_reference is present: 5 s 481 CU against 321."""
    reference = {"url": "https://example.com/v.mp4", "tag": "ref"}
    assert price("kling/kling-o1", video_reference=reference) == cu("481")
    assert price("kling/kling-o1") == cu("321")
    assert price("kling/kling-o1", video_reference=None) == cu("321")


def test_lora_ltx() -> None:
    """LTX 2.3: has_lora (default false) picks the LoRA rows: 5 s 116 CU against 103."""
    assert price("lightricks/ltx-video-2.3-22b", has_lora=True) == cu("116")
    assert price("lightricks/ltx-video-2.3-22b") == cu("103")
    assert price("lightricks/ltx-video-2.3-22b", has_lora=False, duration=20) == cu("408")


def test_fixed_length_models() -> None:
    """Wan 2.1 is one fixed price ('~270' = 270 CU); Hailuo and Kling 2 have one 5 s row."""
    assert price("alibaba/wan-2.1", width=1280, height=720) == cu("270") == 495_045
    assert price("minimax/hailuo") == cu("246")
    assert price("kling/kling-2", mode="pro") == cu("802")
    assert seconds_for("alibaba/wan-2.1", {}) is None
    assert seconds_for("minimax/hailuo", {}) == 5.0


@pytest.mark.parametrize(
    ("model", "request_", "mentions"),
    [
        ("runway/aleph", {"init_video": "https://example.com/v.mp4"}, "no price table"),
        ("google/veo-3", {"duration": 4}, "duration=4"),
        ("google/veo-3-fast", {"duration": 4, "generate_audio": True}, "generate_audio=true"),
        ("bytedance/seedance-1.0-pro", {"duration": 7}, "duration=7"),
    ],
)
def test_unpriceable_requests_raise_price_unknown(
    model: str, request_: dict[str, Any], mentions: str
) -> None:
    """No row and no override: PriceUnknown names the model and the parameters, never 0."""
    with pytest.raises(PriceUnknown) as caught:
        price(model, **request_)
    assert caught.value.model == model
    assert mentions in caught.value.detail


def test_spec_quirks_are_copied_not_fixed() -> None:
    """Kling 2.1 keeps its unreachable std rows; Hailuo 02 512p 6 s stays 57.3 CU."""
    assert price("kling/kling-2.1", mode="std") == cu("143")
    assert price("minimax/hailuo-02", resolution="512p", duration=6) == cu("57.3")
    assert price("minimax/hailuo-02", resolution="512p", duration=10) == cu("85.9")
    assert price("minimax/hailuo-2.3", resolution="1080p", duration=10) == cu("281")


def test_flat_override_prices_what_the_table_cannot() -> None:
    """`runway/aleph: 0.5` prices any Aleph job at 500,000 µ$."""
    overrides = PriceOverrides({"runway/aleph": parse_override(0.5)})
    assert price_micro("runway/aleph", {"prompt": "p"}, overrides) == 500_000


def test_per_second_override_multiplies_the_duration() -> None:
    """`google/veo-3: {per_second: 0.12}` prices a 4 s Veo 3 job at $0.48."""
    overrides = PriceOverrides({"google/veo-3": parse_override({"per_second": 0.12})})
    assert price_micro("google/veo-3", {"prompt": "p", "duration": 4}, overrides) == 480_000


def test_per_second_override_needs_a_duration() -> None:
    """Aleph has no duration, so only a flat override can price it."""
    overrides = PriceOverrides({"runway/aleph": Override(per_second_usd=Decimal("0.1"))})
    with pytest.raises(PriceUnknown, match="per_second"):
        price_micro("runway/aleph", {"prompt": "p"}, overrides)


def test_an_override_replaces_a_published_price() -> None:
    """Users can override any price: the manifest's figure wins over the spec's table."""
    overrides = PriceOverrides({"kling/kling-2.5": parse_override(9)})
    assert price_micro("kling/kling-2.5", {"prompt": "p"}, overrides) == 9_000_000
    assert price_micro("kling/kling-2.6", {"prompt": "p"}, overrides) == 366_700


@pytest.mark.parametrize("value", [-1, "0.5", True, None, float("nan"), {"per_sec": 1}, [1]])
def test_bad_override_values_are_refused(value: Any) -> None:
    """An override is a number >= 0 or {per_second: number >= 0}."""
    with pytest.raises(ValueError, match="must be"):
        parse_override(value)


def test_usd_amounts_round_half_up_to_micro_dollars() -> None:
    """Money is integer micro-USD; Decimal does the conversion."""
    assert micro_from_usd(0.0000005) == 1
    assert micro_from_usd(0.1) == 100_000
    assert micro_from_usd(5) == 5_000_000
    assert usd(366_700) == 0.3667


def test_seconds_for_uses_the_request_or_the_schema_default() -> None:
    """Seconds for cost per second: the duration asked for, else the schema's default."""
    assert seconds_for("kling/kling-2.5", {"duration": 10}) == 10.0
    assert seconds_for("kling/kling-2.5", {}) == 5.0
    assert seconds_for("google/veo-3", {}) == 8.0
    assert seconds_for("runway/aleph", {}) is None


def test_every_endpoint_is_in_the_table() -> None:
    """prices.json covers the spec's 31 video and 22 image endpoints; Aleph and SeedEdit have
    no rows."""
    kinds = [endpoint.kind for endpoint in load_spec().endpoints.values()]
    assert (kinds.count("video"), kinds.count("image")) == (31, 22)
    assert set(tables().models) == set(load_spec().endpoints)
    assert not tables().models["runway/aleph"].rows
    assert not tables().models["image/bytedance/seededit"].rows


def _build_prices_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_prices", ROOT / "scripts/build_prices.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prices_json_is_up_to_date_with_the_spec(tmp_path: Path) -> None:
    """Rebuilding from the packaged spec gives the committed prices.json, byte for byte."""
    out = tmp_path / "prices.json"
    assert _build_prices_script().main(["--out", str(out)]) == 0
    committed = ROOT / "orchestrator/data/prices.json"
    assert out.read_bytes() == committed.read_bytes(), "run `make prices` and commit the result"
    assert tables().spec_sha256 == load_spec().sha256


def test_build_prices_reads_another_spec_file(tmp_path: Path) -> None:
    """--spec PATH builds from a given OpenAPI file (here the packaged one, copied)."""
    source = ROOT / "orchestrator/data/krea-openapi.json"
    copy = tmp_path / "spec.json"
    copy.write_bytes(source.read_bytes())
    out = tmp_path / "prices.json"
    assert _build_prices_script().main(["--spec", str(copy), "--out", str(out)]) == 0
    assert out.read_bytes() == (ROOT / "orchestrator/data/prices.json").read_bytes()


def test_image_tables_are_keyed_on_resolution() -> None:
    """Nano Banana Pro: 1K (the default) and 2K are 60.1 CU, 4K is 120 CU."""
    model = "image/google/nano-banana-pro"
    assert price(model) == price(model, resolution="1K") == price(model, resolution="2K")
    assert price(model) == cu("60.1")
    assert price(model, resolution="4K") == cu("120")
    assert seconds_for(model, {"prompt": "p"}) is None  # a still is no seconds of video


def test_uni_1_counts_its_reference_images_per_mode() -> None:
    """Luma Uni-1: a row per number of style images (0-9) in each mode."""
    model, image = "image/luma/uni-1", {"strength": 1, "url": "https://x/a.png"}
    assert price(model) == cu("23.1")
    assert price(model, style_images=[image] * 2) == cu("26.6")
    assert price(model, mode="max", style_images=[image] * 9) == cu("72.7")


def test_ideogram_3_prices_a_character_reference_by_its_presence() -> None:
    """Ideogram 3: 85.9 CU with character reference images, 34.4 CU without (an empty list
    is none)."""
    model = "image/ideogram/ideogram-3"
    assert price(model, character_reference_images=["https://x/a.png"]) == cu("85.9")
    assert price(model) == price(model, character_reference_images=[]) == cu("34.4")


def test_approximate_and_constant_cells_price_as_written() -> None:
    """``~3`` is 3 CU (Krea's "about"); Imagen 3's one "Model: Standard" row prices every
    request; SeedEdit has no table, so it needs a manifest price."""
    assert price("image/bfl/flux-1-dev") == cu("3")
    assert price("image/google/imagen-3") == cu("22.9")
    with pytest.raises(PriceUnknown, match="no price table"):
        price("image/bytedance/seededit", image_url="https://x/a.png")
