"""Is this file a complete PNG, JPEG or WebP image? A walk over its chunks or segments.

Image jobs return stills, and a result is accepted only once its bytes are known to be one
whole image of a known format: the counterpart of :mod:`orchestrator.mp4` for videos. Each format
is walked by its own length fields, reading headers and never holding more than
:data:`BLOCK_BYTES` at once, so a file of tens of MB costs bounded memory:

* PNG: the 8-byte signature, then chunks (32-bit length, type, data, CRC-32) that tile the file
  exactly: IHDR (13 bytes) first, at least one IDAT, and IEND (empty) last, ending at EOF. Every
  chunk's CRC is checked (``zlib.crc32`` over type and data, streamed in blocks), so a flipped
  byte anywhere in the file is caught too.
* JPEG: SOI, then marker segments skipped by their 2-byte lengths; a frame header (SOFn) before
  the first scan (SOS); each scan's entropy-coded data read up to the next marker (``FF00``
  stuffing, RSTn markers and fill bytes passed over), as many scans as a progressive file has,
  with tables between them; and EOI as the last two bytes of the file.
* WebP: ``RIFF``, a little-endian size equal to the file's length less 8, ``WEBP``, then chunks
  (fourcc, little-endian size, data, a pad byte when the size is odd) that tile the rest exactly;
  the first is ``VP8 ``, ``VP8L`` or ``VP8X`` (10 bytes), there is image data (``VP8 ``,
  ``VP8L`` or animation frames), and a bitstream's own signature is where it belongs.

That catches a download cut anywhere (a chunk or segment that runs past the end, a missing IEND
or EOI, a RIFF size larger than the file), an HTML or JSON error page or an MP4 saved under an
image's name, an empty file, and bytes after the image's end. :func:`sniff` names the format
from the first :data:`SNIFF_BYTES` bytes, so a caller can refuse an error page before a long
download ends.

It deliberately does not decode pixels: JPEG and WebP carry no checksum, so compressed data
damaged inside a structurally whole file passes, as do dimensions no one asked for; the image
models' output is trusted that far. Standard library only (no Pillow).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from orchestrator.errors import NotImage

#: The verified format -> the file extension a caller names the saved file with.
EXTENSIONS: dict[str, str] = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
#: The verified format -> its media type.
CONTENT_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
#: Bytes :func:`sniff` needs to tell every format (WebP's ``RIFF....WEBP``).
SNIFF_BYTES = 12
#: The most bytes read at once (PNG chunk data for its CRC, JPEG scan data for the next marker).
BLOCK_BYTES = 1 << 16
#: More chunks or segments than any real image has: refused, so a hostile file cannot spin.
MAX_CHUNKS = 1_000_000

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_MAX_LENGTH = (1 << 31) - 1  # the PNG specification's limit on a chunk's length
JPEG_SOI, JPEG_EOI, JPEG_SOS = 0xD8, 0xD9, 0xDA
#: SOF0..SOF15 less DHT (C4), JPG (C8) and DAC (CC): the frame headers.
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers with no length field: TEM and RST0..RST7.
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
JPEG_MAX_FILL = 64  # 0xFF fill bytes allowed before a marker
WEBP_FIRST = ("VP8 ", "VP8L", "VP8X")
WEBP_IMAGE_DATA = frozenset({"VP8 ", "VP8L", "ANMF"})
VP8_START_CODE = b"\x9d\x01\x2a"
VP8L_SIGNATURE = 0x2F


def sniff(head: bytes) -> str | None:
    """The format the first bytes of a file announce: "png", "jpeg", "webp", or None.

    Needs 8 bytes for PNG, 3 for JPEG and :data:`SNIFF_BYTES` (12) for WebP; fewer, or anything
    else (an HTML page, JSON, an MP4), is None. An announcement only: see :func:`check_image`.
    """
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(head) >= SNIFF_BYTES and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def check_image(path: Path) -> str:
    """The format of a whole PNG, JPEG or WebP file; raises NotImage with the reason otherwise."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        return check_handle(handle, size, name=path.name)


def check_handle(handle: BinaryIO, size: int, *, name: str = "file") -> str:
    """Check an open binary file of ``size`` bytes (seekable, read from byte 0): its format."""
    if size == 0:
        raise NotImage(f"{name}: the file is empty")
    handle.seek(0)
    head = handle.read(SNIFF_BYTES)
    kind = sniff(head)
    if kind is None:
        raise NotImage(f"{name}: {_not_an_image(head, size)}")
    CHECKS[kind](handle, size, name)
    return kind


def _not_an_image(head: bytes, size: int) -> str:
    start = head.lstrip()
    if start.startswith(b"<"):
        what = "an HTML or XML page"
    elif start.startswith((b"{", b"[")):
        what = "a JSON document"
    elif head[4:8] == b"ftyp":
        what = "an MP4 (ISO-BMFF) file"
    elif size < SNIFF_BYTES:
        return f"only {size} bytes, too short for an image (truncated?)"
    else:
        what = "no PNG, JPEG or WebP signature"
    return f"not an image: {what} (starts with {head!r})"


# -- PNG ----------------------------------------------------------------------------------------


def check_png(handle: BinaryIO, size: int, name: str) -> None:
    """Walk a PNG's chunks: they tile the file, CRCs match, IHDR first, IDAT, IEND at EOF."""
    offset, has_data = len(PNG_SIGNATURE), False
    for count in range(MAX_CHUNKS):
        length, kind = _png_header(handle, offset, size, name)
        if count == 0 and (kind != "IHDR" or length != 13):
            raise NotImage(f"{name}: the first chunk is {kind!r} of {length} bytes, not IHDR of 13")
        _png_crc(handle, offset, length, kind, name)
        offset += 12 + length
        has_data = has_data or kind == "IDAT"
        if kind == "IEND":
            _png_end(offset, size, length, has_data, name)
            return
    raise NotImage(f"{name}: more than {MAX_CHUNKS} chunks")


def _png_header(handle: BinaryIO, offset: int, size: int, name: str) -> tuple[int, str]:
    if offset >= size:
        raise NotImage(f"{name}: ends at byte {offset} with no IEND chunk (truncated?)")
    length, raw_type = struct.unpack(">I4s", _chunk_head(handle, offset, name))
    if not raw_type.isalpha():  # bytes.isalpha: ASCII letters only
        raise NotImage(f"{name}: unreadable chunk type {raw_type!r} at byte {offset}")
    kind = raw_type.decode("ascii")
    if length > PNG_MAX_LENGTH:
        raise NotImage(f"{name}: chunk {kind!r} at byte {offset} has an impossible length")
    if offset + 12 + length > size:
        raise NotImage(
            f"{name}: chunk {kind!r} at byte {offset} ({length} bytes of data) runs past the "
            f"end of the {size}-byte file (truncated?)"
        )
    return length, kind


def _chunk_head(handle: BinaryIO, offset: int, name: str) -> bytes:
    """The 8 bytes of a PNG or WebP chunk header (a length and a type, in either order)."""
    handle.seek(offset)
    raw = handle.read(8)
    if len(raw) < 8:
        raise NotImage(f"{name}: a chunk header at byte {offset} is cut short (truncated?)")
    return raw


def _png_crc(handle: BinaryIO, offset: int, length: int, kind: str, name: str) -> None:
    """Compare a chunk's CRC with one computed over its type and data, read in blocks."""
    handle.seek(offset + 4)
    crc, left = 0, 4 + length
    while left:
        block = handle.read(min(left, BLOCK_BYTES))
        if not block:
            raise NotImage(f"{name}: chunk {kind!r} at byte {offset} is cut short (truncated?)")
        crc, left = zlib.crc32(block, crc), left - len(block)
    raw = handle.read(4)
    if len(raw) < 4:
        raise NotImage(f"{name}: the CRC of chunk {kind!r} at byte {offset} is cut short")
    (stored,) = struct.unpack(">I", raw)
    if stored != crc:
        raise NotImage(
            f"{name}: chunk {kind!r} at byte {offset} has a wrong CRC (stored {stored:08x}, "
            f"computed {crc:08x}): the file is damaged"
        )


def _png_end(offset: int, size: int, length: int, has_data: bool, name: str) -> None:
    if length:
        raise NotImage(f"{name}: the IEND chunk has {length} bytes of data, not 0")
    if not has_data:
        raise NotImage(f"{name}: no IDAT chunk: the file holds no image data")
    if offset != size:
        raise NotImage(f"{name}: {size - offset} bytes of trailing data after IEND")


# -- JPEG ---------------------------------------------------------------------------------------


def check_jpeg(handle: BinaryIO, size: int, name: str) -> None:
    """Walk a JPEG's segments and scans from SOI to an EOI that is the file's last two bytes."""
    offset, framed, scans = 2, False, 0
    for _ in range(MAX_CHUNKS):
        marker, offset = _jpeg_marker(handle, offset, size, name)
        if marker == JPEG_EOI:
            _jpeg_end(offset, size, scans, name)
            return
        if marker in JPEG_STANDALONE:
            continue
        length = _jpeg_length(handle, offset, size, marker, name)
        if marker in JPEG_SOF:
            _jpeg_frame(handle, offset, length, name)
            framed = True
        elif marker == JPEG_SOS:
            if not framed:
                raise NotImage(f"{name}: a scan (SOS) at byte {offset - 2} before any frame (SOF)")
            scans += 1
            offset = _jpeg_scan_end(handle, offset + length, size, name)
            continue
        offset += length
    raise NotImage(f"{name}: more than {MAX_CHUNKS} segments")


def _jpeg_marker(handle: BinaryIO, offset: int, size: int, name: str) -> tuple[int, int]:
    """The marker at ``offset`` (after any 0xFF fill bytes) and the offset just past it."""
    handle.seek(offset)
    raw = handle.read(2 + JPEG_MAX_FILL)
    if len(raw) < 2:
        raise NotImage(f"{name}: ends at byte {offset} with no EOI marker (truncated?)")
    if raw[0] != 0xFF:
        raise NotImage(f"{name}: expected a marker at byte {offset}, found {raw[0]:#04x}")
    rest = raw[1:].lstrip(b"\xff")
    if not rest:
        if offset + len(raw) >= size:
            raise NotImage(f"{name}: ends at byte {size} inside a marker (truncated?)")
        raise NotImage(f"{name}: more than {JPEG_MAX_FILL} fill bytes at byte {offset}")
    marker = rest[0]
    if marker in (0x00, JPEG_SOI):
        raise NotImage(f"{name}: invalid marker FF{marker:02X} at byte {offset}")
    return marker, offset + len(raw) - len(rest) + 1


def _jpeg_length(handle: BinaryIO, offset: int, size: int, marker: int, name: str) -> int:
    """The length of the segment whose length field is at ``offset`` (it counts itself)."""
    handle.seek(offset)
    raw = handle.read(2)
    if len(raw) < 2:
        raise NotImage(f"{name}: segment FF{marker:02X} at byte {offset - 2} is cut short")
    length = int.from_bytes(raw, "big")
    if length < 2:
        raise NotImage(f"{name}: segment FF{marker:02X} at byte {offset - 2} has length {length}")
    if offset + length > size:
        raise NotImage(
            f"{name}: segment FF{marker:02X} at byte {offset - 2} ({length} bytes) runs past "
            f"the end of the {size}-byte file (truncated?)"
        )
    return length


def _jpeg_frame(handle: BinaryIO, offset: int, length: int, name: str) -> None:
    """A frame header: precision, height, width > 0, components, 3 bytes for each."""
    handle.seek(offset + 2)
    raw = handle.read(6)
    if len(raw) == 6:
        _precision, _height, width, components = struct.unpack(">BHHB", raw)
        if width and components and length == 8 + 3 * components:
            return
    raise NotImage(f"{name}: the frame header (SOF) at byte {offset - 2} is malformed")


def _jpeg_scan_end(handle: BinaryIO, offset: int, size: int, name: str) -> int:
    """Where the marker that ends a scan's entropy-coded data starting at ``offset`` is."""
    position = offset
    while True:
        handle.seek(position)
        block = handle.read(BLOCK_BYTES)
        if len(block) < 2:
            raise NotImage(
                f"{name}: the scan data from byte {offset} runs to the end of the file with no "
                "EOI marker (truncated?)"
            )
        found = _next_marker(block)
        if found is not None:
            return position + found
        position += len(block) - 1  # a final 0xFF is read again with the byte after it


def _next_marker(block: bytes) -> int | None:
    """The index of the first 0xFF in ``block`` that starts a marker; None if there is none yet.

    Entropy-coded data escapes a 0xFF data byte as ``FF00``, and RSTn markers sit inside it;
    any other 0xFF starts a marker (or its fill bytes, which :func:`_jpeg_marker` passes over).
    """
    start = 0
    while (at := block.find(b"\xff", start)) != -1 and at + 1 < len(block):
        code = block[at + 1]
        if code != 0x00 and not 0xD0 <= code <= 0xD7:
            return at
        start = at + 2
    return None


def _jpeg_end(offset: int, size: int, scans: int, name: str) -> None:
    if not scans:
        raise NotImage(f"{name}: EOI at byte {offset - 2} before any scan: no image data")
    if offset != size:
        raise NotImage(f"{name}: {size - offset} bytes of trailing data after EOI")


# -- WebP ---------------------------------------------------------------------------------------


def check_webp(handle: BinaryIO, size: int, name: str) -> None:
    """Check a WebP's RIFF size and walk its chunks: they tile the payload, VP8/VP8L/VP8X first."""
    handle.seek(4)
    (riff_size,) = struct.unpack("<I", handle.read(4))
    if riff_size > size - 8:
        raise NotImage(
            f"{name}: the RIFF size says {riff_size + 8} bytes, the file has {size} (truncated?)"
        )
    if riff_size < size - 8:
        raise NotImage(
            f"{name}: the RIFF size says {riff_size + 8} bytes, the file has {size}: "
            f"{size - 8 - riff_size} bytes of trailing data"
        )
    offset, kinds = SNIFF_BYTES, set[str]()
    for count in range(MAX_CHUNKS):
        if offset == size:
            break
        kind, length = _webp_header(handle, offset, size, name)
        if count == 0 and kind not in WEBP_FIRST:
            raise NotImage(f"{name}: the first chunk is {kind!r}, not one of {WEBP_FIRST}")
        _webp_bitstream(handle, offset, kind, length, name)
        kinds.add(kind)
        offset += 8 + length + (length & 1)
    else:
        raise NotImage(f"{name}: more than {MAX_CHUNKS} chunks")
    if not kinds & WEBP_IMAGE_DATA:
        raise NotImage(f"{name}: no VP8, VP8L or ANMF chunk: the file holds no image data")


def _webp_header(handle: BinaryIO, offset: int, size: int, name: str) -> tuple[str, int]:
    fourcc, length = struct.unpack("<4sI", _chunk_head(handle, offset, name))
    if not all(32 <= c < 127 for c in fourcc):
        raise NotImage(f"{name}: unreadable chunk type {fourcc!r} at byte {offset}")
    kind = fourcc.decode("ascii")
    if offset + 8 + length + (length & 1) > size:
        raise NotImage(
            f"{name}: chunk {kind!r} at byte {offset} ({length} bytes, padded to even) runs "
            f"past the end of the RIFF payload (truncated?)"
        )
    return kind, length


def _webp_bitstream(handle: BinaryIO, offset: int, kind: str, length: int, name: str) -> None:
    """The first bytes of VP8X, VP8 and VP8L chunks: their fixed size or signature."""
    handle.seek(offset + 8)
    head = handle.read(min(length, 6))
    if kind == "VP8X" and length != 10:
        reason = f"is {length} bytes, not 10"
    elif kind == "VP8L" and (length < 5 or head[0] != VP8L_SIGNATURE):
        reason = "has no VP8L signature byte (0x2f)"
    elif kind == "VP8 " and (length < 10 or head[3:6] != VP8_START_CODE):
        reason = "has no VP8 key frame start code"
    else:
        return
    raise NotImage(f"{name}: chunk {kind!r} at byte {offset} {reason}")


#: The format -> its complete-file check (each raises NotImage).
CHECKS: dict[str, Callable[[BinaryIO, int, str], None]] = {
    "png": check_png,
    "jpeg": check_jpeg,
    "webp": check_webp,
}
