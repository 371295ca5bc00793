"""What every report format shows, as text: the headline figures, the tables, and money written out.

``reports`` (plain table, CSV, the after-run summary) and ``report_html`` (the page) render the
same figures; this module is what they share, so neither imports the other. It takes the report's
JSON document (see ``reports``) and returns strings: no ledger, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

# fmt: off
GROUP_HEADER = (
    "jobs", "billed", "in flight", "not sent", "free", "free attempts", "clips", "seconds",
    "billed $", "in flight $", "not sent $", "$/clip", "$/second",
)
# fmt: on
DAY_HEADER = ("day", "billed", "billed $", "free attempts")
ORPHAN_HEADER = ("remote id", "batch", "model", "Krea status", "price", "billed")
DUPLICATE_HEADER = (
    "remote id", "batch", "model", "Krea status when seen", "price if ours", "created at"
)  # fmt: skip
DUPLICATE_TITLE = "Possible duplicates (unattributable: another client was active)"
GROUPS = (("batch", "by_batch"), ("model", "by_model"), ("state", "by_status"))
#: The figures of GROUP_HEADER, in its order: counts, seconds, money, then the per-second rate.
_GROUP_COUNTS = ("jobs", "billed_jobs", "in_flight_jobs", "not_sent_jobs", "free_jobs",
                 "free_attempts", "clips")  # fmt: skip
_GROUP_MONEY = ("billed_micro", "in_flight_micro", "not_sent_micro", "cost_per_clip_micro")
Section = tuple[str, Sequence[str], list[tuple[str, ...]]]


def highlights(t: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures as (label, value): the table's first lines, the HTML's cards."""
    return [
        ("billed", f"{dollars(t['billed_micro'])} ({plural(t['billed_jobs'], 'job')})"),
        ("clips", f"{t['clips']} ({seconds_text(t['billed_seconds'])} of video)"),
        ("per clip", dollars(t["cost_per_clip_micro"])),
        ("per second", rate(t["cost_per_second_micro"])),
        (
            "in flight",
            f"{dollars(t['in_flight_micro'])} estimated ({plural(t['in_flight_jobs'], 'job')})",
        ),
        (
            "not sent",
            f"{dollars(t['not_sent_micro'])} estimated ({plural(t['not_sent_jobs'], 'job')} "
            "pending, waiting for inputs or held back by the budget)",
        ),
        (
            "free",
            f"{plural(t['free_jobs'], 'job')} failed, cancelled or rejected; "
            f"{plural(t['free_attempts'], 'attempt')} failed or cancelled",
        ),
        ("orphans", f"{t['orphans']} ({dollars(t['orphan_billed_micro'])} billed)"),
        *_unattributed_highlights(t),
    ]


def _unattributed_highlights(t: dict[str, Any]) -> list[tuple[str, str]]:
    """Jobs no run claims, only when there are some: they are no part of the figures above."""
    out = []
    if t["possible_duplicates"]:
        count = plural(t["possible_duplicates"], "possible duplicate")
        out.append(
            (
                "duplicates",
                f"up to {dollars(t['possible_duplicate_micro'])} if ours ({count}: another "
                "client was active; not in billed)",
            )
        )
    if t["foreign_jobs"]:
        out.append(("foreign", f"{foreign_text(t['foreign_jobs'])}; never touched, not counted"))
    return out


def foreign_text(count: int) -> str:
    """``3 jobs on the account made by another client``."""
    return f"{plural(count, 'job')} on the account made by another client"


def sections(document: dict[str, Any]) -> list[Section]:
    """Every table of the report as (title, header, rows of text)."""
    out: list[Section] = [
        (f"By {name}", (name, *GROUP_HEADER), [(g[name], *_group_cells(g)) for g in document[key]])
        for name, key in GROUPS
    ]
    days: list[tuple[str, ...]] = [
        (d["day"], str(d["billed_jobs"]), dollars(d["billed_micro"]), str(d["free_attempts"]))
        for d in document["by_day"]
    ]
    out.append(("By day (UTC)", DAY_HEADER, days))
    out.append(("Orphans (found by reconciliation)", ORPHAN_HEADER, _orphan_rows(document)))
    if document["possible_duplicates"]:  # the title says another client was active: only then
        out.append((DUPLICATE_TITLE, DUPLICATE_HEADER, _duplicate_rows(document)))
    return out


def _group_cells(g: dict[str, Any]) -> tuple[str, ...]:
    counts = [str(g[k]) for k in _GROUP_COUNTS]
    cash = [dollars(g[k]) for k in _GROUP_MONEY]
    return (*counts, seconds_text(g["billed_seconds"]), *cash, rate(g["cost_per_second_micro"]))


def _orphan_rows(document: dict[str, Any]) -> list[tuple[str, ...]]:
    return [
        (o["remote_id"], o["batch"], o["model"], str(o["remote_status"]), dollars(o["price_micro"]),
         "yes" if o["billed"] else ("in flight" if o["in_flight"] else "no"))
        for o in document["orphans"]
    ]  # fmt: skip


def _duplicate_rows(document: dict[str, Any]) -> list[tuple[str, ...]]:
    """Each possible duplicate, then the most they can cost: kept apart from billed."""
    rows = [
        (d["remote_id"], d["batch"] or "-", d["model"] or "-", d["remote_status"] or "-",
         f"free ({d['remote_status']})" if d["free"] else dollars(d["price_if_ours_micro"]),
         d["created_at"])
        for d in document["possible_duplicates"]
    ]  # fmt: skip
    total = dollars(document["totals"]["possible_duplicate_micro"])
    return [*rows, ("total", "", "", "", f"up to {total}", "")]


def seconds_text(value: float) -> str:
    return f"{value:g} s"  # 10.0 -> "10 s", 2.5 -> "2.5 s"


def usd_text(micro: int) -> str:
    """Micro-USD as an exact decimal string: 1101934 -> ``1.101934``."""
    sign, whole = ("-" if micro < 0 else ""), abs(micro)
    return f"{sign}{whole // 1_000_000}.{whole % 1_000_000:06d}"


def plural(count: int, noun: str) -> str:
    """``1 clip``, ``2 clips``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def dollars(micro: int | None, places: int = 2) -> str:
    """``$1,234.57``, rounded half up to ``places`` (``-`` for None)."""
    if micro is None:
        return "-"
    amount = (Decimal(micro) / 1_000_000).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    return f"${amount:,}"


def rate(micro: int | None) -> str:
    """A per-unit price: four places, enough for cents per second."""
    return dollars(micro, 4)
