"""Uploaded assets (``POST /assets``): type sniffing, image dimensions, in-memory storage.

Krea accepts JPEG/PNG/WebP/HEIC/MP4/MOV/WebM/GLB/WAV/MP3 up to 75 MB. The simulator trusts the
bytes rather than the declared content type: the magic numbers below decide the MIME type, and
anything unrecognised is refused with 400. PNG and JPEG report their pixel size; other types
report ``null`` width/height as Krea does for non-images. Files live in memory (tests upload
small ones) and are served back publicly, like Krea's CDN, so an ``image_url`` can be passed as
``start_image``.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Any

MAX_ASSET_BYTES = 75 * 1024 * 1024
ALLOWED = "JPEG, PNG, WebP, HEIC, MP4, MOV, WebM, GLB, WAV, MP3"
_HEIC_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


@dataclass(frozen=True)
class Asset:
    """One uploaded file and its metadata."""

    asset_id: str
    account: str
    data: bytes
    mime_type: str
    width: int | None
    height: int | None
    uploaded_at: str
    description: str | None

    def api_json(self, url: str) -> dict[str, Any]:
        """The asset as ``POST /assets`` answers it."""
        out: dict[str, Any] = {
            "id": self.asset_id,
            "image_url": url,
            "uploaded_at": self.uploaded_at,
            "width": self.width,
            "height": self.height,
            "size_bytes": len(self.data),
            "mime_type": self.mime_type,
        }
        if self.description is not None:
            out["description"] = self.description
        return out


def new_asset(account: str, data: bytes, uploaded_at: str, description: str | None) -> Asset | None:
    """An asset for ``data``, or None when its type is not one Krea accepts."""
    mime = _sniff(data)
    if mime is None:
        return None
    width, height = _dimensions(data, mime)
    return Asset(str(uuid.uuid4()), account, data, mime, width, height, uploaded_at, description)


def _sniff(data: bytes) -> str | None:
    """The MIME type from the magic bytes, or None."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"RIFF") and head[8:12] in (b"WEBP", b"WAVE"):
        return "image/webp" if head[8:12] == b"WEBP" else "audio/wav"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if head.startswith(b"glTF"):
        return "model/gltf-binary"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    return _sniff_iso_box(head)


def _sniff_iso_box(head: bytes) -> str | None:
    box, brand = head[4:8], head[8:12]
    if box == b"ftyp":
        if brand in _HEIC_BRANDS:
            return "image/heic"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    if box in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "video/quicktime"
    return None


def _dimensions(data: bytes, mime: str) -> tuple[int | None, int | None]:
    """Pixel width and height of PNG and JPEG images; (None, None) otherwise."""
    if mime == "image/png" and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if mime == "image/jpeg":
        return _jpeg_dimensions(data)
    return None, None


def _jpeg_dimensions(data: bytes) -> tuple[int | None, int | None]:
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            return None, None
        marker = data[position + 1]
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        position += 2 + length
    return None, None
