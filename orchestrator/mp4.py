"""Is this file a complete MP4? A walk over its top-level boxes, reading only their headers.

An ISO-BMFF file is a sequence of boxes, each starting with a 32-bit size and a 4-letter type
(size 1: a 64-bit size follows; size 0: the box runs to the end of the file). A complete file
starts with ``ftyp``, its boxes tile it exactly, and it has ``moov`` and ``mdat`` (or ``moof``).
That catches a truncated download and an HTML error page saved under a ``.mp4`` name, at the cost
of a few reads however large the file is (RELIABILITY P4.2).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from orchestrator.errors import NotMp4

MAX_BOXES = 100_000


def check_mp4(path: Path) -> list[str]:
    """The top-level box types of a complete MP4; raises NotMp4 with the reason otherwise."""
    with path.open("rb") as handle:
        size = handle.seek(0, 2)
        return check_boxes(handle, size, name=path.name)


def check_boxes(handle: BinaryIO, size: int, *, name: str = "file") -> list[str]:
    """Walk the boxes of an open binary file of ``size`` bytes."""
    offset, types = 0, list[str]()
    while offset < size:
        if len(types) >= MAX_BOXES:
            raise NotMp4(f"{name}: more than {MAX_BOXES} top-level boxes")
        box_size, box_type, header = _header(handle, offset, size, name)
        if not types and box_type != "ftyp":
            raise NotMp4(f"{name}: does not start with an ftyp box (starts with {box_type!r})")
        if box_size == 0:
            box_size = size - offset
        if box_size < header or offset + box_size > size:
            raise NotMp4(
                f"{name}: box {box_type!r} at byte {offset} runs past the end (truncated?)"
            )
        types.append(box_type)
        offset += box_size
    missing = [t for t in ("moov",) if t not in types]
    if "mdat" not in types and "moof" not in types:
        missing.append("mdat")
    if not types or missing:
        raise NotMp4(f"{name}: missing {', '.join(missing) or 'every'} box")
    return types


def _header(handle: BinaryIO, offset: int, size: int, name: str) -> tuple[int, str, int]:
    handle.seek(offset)
    raw = handle.read(8)
    if len(raw) < 8:
        raise NotMp4(f"{name}: a box header at byte {offset} is cut short")
    box_size, raw_type = struct.unpack(">I4s", raw)
    if not all(32 <= c < 127 for c in raw_type):
        raise NotMp4(f"{name}: unreadable box type at byte {offset}")
    header = 8
    if box_size == 1:
        extended = handle.read(8)
        if len(extended) < 8:
            raise NotMp4(f"{name}: a 64-bit box size at byte {offset} is cut short")
        (box_size,) = struct.unpack(">Q", extended)
        header = 16
    return box_size, raw_type.decode("ascii"), header
