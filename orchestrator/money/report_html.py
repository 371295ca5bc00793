"""`report --format html`: one self-contained page (inline CSS and SVG; no script, no network).

Every string that comes from the ledger passes through ``html.escape``: ids and prompts are user
input. The charts are drawn here as plain SVG rather than with a charting library, so the page
opens anywhere, offline, forever.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from html import escape as esc
from typing import Any

from orchestrator.clock import parse_utc
from orchestrator.money.report_sections import dollars, highlights, sections
from orchestrator.money.spend_history import MAX_STEPS, Charge, chart_points

__all__ = ["MAX_STEPS", "report_html", "spend_chart"]

CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:960px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}.meta{color:#666}table{border-collapse:collapse}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #ddd;padding:.6em}
.card b{display:block;font-size:1.3em}svg text{font:11px system-ui,sans-serif;fill:#444}
th,td{padding:.25em .7em;border-bottom:1px solid #eee;text-align:left}td+td{text-align:right}"""


def report_html(document: dict[str, Any], points: Sequence[Charge]) -> str:
    """The report as one self-contained HTML page: no script, no network.

    ``points`` are the charges the spend chart draws (``spend_history.chart_points``).
    """
    cards = "".join(
        f"<div class=card>{esc(k)}<b>{esc(v)}</b></div>" for k, v in highlights(document["totals"])
    )
    body = [
        f"<h1>Spend report: {esc(document['batch'] or 'all batches')}</h1>",
        f"<p class=meta>{esc(document['ledger'])}, generated {esc(document['generated_at'])}</p>",
        f"<div class=cards>{cards}</div>",
        "<h2>Cumulative spend (at billing time, UTC)</h2>",
        _chart(points),
        "<h2>Spend by model</h2>",
        _model_chart(document["by_model"]),
    ]
    for title, header, rows in sections(document):
        body += [f"<h2>{esc(title)}</h2>", _html_table(header, rows)]
    head = "<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>Spend report</title>"
    return "\n".join([f"{head}<style>{CSS}</style></head>\n<body>", *body, "</body></html>\n"])


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return "<p class=meta>none</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    cells = ("".join(f"<td>{html.escape(c)}</td>" for c in r) for r in rows)
    return f"<table><tr>{head}</tr>" + "".join(f"<tr>{c}</tr>" for c in cells) + "</table>"


def spend_chart(spent: Sequence[Charge]) -> str:
    """Cumulative billed USD over billing time, as an inline SVG step line."""
    return _chart(chart_points(spent))  # a large batch: one step per `every` charges


def _chart(drawn: Sequence[Charge], width: int = 720, height: int = 240) -> str:
    """The step line through ``drawn`` (charges in billing order, with running totals)."""
    timed = [(parse_utc(c.at).timestamp(), c) for c in drawn if c.at]
    if not timed:
        return "<p class=meta>Nothing billed yet.</p>"
    start, span = timed[0][0], (timed[-1][0] - timed[0][0]) or 1.0
    top, left, right, pad = timed[-1][1].cumulative_micro or 1, 70, width - 20, 20

    def xy(moment: float, micro: int) -> str:
        x = left + (right - left) * (moment - start) / span
        return f"{x:.1f},{height - pad - (height - 2 * pad) * micro / top:.1f}"

    points, before = [xy(start, 0)], 0
    for at, c in timed:  # a step up at each moment money was billed
        points += [xy(at, before), xy(at, c.cumulative_micro)]
        before = c.cumulative_micro
    first, last = html.escape(timed[0][1].at or ""), html.escape(timed[-1][1].at or "")
    content = (
        f'<path d="M{left},{pad}V{height - pad}H{right}" fill="none" stroke="#999"/>'
        f'<polyline points="{" ".join(points)}" fill="none" stroke="#2a6fdb" stroke-width="2"/>'
        f'<text x="{left - 6}" y="{pad + 4}" text-anchor="end">{dollars(top)}</text>'
        f'<text x="{left - 6}" y="{height - pad}" text-anchor="end">$0</text>'
        f'<text x="{left}" y="{height - 4}">{first}</text>'
        f'<text x="{right}" y="{height - 4}" text-anchor="end">{last}</text>'
    )
    return _svg(width, height, "cumulative spend", content)


def _model_chart(models: Sequence[dict[str, Any]], width: int = 720) -> str:
    """Billed USD per model, as an inline SVG bar chart."""
    billed = [m for m in models if m["billed_micro"]]
    if not billed:
        return "<p class=meta>Nothing billed yet.</p>"
    top, bar, label_w = max(m["billed_micro"] for m in billed), 22, 220
    parts = []
    for i, m in enumerate(billed):
        y, w = 6 + i * (bar + 6), (width - label_w - 90) * m["billed_micro"] / top
        name = html.escape(m["model"])
        parts += [
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{name}</text>',
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar}" fill="#2a6fdb"/>',
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{dollars(m["billed_micro"])}</text>',
        ]
    return _svg(width, 12 + len(billed) * (bar + 6), "spend by model", "".join(parts))


def _svg(width: int, height: int, title: str, content: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img"><title>{title}</title>{content}</svg>'
    )
