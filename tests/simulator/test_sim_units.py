"""Pure parts: the CLI's generated flags, pricing rules, byte ranges, timestamps, big files."""

from __future__ import annotations

import struct
from dataclasses import fields

import pytest
from click.testing import CliRunner

from orchestrator.cli.simulate import simulate
from orchestrator.simulator import SimulatorOptions, media_file
from orchestrator.simulator.billing import cell_number, price_micro, request_price_micro
from orchestrator.simulator.clock import VirtualClock, iso_ms, parse_iso_us
from orchestrator.simulator.media import Unsatisfiable, byte_range
from orchestrator.spec import load_spec


def test_every_option_is_a_cli_flag() -> None:
    """`orchestrator simulate --help` lists one flag per SimulatorOptions field."""
    result = CliRunner().invoke(simulate, ["--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for f in fields(SimulatorOptions):
        assert "--" + f.name.replace("_", "-") in result.output, f.name
    assert "8787" in result.output
    assert "KREA_SIM_PORT" in result.output


def test_cli_rejects_bad_values_before_serving() -> None:
    """An invalid option value is a usage error (exit 2), not a traceback."""
    result = CliRunner().invoke(simulate, ["--fault-5xx-rate", "2"])
    assert result.exit_code == 2
    assert "fault_5xx_rate" in result.output
    result = CliRunner().invoke(simulate, ["--validation-status", "418"])
    assert result.exit_code == 2
    for port in ("-1", "65536"):
        result = CliRunner().invoke(simulate, ["--port", port])
        assert result.exit_code == 2, result.output
        assert "port must be between 0 and 65535" in result.output


def test_price_rounding_half_up() -> None:
    """Micro-dollars are CU x 1833.5 rounded half up; '~' and units are ignored in cells."""
    assert price_micro("60.1") == 110_193  # 110193.35
    assert price_micro("1") == 1_834  # 1833.5 rounds up
    assert cell_number("~270") == 270
    assert cell_number("~97 seconds") == 97
    assert cell_number("-") is None


def test_defaults_fill_missing_fields() -> None:
    """A missing duration uses the schema default; a non-numeric one matches no row."""
    endpoint = load_spec().endpoints["kling/kling-2.5"]
    assert request_price_micro(endpoint, {"prompt": "x"}, 500) == price_micro("200")
    assert request_price_micro(endpoint, {"prompt": "x", "duration": 10.0}, 500) == price_micro(
        "401"
    )
    assert request_price_micro(endpoint, {"prompt": "x", "duration": "5"}, 500) == price_micro(
        "500"
    )


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", (0, 1)),
        ("bytes=10-", (10, 100)),
        ("bytes=-5", (95, 100)),
        ("bytes=90-500", (90, 100)),
        ("bytes=5-3", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=abc", None),
    ],
)
def test_byte_range(header: str | None, expected: tuple[int, int] | None) -> None:
    """Single ranges are honoured; invalid or multiple ones mean the whole file."""
    assert byte_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=-0", "bytes=200-300"])
def test_unsatisfiable_range(header: str) -> None:
    """Ranges that select nothing raise Unsatisfiable (416)."""
    with pytest.raises(Unsatisfiable):
        byte_range(header, 100)


def test_huge_media_uses_a_64_bit_box() -> None:
    """Past 4 GiB the appended free box switches to the 64-bit size form."""
    size = 5 * 2**30
    media = media_file("00000000-0000-4000-8000-000000000000", size)
    header = media.prefix[4972 : 4972 + 16]
    assert struct.unpack(">I4sQ", header) == (1, b"free", size - 4972)
    assert len(media.read(size - 10, size)) == 10


def test_timestamps() -> None:
    """Krea's format: UTC, milliseconds, Z; parsing accepts offsets."""
    assert iso_ms(1_770_949_258_265) == "2026-02-13T02:20:58.265Z"
    assert parse_iso_us("2026-02-13T02:20:58.265Z") == 1_770_949_258_265_000
    assert parse_iso_us("2026-02-13T03:20:58.265+01:00") == 1_770_949_258_265_000


def test_virtual_clock_scales_and_advances() -> None:
    """Simulated time = start + real elapsed x scale + advances; scale changes are continuous."""
    real = [100.0]
    clock = VirtualClock(1_000.0, 10.0, monotonic=lambda: real[0])
    real[0] = 101.0
    assert clock.now() == 1_010.0
    clock.set_scale(0.0)
    real[0] = 500.0
    clock.advance(5)
    assert clock.now() == 1_015.0
    assert clock.real_delay(2_000.0) is None
