"""What one request costs, in integer micro-USD, from Krea's own price tables (pure).

The numbers come from ``orchestrator/data/prices.json``, which ``scripts/build_prices.py``
derives from the compute-unit tables in Krea's OpenAPI document (USD = CU x 0.0018335, rounded
half up to micro-dollars). That file is read once; nothing else here touches the disk.

How a request is priced (:func:`price_micro`):

1. A ``prices:`` override in the manifest for the model wins: a flat USD per job
   (``model: 0.75``) or USD per second of the request's duration (``model: {per_second: 0.05}``).
   Users may know a newer price than the spec snapshot, or need one the table lacks.
2. Otherwise fields the model's table is keyed on (``duration``, ``mode``, ``resolution``,
   ``generate_audio``, presence of ``video_reference`` or ``character_reference_images``,
   ``has_lora``, the number of ``style_images``) take the schema default when the request
   leaves them out, and the row whose values all match is the price. Numbers match
   numerically (5 == 5.0). Image models are priced the same way, from their own tables; a
   ``~3`` cell (Krea's "about 3") is priced as 3.
3. No row (``runway/aleph`` has no table; ``google/veo-3`` lists 5-8 s but accepts 4 s) and no
   override: :class:`PriceUnknown` names the model and the parameters, never a silent zero.

Money is integer micro-USD (1e-6 USD) everywhere; Decimal does the one multiplication.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any

from orchestrator.errors import PriceUnknown

MICRO_PER_USD = 1_000_000
#: Largest USD amount a manifest may state (a price or a budget): a billion dollars.
MAX_USD = 1_000_000_000


@dataclass(frozen=True)
class Row:
    """One priced combination of a model's keyed fields."""

    cu: float
    usd_micro: int
    seconds: float | None  #: clip length the row stands for; None when Krea does not say


@dataclass(frozen=True)
class ModelPrices:
    """A model's table: keyed fields, their defaults, and rows indexed by normalised values."""

    model: str
    keys: tuple[str, ...]
    defaults: dict[str, Any]
    presence: frozenset[str]  #: fields matched on being present (non-empty), not on their value
    rows: dict[tuple[Any, ...], Row]
    counted: frozenset[str] = frozenset()  #: list fields matched on their number of items

    def key_values(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The keyed fields of ``request``, with schema defaults filled in."""
        values: dict[str, Any] = {}
        for name in self.keys:
            if name in self.presence:
                values[name] = request.get(name) not in (None, [], "")
            elif name in self.counted:
                items = request.get(name)
                values[name] = len(items) if isinstance(items, list) else 0
            else:
                values[name] = request.get(name, self.defaults.get(name))
        return values

    def row_for(self, request: Mapping[str, Any]) -> Row | None:
        """The row that prices ``request``, or None."""
        values = self.key_values(request)
        return self.rows.get(tuple(_normal(values[name]) for name in self.keys))


@dataclass(frozen=True)
class PriceTables:
    """Every model's table, plus where the numbers came from."""

    spec_sha256: str
    spec_date: str
    usd_per_cu: str
    models: dict[str, ModelPrices]


@dataclass(frozen=True)
class Override:
    """A manifest price for requests the table cannot price: flat, or per second."""

    flat_micro: int | None = None
    per_second_usd: Decimal | None = None


@dataclass(frozen=True)
class PriceOverrides:
    """The manifest's ``prices:`` mapping: model -> Override."""

    by_model: dict[str, Override] = field(default_factory=dict)


NO_OVERRIDES = PriceOverrides()


def parse_override(value: Any) -> Override:
    """One ``prices:`` value (``0.75`` or ``{per_second: 0.05}``); ValueError says what is wrong."""
    if isinstance(value, Mapping):
        if set(value) != {"per_second"}:
            raise ValueError("must be a number (USD per job) or {per_second: <USD>}")
        return Override(per_second_usd=_usd_decimal(value["per_second"]))
    return Override(flat_micro=micro_from_usd(value))


def micro_from_usd(value: Any) -> int:
    """A YAML/JSON USD amount (int or float, >= 0) as micro-USD, rounded half up."""
    amount = _usd_decimal(value)
    return int((amount * MICRO_PER_USD).quantize(Decimal(1), ROUND_HALF_UP))


def usd(micro: int) -> float:
    """Micro-USD as a JSON-friendly USD number (exact to 6 decimal places)."""
    return micro / MICRO_PER_USD


def _usd_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of USD (got {value!r})")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:  # pragma: no cover - str() of a number always parses
        raise ValueError(f"must be a number of USD (got {value!r})") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"must be a finite number >= 0 (got {value!r})")
    if amount > MAX_USD:  # beyond this, micro-USD arithmetic leaves Decimal's precision
        raise ValueError(f"must be at most {MAX_USD:,} USD (got {value!r})")
    return amount


@cache
def tables() -> PriceTables:
    """The packaged prices.json, parsed once per process."""
    raw = resources.files("orchestrator").joinpath("data/prices.json").read_text("utf-8")
    document = json.loads(raw)
    models = {name: _model(name, entry) for name, entry in document["models"].items()}
    return PriceTables(
        spec_sha256=document["spec_sha256"],
        spec_date=document["spec_date"],
        usd_per_cu=document["usd_per_cu"],
        models=models,
    )


def _model(name: str, entry: dict[str, Any]) -> ModelPrices:
    keys = tuple(entry["keys"])
    rows = {
        tuple(_normal(row["when"][k]) for k in keys): Row(
            row["cu"], row["usd_micro"], row["seconds"]
        )
        for row in entry["rows"]
    }
    return ModelPrices(
        name,
        keys,
        dict(entry["defaults"]),
        frozenset(entry["presence"]),
        rows,
        frozenset(entry.get("counted", ())),
    )


def _normal(value: Any) -> tuple[str, Any]:
    """A hashable, type-tagged form, so that True never matches 1 and 5 matches 5.0."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    return ("j", json.dumps(value, sort_keys=True))


def price_micro(
    model: str, request: Mapping[str, Any], overrides: PriceOverrides = NO_OVERRIDES
) -> int:
    """The price of one job in micro-USD (rules in the module docstring)."""
    override = overrides.by_model.get(model)
    if override is not None:  # the user's price wins: Krea may have changed it since the spec
        return _override_micro(model, request, override)
    prices = tables().models.get(model)
    row = prices.row_for(request) if prices is not None else None
    if row is not None:
        return row.usd_micro
    raise PriceUnknown(model, _describe_gap(model, prices, request))


def seconds_for(model: str, request: Mapping[str, Any]) -> float | None:
    """Seconds of video the request asks for: its duration (or the default), else the table's."""
    prices = tables().models.get(model)
    duration = request.get("duration")
    if duration is None and prices is not None:
        duration = prices.defaults.get("duration")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        return float(duration)
    if prices is None:
        return None
    lengths = {row.seconds for row in prices.rows.values()}
    only = lengths.pop() if len(lengths) == 1 else None
    return float(only) if only is not None else None


def _override_micro(model: str, request: Mapping[str, Any], override: Override) -> int:
    if override.flat_micro is not None:
        return override.flat_micro
    seconds = seconds_for(model, request)
    if seconds is None or override.per_second_usd is None:
        raise PriceUnknown(model, "a per_second override needs a duration; give a flat price")
    amount = override.per_second_usd * Decimal(str(seconds)) * MICRO_PER_USD
    return int(amount.quantize(Decimal(1), ROUND_HALF_UP))


def _describe_gap(model: str, prices: ModelPrices | None, request: Mapping[str, Any]) -> str:
    if prices is None or not prices.rows:
        return "Krea publishes no price table for this model"
    values = prices.key_values(request)
    asked = ", ".join(f"{name}={json.dumps(value)}" for name, value in values.items())
    return f"no row in Krea's price table for {asked} (defaults applied)"
