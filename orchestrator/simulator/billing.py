"""The simulator's own price list: compute units from the spec's tables, turned into micro-dollars.

Deliberately independent of the client's ``orchestrator.money.costs``: a fake that shared the
client's pricing code could never catch a pricing bug. Only the raw table cells come from
``orchestrator.spec``; matching a request to a row is done here, from Krea's column names:

=================== ================================================================
column              matched against (request value, else the schema default)
=================== ================================================================
Mode                ``mode`` (video modes; Luma Uni-1's ``standard``/``max``)
Audio               ``generate_audio`` (Yes/No)
Duration            ``duration`` as ``"5s"``; ``-`` or a model without ``duration``
                    means the duration is fixed and any row matches
Resolution          ``resolution`` (case-insensitive: ``4K``, an image's ``1K``)
Video Reference     whether ``video_reference`` is present (Yes/No)
LoRA                ``has_lora`` (Yes/No)
Reference Images    the number of items in ``style_images`` (0 when absent; Luma Uni-1)
Character Reference whether ``character_reference_images`` is a non-empty list (Yes/No;
                    Ideogram 3)
Model               ignored: Imagen 3's single row "Standard" names no request field
Compute Units       the price; ``~270`` (or an image's ``~3``) means that number
Average Completion  ignored for pricing (``outcomes`` reads it for durations)
=================== ================================================================

Image endpoints are priced by the same rules from their own tables. A valid request that
matches no row (Veo 3 at 4 s, Seedance Pro at 7 s) or whose endpoint has no table at all
(Runway Aleph, SeedEdit) costs ``unpriced_cu``. USD = CU × 0.0018335, so micro-dollars are
``round_half_up(CU × 1833.5)``. Jobs are charged only when they complete.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from orchestrator.spec import Endpoint

MICRO_PER_CU = Decimal("1833.5")
_PRICE_COLUMN = "Compute Units"
_IGNORED_COLUMNS = frozenset({"Average Completion Time", "Model", _PRICE_COLUMN})


def price_micro(cu: Decimal | float | str) -> int:
    """Micro-dollars for ``cu`` compute units, rounded half up."""
    exact = Decimal(str(cu)) * MICRO_PER_CU
    return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


def cell_number(cell: str) -> Decimal | None:
    """``"~270"`` -> 270, ``"~97 seconds"`` -> 97, ``"-"`` -> None."""
    text = cell.strip().lstrip("~").split()[0] if cell.strip() not in ("", "-") else ""
    try:
        return Decimal(text) if text else None
    except ArithmeticError:
        return None


def matching_row(endpoint: Endpoint, body: Mapping[str, Any]) -> dict[str, str] | None:
    """The price-table row (column -> cell) that applies to ``body``, or None."""
    table = endpoint.price_table
    if table is None:
        return None
    for row in table.rows:
        cells = dict(zip(table.columns, row, strict=False))
        if all(_matches(endpoint, body, col, cell) for col, cell in cells.items()):
            return cells
    return None


def _request_cu(endpoint: Endpoint, body: Mapping[str, Any], unpriced_cu: float) -> Decimal:
    """Compute units for a valid request: its table row's price, else ``unpriced_cu``."""
    row = matching_row(endpoint, body)
    price = cell_number(row[_PRICE_COLUMN]) if row and _PRICE_COLUMN in row else None
    return price if price is not None else Decimal(str(unpriced_cu))


def request_price_micro(endpoint: Endpoint, body: Mapping[str, Any], unpriced_cu: float) -> int:
    """Micro-dollars a completed job made from ``body`` costs."""
    return price_micro(_request_cu(endpoint, body, unpriced_cu))


def _matches(endpoint: Endpoint, body: Mapping[str, Any], column: str, cell: str) -> bool:
    if column in _IGNORED_COLUMNS:
        return True
    matcher = _MATCHERS.get(column)
    if matcher is None:
        return False  # a column we do not understand: never guess a price
    return matcher(endpoint, body, cell.strip())


def _value(endpoint: Endpoint, body: Mapping[str, Any], name: str) -> Any:
    return body[name] if name in body else endpoint.default(name)


def _yes_no(flag: Any, cell: str) -> bool:
    return ("Yes" if bool(flag) else "No").lower() == cell.lower()


def _mode(endpoint: Endpoint, body: Mapping[str, Any], cell: str) -> bool:
    return str(_value(endpoint, body, "mode")).lower() == cell.lower()


def _resolution(endpoint: Endpoint, body: Mapping[str, Any], cell: str) -> bool:
    return str(_value(endpoint, body, "resolution")).lower() == cell.lower()


def _audio(endpoint: Endpoint, body: Mapping[str, Any], cell: str) -> bool:
    return _yes_no(_value(endpoint, body, "generate_audio"), cell)


def _lora(endpoint: Endpoint, body: Mapping[str, Any], cell: str) -> bool:
    return _yes_no(_value(endpoint, body, "has_lora"), cell)


def _video_reference(endpoint: Endpoint, body: Mapping[str, Any], cell: str) -> bool:
    return _yes_no(body.get("video_reference") is not None, cell)


def _duration(endpoint: Endpoint, body: Mapping[str, Any], cell: str) -> bool:
    if cell == "-" or "duration" not in endpoint.fields:
        return True  # fixed-length model: the table's single duration is not a choice
    value = _value(endpoint, body, "duration")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    wanted = cell_number(cell.removesuffix("s"))
    return wanted is not None and Decimal(str(value)) == wanted


def _reference_images(endpoint: Endpoint, body: Mapping[str, Any], cell: str) -> bool:
    images = body.get("style_images")
    count = len(images) if isinstance(images, list) else 0
    wanted = cell_number(cell)
    return wanted is not None and Decimal(count) == wanted


def _character_reference(endpoint: Endpoint, body: Mapping[str, Any], cell: str) -> bool:
    images = body.get("character_reference_images")
    return _yes_no(isinstance(images, list) and len(images) > 0, cell)


_MATCHERS: dict[str, Callable[[Endpoint, Mapping[str, Any], str], bool]] = {
    "Mode": _mode,
    "Audio": _audio,
    "Duration": _duration,
    "Resolution": _resolution,
    "Video Reference": _video_reference,
    "LoRA": _lora,
    "Reference Images": _reference_images,
    "Character Reference": _character_reference,
}
