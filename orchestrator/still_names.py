"""What a still's file is called: its extension is that of the format its bytes turn out to be.

An image model's result may be PNG, JPEG or WebP, and which one is known only once the file is
downloaded and verified (``image_file``). So a still's planned path ends with the literal
``.{ext}`` (:data:`IMAGE_SUFFIX`), and its file is saved as ``x.png``, ``x.jpg`` or ``x.webp``
(:func:`final_path`); the ledger then records that name. Kept below the manifest, so the ledger
can tell a saved still from a moved one (:func:`same_file`) without importing the manifest.
"""

from __future__ import annotations

from orchestrator.image_file import CONTENT_TYPES, EXTENSIONS

#: The template placeholder a still's extension waits in, and the end of its planned path.
EXT_PLACEHOLDER = "{ext}"
IMAGE_SUFFIX = "." + EXT_PLACEHOLDER
#: What a still's file may end with once verified, one per format ``image_file`` accepts.
IMAGE_EXTENSIONS = tuple(EXTENSIONS.values())
#: The Content-Type a verified still is served with, by its file's extension.
STILL_TYPES = {EXTENSIONS[format_]: CONTENT_TYPES[format_] for format_ in EXTENSIONS}


def final_path(planned: str, extension: str) -> str:
    """Where a file planned at ``planned`` lands once its format's ``extension`` is known."""
    return planned[: -len(IMAGE_SUFFIX)] + extension if is_still(planned) else planned


def is_still(planned: str) -> bool:
    """Whether ``planned`` is a still's planned path (its extension not yet known)."""
    return planned.endswith(IMAGE_SUFFIX)


def same_file(saved: str, planned: str) -> bool:
    """Whether a file saved at ``saved`` is where the manifest now plans ``planned``."""
    if saved == planned:
        return True
    stem = still_stem(saved)
    return is_still(planned) and stem is not None and stem + IMAGE_SUFFIX == planned


def still_stem(path: str) -> str | None:
    """``x`` of ``x.{ext}`` or of a verified still's ``x.png``/``x.jpg``/``x.webp``; else None."""
    if path.endswith(IMAGE_SUFFIX):
        return path[: -len(IMAGE_SUFFIX)]
    for extension in IMAGE_EXTENSIONS:
        if path.endswith(extension):
            return path[: -len(extension)]
    return None
