"""Rebuild orchestrator/data/prices.json from the compute-unit tables in Krea's OpenAPI document.

Run it again whenever the spec snapshot changes (``make prices``)::

    python scripts/build_prices.py [--spec PATH] [--out PATH]

Krea publishes prices only as markdown tables inside each endpoint's description. This script
turns them, once, into a table that ``orchestrator.money.prices`` can match a request against:
per model, the request fields the rows are keyed on, the schema defaults of those fields, and
rows ``{when, cu, usd_micro, seconds}``. USD is CU x USD_PER_CU (krea-api.md §2), rounded half up
to whole micro-dollars with Decimal arithmetic. The spec's quirks are copied as they are: a row
Krea lists but a request cannot reach stays, a request no row covers stays unpriced.

A column this script does not know makes it fail loudly: a new pricing dimension needs a human.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from orchestrator.spec import SPEC_DATE, USD_PER_CU, Endpoint, Spec, load_spec

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "orchestrator" / "data" / "prices.json"

#: table column -> request field it is keyed on
COLUMNS = {
    "Duration": "duration",
    "Mode": "mode",
    "Resolution": "resolution",
    "Audio": "generate_audio",
    "Video Reference": "video_reference",
    "LoRA": "has_lora",
    "Character Reference": "character_reference_images",
    "Reference Images": "style_images",
}
#: columns that say nothing about the price
IGNORED = frozenset({"Average Completion Time"})
#: columns with one value in every row and no request field (imagen-3's "Model: Standard")
CONSTANT = frozenset({"Model"})
#: fields matched on whether the request carries them at all (a non-empty value), not on it
PRESENCE = frozenset({"video_reference", "character_reference_images"})
#: fields matched on how many items the request's list has (none: 0)
COUNTED = frozenset({"style_images"})
#: fields whose rows say Yes/No
BOOLEAN = frozenset({"generate_audio", "video_reference", "has_lora", "character_reference_images"})
MICRO_PER_USD = Decimal(1_000_000)


def build(spec: Spec) -> dict[str, Any]:
    """The whole prices.json document for ``spec``."""
    return {
        "generated_by": "scripts/build_prices.py",
        "spec_sha256": spec.sha256,
        "spec_date": SPEC_DATE,
        "usd_per_cu": USD_PER_CU,
        "models": {model: model_prices(spec.endpoints[model]) for model in sorted(spec.endpoints)},
    }


def model_prices(endpoint: Endpoint) -> dict[str, Any]:
    """One model's normalised table; no rows when Krea publishes none."""
    table = endpoint.price_table
    if table is None:
        return {"keys": [], "defaults": {}, "presence": [], "counted": [], "rows": []}
    unknown = set(table.columns) - set(COLUMNS) - IGNORED - CONSTANT - {"Compute Units"}
    if unknown:
        sys.exit(
            f"{endpoint.model}: unknown price column(s) {sorted(unknown)}; map them in COLUMNS"
        )
    for column in CONSTANT & set(table.columns):
        index = table.columns.index(column)
        if len({cells[index] for cells in table.rows}) > 1:
            sys.exit(f"{endpoint.model}: column {column!r} varies; map it in COLUMNS")
    keys = [COLUMNS[c] for c in table.columns if c in COLUMNS and _is_key(endpoint, COLUMNS[c])]
    rows = [
        _row(endpoint, dict(zip(table.columns, cells, strict=True)), keys) for cells in table.rows
    ]
    return {
        "keys": keys,
        "defaults": {key: _default(endpoint, key) for key in keys},
        "presence": [key for key in keys if key in PRESENCE],
        "counted": [key for key in keys if key in COUNTED],
        "rows": rows,
    }


def _is_key(endpoint: Endpoint, field: str) -> bool:
    """Duration keys the rows only when the schema lets a request choose it."""
    if field != "duration":
        return True
    schema = endpoint.request_schema.get("properties", {}).get("duration")
    return schema is not None and "const" not in schema


def _default(endpoint: Endpoint, field: str) -> Any:
    if field in PRESENCE:
        return False
    if field in COUNTED:
        return 0
    value = endpoint.default(field)
    return False if value is None and field in BOOLEAN else value


def _row(endpoint: Endpoint, cells: dict[str, str], keys: list[str]) -> dict[str, Any]:
    cu = Decimal(cells["Compute Units"].lstrip("~"))
    seconds = _seconds(cells.get("Duration", "-"))
    column = {field: col for col, field in COLUMNS.items()}
    when = {field: _cell_value(field, cells[column[field]]) for field in keys}
    if "duration" in keys and seconds is None:
        sys.exit(f"{endpoint.model}: a '-' duration row on a model whose duration is a choice")
    return {"when": when, "cu": _number(cu), "usd_micro": usd_micro(cu), "seconds": seconds}


def usd_micro(cu: Decimal) -> int:
    """CU x USD_PER_CU in micro-USD, rounded half up."""
    return int((cu * Decimal(USD_PER_CU) * MICRO_PER_USD).quantize(Decimal(1), ROUND_HALF_UP))


def _seconds(cell: str) -> int | float | None:
    text = cell.strip().removesuffix("s")
    return None if text in ("-", "") else _number(Decimal(text))


def _cell_value(field: str, cell: str) -> Any:
    if field == "duration":
        return _seconds(cell)
    if field in BOOLEAN:
        if cell not in ("Yes", "No"):
            sys.exit(f"unexpected {field} cell {cell!r} (expected Yes or No)")
        return cell == "Yes"
    if field in COUNTED:
        if not cell.isdigit():
            sys.exit(f"unexpected {field} cell {cell!r} (expected a count)")
        return int(cell)
    return cell


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def render(document: dict[str, Any]) -> str:
    """Stable JSON text, one row per line: the same spec always gives the same bytes."""
    head = {k: v for k, v in document.items() if k != "models"}
    lines = ["{", *(f" {_json(k)}: {_json(v)}," for k, v in head.items()), ' "models": {']
    for n, (model, prices) in enumerate(document["models"].items()):
        rows = prices["rows"]
        fields = ", ".join(f"{_json(k)}: {_json(v)}" for k, v in prices.items() if k != "rows")
        lines.append(f'  {_json(model)}: {{{fields}, "rows": [')
        lines.extend(
            f"   {_json(row)}{',' if i < len(rows) - 1 else ''}" for i, row in enumerate(rows)
        )
        lines.append("  ]}" + ("," if n < len(document["models"]) - 1 else ""))
    return "\n".join([*lines, " }", "}", ""])


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spec", type=Path, help="an OpenAPI JSON file (default: the packaged one)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write prices.json")
    args = parser.parse_args(argv)
    if args.spec is None:
        spec = load_spec()
    else:
        raw = args.spec.read_bytes()
        spec = Spec(json.loads(raw), hashlib.sha256(raw).hexdigest())
    args.out.write_text(render(build(spec)), encoding="utf-8")
    print(f"wrote {args.out} ({len(spec.endpoints)} models)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
