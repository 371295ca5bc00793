"""The image walker accepts whole PNG, JPEG and WebP files and refuses any cut, error page or tail.

The valid files are built here byte by byte (and proved decodable by FFmpeg, through PyAV), so
each refusal below is of one defect in an otherwise real image.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from fractions import Fraction
from importlib import resources
from pathlib import Path

import av
import pytest
from av.video.codeccontext import VideoCodecContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator import image_file
from orchestrator.errors import DownloadError, NotImage
from orchestrator.image_file import (
    CONTENT_TYPES,
    EXTENSIONS,
    SNIFF_BYTES,
    check_handle,
    check_image,
    sniff,
)

# -- real files, built from their specifications -----------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """Length, type, data, and the CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png(width: int = 4, height: int = 3, idats: int = 2, private: bytes = b"") -> bytes:
    """An RGB PNG with its compressed rows split over ``idats`` IDAT chunks.

    ``private``, if any, is the data of a private ancillary chunk (which decoders skip).
    """
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 40 % 256, y * 60 % 256, 200)) for x in range(width))
        for y in range(height)
    )
    compressed = zlib.compress(rows)
    step = -(-len(compressed) // idats)
    data = [compressed[i : i + step] for i in range(0, len(compressed), step)]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"tEXt", b"Comment\x00made by a test")
        + (png_chunk(b"prVt", private) if private else b"")
        + b"".join(png_chunk(b"IDAT", part) for part in data)
        + png_chunk(b"IEND", b"")
    )


def segment(marker: int, body: bytes) -> bytes:
    """A JPEG marker segment: FF, the marker, a length that counts itself, the body."""
    return bytes((0xFF, marker)) + struct.pack(">H", 2 + len(body)) + body


#: Quantization table 0: every step 1.
DQT = segment(0xDB, b"\x00" + bytes([1] * 64))
#: DC table 0: "0" -> category 0, "10" -> category 8. AC table 0: "0" -> EOB.
DHT_DC = segment(0xC4, b"\x00" + bytes([1, 1] + [0] * 14) + bytes([0, 8]))
DHT_AC = segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + bytes([0]))
APP0 = segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
#: Four 8x8 blocks: DC diffs 0, 0, 0, +255, each with EOB. The bits 00 00 00 10 | 11111111 | 0
#: pad 1111111 make 02, FF (stuffed as FF00) and 7F.
FOUR_BLOCKS = b"\x02\xff\x00\x7f"


def sof(marker: int, width: int, height: int) -> bytes:
    """A one-component (grayscale) frame header, 8-bit, tables 0."""
    return segment(marker, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")


def sos(start: int, end: int) -> bytes:
    """A one-component scan header using DC and AC table 0."""
    return segment(0xDA, b"\x01\x01\x00" + bytes((start, end, 0)))


def make_jpeg() -> bytes:
    """A 64x8 grayscale baseline JPEG: FF00 stuffing in its scan, and a restart (RST0) in it."""
    dri = segment(0xDD, struct.pack(">H", 4))
    scan = FOUR_BLOCKS + b"\xff\xd0" + FOUR_BLOCKS
    return (
        b"\xff\xd8"
        + APP0
        + DQT
        + sof(0xC0, 64, 8)
        + DHT_DC
        + DHT_AC
        + dri
        + sos(0, 63)
        + scan
        + b"\xff\xd9"
    )


def make_progressive_jpeg() -> bytes:
    """An 8x8 progressive JPEG: a DC scan, a table, then an AC scan (one EOB run)."""
    return (
        b"\xff\xd8"
        + DQT
        + sof(0xC2, 8, 8)
        + DHT_DC
        + sos(0, 0)
        + b"\x7f"
        + DHT_AC
        + sos(1, 63)
        + b"\x7f"
        + b"\xff\xd9"
    )


def riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """``RIFF`` size ``WEBP`` and the chunks, each padded to an even length."""
    body = b"".join(
        fourcc + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) & 1)
        for fourcc, data in chunks
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


#: A 1x1 lossless bitstream: signature, 14-bit width-1 and height-1, no alpha, version 0; no
#: transform, no colour cache, no meta codes; five simple one-symbol prefix codes (zero bits
#: per pixel).
VP8L_1X1 = b"\x2f\x00\x00\x00\x00\x88\x88\x08"


def make_webp() -> bytes:
    """A 1x1 lossless (VP8L) WebP."""
    return riff([(b"VP8L", VP8L_1X1)])


def make_extended_webp() -> bytes:
    """A 1x1 extended (VP8X) WebP with an odd-sized unknown chunk, so a pad byte, after it."""
    vp8x = b"\x00\x00\x00\x00" + (0).to_bytes(3, "little") + (0).to_bytes(3, "little")
    return riff([(b"VP8X", vp8x), (b"VP8L", VP8L_1X1), (b"XTRA", b"odd")])


VALID = {
    "png": make_png(),
    "jpeg": make_jpeg(),
    "progressive": make_progressive_jpeg(),
    "webp": make_webp(),
    "webp-extended": make_extended_webp(),
}
FORMAT_OF = {"progressive": "jpeg", "webp-extended": "webp"}
MP4 = resources.files("orchestrator").joinpath("data/sample.mp4").read_bytes()


def write(tmp_path: Path, data: bytes, name: str = "still.img") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(tmp_path: Path, data: bytes, match: str) -> NotImage:
    """check_image refuses ``data`` with a message naming the file and matching ``match``."""
    with pytest.raises(NotImage, match=match) as caught:
        check_image(write(tmp_path, data))
    assert caught.value.message.startswith("still.img: ")
    return caught.value


# -- the fixtures are real images ---------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(VALID))
def test_the_built_files_are_images_ffmpeg_decodes(tmp_path: Path, key: str) -> None:
    """Every valid file here decodes to a frame, so the walker is tested on real images."""
    path = write(tmp_path, VALID[key], f"still{EXTENSIONS[FORMAT_OF.get(key, key)]}")
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == {
        "png": (4, 3),
        "jpeg": (64, 8),
        "progressive": (8, 8),
    }.get(key, (1, 1))


# -- accepted ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(VALID))
def test_a_whole_image_is_accepted_as_its_format(tmp_path: Path, key: str) -> None:
    """PNG, baseline and progressive JPEG, simple and extended WebP return their format."""
    assert check_image(write(tmp_path, VALID[key])) == FORMAT_OF.get(key, key)


@pytest.mark.parametrize(
    ("codec", "kind"), [("png", "png"), ("mjpeg", "jpeg"), ("libwebp", "webp")]
)
def test_what_an_encoder_writes_is_accepted(tmp_path: Path, codec: str, kind: str) -> None:
    """Stills encoded by FFmpeg (libpng-style zlib, libjpeg-style JPEG, libwebp) pass."""
    if codec not in av.codecs_available:  # the oldest PyAV pyproject allows has no libwebp
        pytest.skip(f"this PyAV's FFmpeg has no {codec} encoder")
    context = av.CodecContext.create(codec, "w")
    assert isinstance(context, VideoCodecContext)
    context.width, context.height, context.time_base = 96, 64, Fraction(1, 25)
    context.pix_fmt = {"png": "rgb24", "mjpeg": "yuvj420p", "libwebp": "yuv420p"}[codec]
    frame = av.VideoFrame(96, 64, "rgb24").reformat(format=context.pix_fmt)
    packets = [*context.encode(frame), *context.encode(None)]
    data = b"".join(bytes(packet) for packet in packets)
    assert check_image(write(tmp_path, data)) == kind


def test_a_large_file_is_read_in_bounded_blocks() -> None:
    """A PNG with an 8 MiB chunk and a JPEG with an 8 MiB scan never read more than a block."""

    class Recording(io.BytesIO):
        largest = 0

        def read(self, size: int | None = -1) -> bytes:
            assert size is not None, "an unbounded read"
            assert size >= 0, "an unbounded read"
            self.largest = max(self.largest, size)
            return super().read(size)

    noise = random.Random(7).randbytes(8 << 20)
    scan = noise.replace(b"\xff", b"\xff\x00")
    jpeg = b"\xff\xd8" + DQT + sof(0xC0, 64, 8) + DHT_DC + DHT_AC + sos(0, 63) + scan + b"\xff\xd9"
    for data, kind in ((make_png(private=noise), "png"), (jpeg, "jpeg")):
        handle = Recording(data)
        assert check_handle(handle, len(data), name="big") == kind
        assert handle.largest <= image_file.BLOCK_BYTES


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pieces=st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=9).map(lambda b: b.replace(b"\xff", b"\xff\x00")),
            st.integers(0xD0, 0xD7).map(lambda m: bytes((0xFF, m))),
            st.just(b"\xff\x00"),
        ),
        max_size=12,
    ),
    block=st.integers(min_value=2, max_value=9),
)
def test_scan_data_is_read_right_across_block_edges(
    monkeypatch: pytest.MonkeyPatch, pieces: list[bytes], block: int
) -> None:
    """Stuffing and RSTn split anywhere by a small block are passed over; the EOI is still found."""
    monkeypatch.setattr(image_file, "BLOCK_BYTES", block)
    head = b"\xff\xd8" + DQT + sof(0xC0, 64, 8) + DHT_DC + DHT_AC + sos(0, 63)
    data = head + b"".join(pieces) + b"\xff\xff\xd9"  # a fill byte before EOI too
    assert check_handle(io.BytesIO(data), len(data)) == "jpeg"
    with pytest.raises(NotImage, match="no EOI"):
        check_handle(io.BytesIO(data[:-2]), len(data) - 2)


# -- refused: cut short --------------------------------------------------------------------------


def _cuts() -> list[tuple[str, int, str]]:
    png, jpeg, webp = VALID["png"], VALID["jpeg"], VALID["webp-extended"]
    between_scans = VALID["progressive"].index(DHT_AC)
    idat = png.index(b"IDAT") - 4
    return [
        ("png", 20, "chunk 'IHDR' at byte 8 .* runs past the end"),  # inside IHDR
        ("png", idat + 10, "chunk 'IDAT' .* runs past the end .*truncated"),  # inside IDAT data
        ("png", idat + 5, "chunk header at byte .* cut short"),  # inside a chunk header
        ("png", len(png) - 12, "no IEND chunk .*truncated"),  # everything but IEND
        ("png", len(png) - 1, "'IEND' .* runs past the end"),  # IEND's CRC cut
        ("jpeg", 12, "segment FFE0 at byte 2 .* runs past the end"),  # inside APP0
        ("jpeg", len(jpeg) - 2, "no EOI marker .*truncated"),  # everything but EOI
        ("jpeg", len(jpeg) - 7, "no EOI marker"),  # inside the scan, before RST0
        ("jpeg", len(jpeg) - 1, "no EOI"),  # half of EOI
        ("progressive", between_scans, "no EOI"),  # after the first scan
        ("progressive", between_scans + 5, "segment FFC4 .* runs past the end"),  # its table
        ("webp-extended", 30, "RIFF size says .*truncated"),  # inside VP8X
        ("webp-extended", len(webp) - 1, "RIFF size says .*truncated"),  # the pad byte
    ]


@pytest.mark.parametrize(("key", "cut", "why"), _cuts())
def test_a_cut_file_is_refused_with_where_it_ends(
    tmp_path: Path, key: str, cut: int, why: str
) -> None:
    """Cut inside a chunk, a header, a scan, before IEND or EOI, or in the RIFF payload."""
    refused(tmp_path, VALID[key][:cut], why)


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(sorted(VALID)), data=st.data())
def test_every_truncation_is_refused(
    tmp_path_factory: pytest.TempPathFactory, key: str, data: st.DataObject
) -> None:
    """Cutting any of the valid files at any byte makes the walker refuse it."""
    whole = VALID[key]
    cut = data.draw(st.integers(min_value=0, max_value=len(whole) - 1), label="cut")
    path = tmp_path_factory.mktemp("cut") / "still.img"
    path.write_bytes(whole[:cut])
    with pytest.raises(NotImage, match=r"^still\.img: "):
        check_image(path)


# -- refused: damaged, extended, or not an image at all -----------------------------------------


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_changed_byte_of_a_png_is_refused(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Signature, lengths, types, data and CRCs: one changed byte anywhere is caught."""
    png = bytearray(VALID["png"])
    at = data.draw(st.integers(min_value=0, max_value=len(png) - 1), label="at")
    png[at] ^= data.draw(st.integers(min_value=1, max_value=255), label="xor")
    path = tmp_path_factory.mktemp("flip") / "still.img"
    path.write_bytes(bytes(png))
    with pytest.raises(NotImage):
        check_image(path)


def test_a_wrong_crc_is_refused_with_both_values(tmp_path: Path) -> None:
    """A chunk whose data no longer matches its CRC names the chunk and both CRCs."""
    png = bytearray(VALID["png"])
    png[png.index(b"made by") + 1] ^= 0x01
    error = refused(tmp_path, bytes(png), r"chunk 'tEXt' at byte 33 has a wrong CRC")
    assert "stored" in error.message
    assert "computed" in error.message


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(sorted(VALID)), tail=st.binary(min_size=1, max_size=40))
def test_anything_after_the_end_is_refused(
    tmp_path_factory: pytest.TempPathFactory, key: str, tail: bytes
) -> None:
    """Bytes after IEND, after EOI, or past the RIFF size are refused as trailing data."""
    path = tmp_path_factory.mktemp("tail") / "still.img"
    path.write_bytes(VALID[key] + tail)
    with pytest.raises(NotImage, match="trailing data"):
        check_image(path)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("png", "3 bytes of trailing data after IEND"),
        ("jpeg", "3 bytes of trailing data after EOI"),
        ("webp", "RIFF size says 28 bytes, the file has 31: 3 bytes of trailing data"),
    ],
)
def test_trailing_garbage_is_counted(tmp_path: Path, key: str, why: str) -> None:
    """The message says how many bytes follow the image's end."""
    refused(tmp_path, VALID[key] + b"<x>", why)


def test_a_bad_riff_size_is_refused(tmp_path: Path) -> None:
    """A RIFF size that disagrees with the file's length either way is refused."""
    webp = VALID["webp"]
    larger = webp[:4] + struct.pack("<I", len(webp)) + webp[8:]
    smaller = webp[:4] + struct.pack("<I", len(webp) - 10) + webp[8:]
    refused(tmp_path, larger, r"RIFF size says 36 bytes, the file has 28 \(truncated\?\)")
    refused(tmp_path, smaller, "RIFF size says 26 bytes, the file has 28: 2 bytes of trailing")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "the file is empty"),
        (b"<!DOCTYPE html><html><body>403 Forbidden</body></html>", "an HTML or XML page"),
        (b'\n  {"error": "not found"}', "a JSON document"),
        (MP4, r"an MP4 \(ISO-BMFF\) file"),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "no PNG, JPEG or WebP signature"),
        (b"\x89PN", "only 3 bytes, too short"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no PNG, JPEG or WebP signature"),
    ],
)
def test_what_is_not_an_image_says_what_it_is(tmp_path: Path, data: bytes, why: str) -> None:
    """An empty file, an error page, JSON, an MP4, a GIF or a WAV is refused and named."""
    refused(tmp_path, data, why)


def test_a_png_needs_ihdr_first_idat_and_an_empty_iend(tmp_path: Path) -> None:
    """Each of PNG's required chunks is checked, with its name in the message."""
    sig, png = b"\x89PNG\r\n\x1a\n", VALID["png"]
    ihdr = png[8:33]
    refused(tmp_path, sig + png_chunk(b"IEND", b""), "first chunk is 'IEND' of 0 bytes")
    refused(tmp_path, sig + ihdr + png_chunk(b"IEND", b""), "no IDAT chunk")
    data = sig + ihdr + png_chunk(b"IDAT", zlib.compress(b"\x00")) + png_chunk(b"IEND", b"x")
    refused(tmp_path, data, "IEND chunk has 1 bytes of data")
    refused(tmp_path, sig + ihdr + b"\x00\x00\x00\x00id@T", "unreadable chunk type")


def test_a_jpeg_needs_a_frame_before_its_scan_and_a_scan_before_eoi(tmp_path: Path) -> None:
    """SOS without SOF, EOI without SOS, a bad frame header and a stray byte are refused."""
    soi, eoi = b"\xff\xd8", b"\xff\xd9"
    refused(tmp_path, soi + DQT + DHT_DC + sos(0, 63) + b"\x7f" + eoi, "before any frame")
    refused(tmp_path, soi + DQT + sof(0xC0, 8, 8) + eoi, "EOI at byte .* before any scan")
    bad_frame = segment(0xC0, struct.pack(">BHHB", 8, 8, 8, 2) + b"\x01\x11\x00")
    refused(tmp_path, soi + bad_frame + sos(0, 63) + eoi, r"frame header \(SOF\) .* malformed")
    refused(tmp_path, soi + DQT + b"\x00" + sof(0xC0, 8, 8), "expected a marker at byte 71")
    refused(tmp_path, soi + b"\xff\xd8" + DQT, "invalid marker FFD8")


def test_a_webp_needs_a_known_first_chunk_and_a_bitstream(tmp_path: Path) -> None:
    """ALPH first, a VP8X without image data, a wrong VP8L or VP8 signature are refused."""
    vp8x = bytes(10)
    refused(tmp_path, riff([(b"ALPH", b"\x00\x00")]), "first chunk is 'ALPH'")
    refused(tmp_path, riff([(b"VP8X", vp8x), (b"XTRA", b"")]), "no VP8, VP8L or ANMF chunk")
    refused(tmp_path, riff([(b"VP8X", vp8x[:8])]), "'VP8X' at byte 12 is 8 bytes, not 10")
    refused(tmp_path, riff([(b"VP8L", b"\x2e" + VP8L_1X1[1:])]), "no VP8L signature")
    refused(tmp_path, riff([(b"VP8 ", bytes(10))]), "no VP8 key frame start code")
    refused(tmp_path, riff([(b"VP8L", VP8L_1X1), (b"\x00\x01\x02\x03", b"")]), "unreadable")


# -- the helpers callers use ---------------------------------------------------------------------


def test_sniff_names_the_format_from_the_first_bytes() -> None:
    """Enough of a head is enough; a short head, a page or an MP4 is not recognised."""
    heads = {key: VALID[key][:SNIFF_BYTES] for key in VALID}
    assert {key: sniff(head) for key, head in heads.items()} == {
        key: FORMAT_OF.get(key, key) for key in VALID
    }
    assert sniff(VALID["png"][:8]) == "png"
    assert sniff(VALID["jpeg"][:3]) == "jpeg"
    assert sniff(VALID["webp"][:11]) is None
    assert sniff(b"<!DOCTYPE html>") is None
    assert sniff(MP4[:SNIFF_BYTES]) is None
    assert sniff(b"") is None


def test_formats_have_an_extension_and_a_content_type() -> None:
    """Each format check_image returns names its file extension and media type."""
    assert EXTENSIONS == {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
    assert CONTENT_TYPES == {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
    assert set(image_file.CHECKS) == set(EXTENSIONS)


def test_not_image_is_a_download_error() -> None:
    """Callers that handle a bad download handle a bad image the same way."""
    assert issubclass(NotImage, DownloadError)
