"""Job ids: the rules for an entry's ``id:``, the id of an entry without one, and the suffix that
each expanded value adds (entries.py makes the ids; manifest.py's docstring states the rules).

Ids name files and ledger rows, so they stay short, printable and free of path syntax:
unicode letters and digits and ``. _ -`` (NFC), at most 100 characters, no leading dot.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from orchestrator.manifest.output_paths import slug

MAX_ID_CHARS = 100
_TAG_CHARS = 24
_SIMPLE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def check_id(text: str) -> str | None:
    """Why ``text`` (NFC) is not a valid id, or None."""
    if _SIMPLE_ID.fullmatch(text):
        return None  # the common case, without a walk over the characters
    if not text:
        return "must not be empty"
    if len(text) > MAX_ID_CHARS:
        return f"is longer than {MAX_ID_CHARS} characters"
    if text.startswith("."):
        return "must not start with a dot"
    if not all(c.isalnum() or c in "._-" for c in text):
        return "may contain only letters, digits, '.', '_' and '-'"
    return None


def derived_id(prompt: Any, index: int) -> str:
    """The id of an entry without one: its prompt's first words and a hash of the prompt."""
    if not isinstance(prompt, str) or not prompt.strip():
        return f"entry-{index + 1}"
    words = " ".join(prompt.replace(":", " ").replace("/", " ").split()[:6]).casefold()
    head = slug(words)[:60].strip("-.") or "job"
    return f"{head}-{hashlib.sha256(prompt.encode()).hexdigest()[:6]}"


def tag(value: Any, position: int) -> str:
    """The id suffix of one expanded value (see the module docstring)."""
    if isinstance(value, dict | list):
        return str(position)
    text = slug(value)
    if len(text) <= _TAG_CHARS:
        return text
    digest = hashlib.sha256(str(value).encode()).hexdigest()[:6]
    return f"{text[: _TAG_CHARS - 7].rstrip('-.')}-{digest}"
