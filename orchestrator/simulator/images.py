"""Result images: a real, decodable PNG or baseline JPEG per job, from the standard library only.

An image job's result must be a file that image tools open, not bytes that merely end in
``.png``: a client that checks what it downloaded (magic numbers, dimensions, a decoder) has to
see a genuine image. Every file is a small flat-coloured picture (``WIDTH`` x ``HEIGHT``) whose
colour comes from the key (a job id, or ``preview:<job id>``), with the key in a comment, so
every job's bytes and sha256 differ. Both encoders are written out by hand:

* PNG: signature, IHDR (8-bit RGB), tEXt (the key), IDAT (zlib of filter-0 rows), IEND, each
  chunk with its CRC-32;
* JPEG: SOI, APP0 (JFIF 1.01), COM (the key), DQT, SOF0 (baseline, three 1x1 components, Y Cb
  Cr), DHT, SOS, entropy data, EOI. A flat picture has only a DC coefficient per 8x8 block, so
  each block codes one DC difference (the first block of each component carries the level, the
  rest 0) and an end-of-block; the Huffman tables hold just those symbols.

``image_file`` gives the CDN the same interface as an MP4 (size, ETag, chunks), so images get
the same Range, HEAD and fault handling; ``image_bytes_for`` is the pure reference tests compare
downloads against.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

WIDTH = 64
HEIGHT = 36
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: File extension -> MIME type of the two formats served.
MIME_TYPES = {"png": "image/png", "jpg": "image/jpeg"}
_BLOCK = 8
#: DC Huffman table: categories 0..11, every code 4 bits long (0000..1011; none is all ones).
_DC_BITS = (0, 0, 0, 12) + (0,) * 12
_DC_SYMBOLS = tuple(range(12))
#: AC Huffman table: only end-of-block (0x00), coded as the single bit 0.
_AC_BITS = (1,) + (0,) * 15
_AC_SYMBOLS = (0x00,)


def colour_of(key: str) -> tuple[int, int, int]:
    """The picture's RGB colour for ``key``."""
    digest = hashlib.sha256(f"krea-simulator image {key}".encode()).digest()
    return digest[0], digest[1], digest[2]


@dataclass(frozen=True)
class ImageFile:
    """A served image: its bytes and MIME type, with the CDN's file interface."""

    data: bytes
    content_type: str

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def etag(self) -> str:
        """A strong validator: the content's own hash."""
        return '"' + hashlib.sha256(self.data).hexdigest()[:32] + '"'

    def chunks(self, start: int, end: int, chunk_bytes: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` in pieces of at most ``chunk_bytes``."""
        for position in range(start, end, chunk_bytes):
            yield self.data[position : min(end, position + chunk_bytes)]


def image_file(key: str, ext: str) -> ImageFile:
    """The file the CDN serves for ``key`` as ``png`` or ``jpg``."""
    return ImageFile(image_bytes_for(key, ext), MIME_TYPES[ext])


@lru_cache(maxsize=256)
def image_bytes_for(key: str, ext: str = "png") -> bytes:
    """The whole file for ``key`` as ``png`` or ``jpg``."""
    if ext == "png":
        return png(colour_of(key), f"krea-simulator image {key}")
    if ext == "jpg":
        return jpeg(colour_of(key), f"krea-simulator image {key}")
    raise ValueError(f"unknown image extension: {ext!r}")


# -- PNG ----------------------------------------------------------------------------------------
def png(rgb: tuple[int, int, int], comment: str) -> bytes:
    """A flat ``WIDTH`` x ``HEIGHT`` 8-bit RGB PNG with ``comment`` in a tEXt chunk."""
    header = struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0)  # 8-bit truecolour
    row = b"\x00" + bytes(rgb) * WIDTH  # filter type 0, then the pixels
    return b"".join(
        (
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"tEXt", b"Comment\x00" + comment.encode("latin-1", "replace")),
            _chunk(b"IDAT", zlib.compress(row * HEIGHT, 9)),
            _chunk(b"IEND", b""),
        )
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


# -- JPEG ---------------------------------------------------------------------------------------
def jpeg(rgb: tuple[int, int, int], comment: str) -> bytes:
    """A flat ``WIDTH`` x ``HEIGHT`` baseline JPEG (4:4:4 YCbCr) with ``comment`` in COM."""
    levels = _dc_levels(rgb)
    blocks = -(-WIDTH // _BLOCK) * -(-HEIGHT // _BLOCK)
    text = comment.encode("latin-1", "replace")
    jfif = b"JFIF\x00" + struct.pack(">BBBHHBB", 1, 1, 0, 1, 1, 0, 0)
    quant = b"\x00" + bytes([1] * 64)  # table 0, 8-bit, every step 1
    frame = struct.pack(">BHHB", 8, HEIGHT, WIDTH, 3) + b"".join(
        bytes((ident, 0x11, 0)) for ident in (1, 2, 3)
    )
    tables = _huffman(0x00, _DC_BITS, _DC_SYMBOLS) + _huffman(0x10, _AC_BITS, _AC_SYMBOLS)
    scan = bytes((3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0))
    return b"".join(
        (
            b"\xff\xd8",
            _segment(0xE0, jfif),
            _segment(0xFE, text),
            _segment(0xDB, quant),
            _segment(0xC0, frame),
            _segment(0xC4, tables),
            _segment(0xDA, scan),
            _entropy(levels, blocks),
            b"\xff\xd9",
        )
    )


def _dc_levels(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The quantised DC coefficient of a flat block of each of Y, Cb, Cr (JFIF conversion)."""
    r, g, b = rgb
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return _dc(y), _dc(cb), _dc(cr)


def _dc(sample: float) -> int:
    """A flat block of level-shifted value v has DCT DC = 8 v; the quantiser step is 1."""
    return round(8 * (min(255.0, max(0.0, sample)) - 128))


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _huffman(class_and_id: int, bits: tuple[int, ...], symbols: tuple[int, ...]) -> bytes:
    return bytes((class_and_id, *bits, *symbols))


def _codes(bits: tuple[int, ...], symbols: tuple[int, ...]) -> dict[int, tuple[int, int]]:
    """Symbol -> (code, length) of a canonical Huffman table (JPEG Annex C)."""
    codes: dict[int, tuple[int, int]] = {}
    code, index = 0, 0
    for length, count in enumerate(bits, start=1):
        for _ in range(count):
            codes[symbols[index]] = (code, length)
            code += 1
            index += 1
        code <<= 1
    return codes


def _entropy(levels: tuple[int, int, int], blocks: int) -> bytes:
    """The interleaved scan: per MCU one block of Y, Cb and Cr, each a DC difference + EOB."""
    dc, ac = _codes(_DC_BITS, _DC_SYMBOLS), _codes(_AC_BITS, _AC_SYMBOLS)
    writer = _BitWriter()
    for index in range(blocks):
        for level in levels:
            diff = level if index == 0 else 0  # the predictor starts at 0, then stays equal
            size = abs(diff).bit_length()
            writer.put(*dc[size])
            if size:
                writer.put(diff if diff > 0 else diff + (1 << size) - 1, size)
            writer.put(*ac[0x00])
    return writer.finish()


class _BitWriter:
    """MSB-first bits with JPEG byte stuffing (0xFF is followed by 0x00) and 1-bit padding."""

    def __init__(self) -> None:
        self._out = bytearray()
        self._acc = 0
        self._count = 0

    def put(self, value: int, length: int) -> None:
        self._acc = (self._acc << length) | (value & ((1 << length) - 1))
        self._count += length
        while self._count >= 8:
            self._count -= 8
            self._emit((self._acc >> self._count) & 0xFF)
        self._acc &= (1 << self._count) - 1

    def finish(self) -> bytes:
        if self._count:
            self.put((1 << (8 - self._count)) - 1, 8 - self._count)
        return bytes(self._out)

    def _emit(self, byte: int) -> None:
        self._out.append(byte)
        if byte == 0xFF:
            self._out.append(0x00)
