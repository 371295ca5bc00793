"""The view's HTML: the batches page, a batch's gallery shell and a job's page.

Every string from the ledger passes through ``html.escape`` here (ids, prompts and Krea's
messages are user input, and a prompt may well be ``<script>``); the script fills the gallery
with ``textContent`` only. Pages are plain server-rendered HTML that read well without the
script; ``view.js`` adds live numbers, the grid, playback and the review keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape as esc
from typing import Any

from orchestrator.spec import is_image_model
from orchestrator.view.gallery import MARK_FILTERS
from orchestrator.view.summary import STATES, cells, duration, usd

#: The figures under each batch: (cell, label).
FIGURES = (
    ("billed", "billed"),
    ("in_flight", "in flight"),
    ("not_sent", "not sent"),
    ("rate", "clips / min"),
    ("eta", "ETA"),
    ("last_activity", "last activity"),
)
SORT_LABELS = (
    ("manifest", "manifest order"),
    ("recent", "recent activity"),
    ("price", "price"),
    ("state", "state"),
)


def layout(title: str, body: str, *, page: str, ledger: str, data: str = "") -> str:
    """The frame every page shares."""
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)} · orchestrator</title>"
        '<link rel=stylesheet href="/static/view.css"><script src="/static/view.js" defer></script>'
        f"</head>\n<body data-page={page}{data}><header class=top>"
        '<a class=brand href="/">orchestrator <b>view</b></a>'
        f"<span class=ledger title=ledger>{esc(ledger)}</span></header>\n"
        f"<main>{body}</main></body></html>\n"
    )


def batches_page(lines: list[dict[str, Any]], ledger: str) -> str:
    """``/``: one card per batch; ``view.js`` keeps the numbers live."""
    cards = "".join(batch_card(line) for line in lines)
    body = "<h1>Batches</h1>" + (cards or "<p class=muted>The ledger has no batches yet.</p>")
    return layout("Batches", body, page="batches", ledger=ledger)


def batch_card(line: dict[str, Any], *, link: bool = True) -> str:
    """A batch's states (a bar and counts) and figures; each number is a ``data-field``."""
    name, text = esc(line["batch"]), cells(line)
    total = max(1, line["jobs"])
    bar = "".join(
        f'<span class="seg s-{state}" data-seg="{state}" '
        f'style="flex-grow:{line["states"].get(state, 0) / total:.4f}"></span>'
        for state in STATES
    )
    states = "".join(
        f'<div class="st s-{state}"><dt>{state}</dt>'
        f'<dd data-field="state.{state}">{esc(text[f"state.{state}"])}</dd></div>'
        for state in STATES
    )
    figures = "".join(
        f'<div><dt>{esc(label)}</dt><dd data-field="{field}">{esc(text[field])}</dd></div>'
        for field, label in FIGURES
    )
    title = f'<a href="/batches/{esc(line["batch"])}">{name}</a>' if link else name
    return (
        f'<section class=batch data-batch="{name}"><h2>{title} '
        f"<small><span data-field=jobs>{esc(text['jobs'])}</span> jobs</small></h2>"
        f"<div class=bar>{bar}</div><dl class=states>{states}</dl>"
        f"<dl class=figures>{figures}</dl></section>"
    )


def gallery_page(
    line: dict[str, Any], models: list[str], counts: dict[str, int], reroll: dict[str, Any],
    ledger: str,
) -> str:  # fmt: skip
    """``/batches/{name}``: the batch's line, the toolbar, and the empty grid the script fills."""
    name = line["batch"]
    body = (
        f'<nav class=crumbs><a href="/">Batches</a> / <b>{esc(name)}</b></nav>'
        + batch_card(line, link=False)
        + f'<details class=spend><summary>Spend charts and report</summary><iframe title="spend '
        f'report" data-src="/batches/{esc(name)}/report"></iframe></details>'
        + _toolbar(models)
        + _review_bar(counts, reroll)
        + "<div id=grid class=grid role=list></div><p id=more class=muted></p>"
    )
    data = f' data-batch="{esc(name)}"'
    return layout(name, body, page="gallery", ledger=ledger, data=data)


def _toolbar(models: list[str]) -> str:
    def select(name: str, label: str, options: list[tuple[str, str]]) -> str:
        shown = "".join(f'<option value="{esc(v)}">{esc(t)}</option>' for v, t in options)
        return f"<label>{label} <select name={name}>{shown}</select></label>"

    marks = [("pick", "picked"), ("reject", "rejected"), ("none", "unmarked")]
    assert tuple(v for v, _ in marks) == MARK_FILTERS
    return (
        "<form id=filters class=toolbar>"
        + select("state", "State", [("", "all"), *((s, s) for s in STATES)])
        + select("model", "Model", [("", "all"), *((m, m) for m in models)])
        + select("mark", "Mark", [("", "any"), *marks])
        + '<label class=search>Search <input name=q type=search placeholder="prompt or id"></label>'
        + select("sort", "Sort", list(SORT_LABELS))
        + "</form>"
    )


def _review_bar(counts: dict[str, int], reroll: dict[str, Any]) -> str:
    action = (
        "<button id=reroll type=button>Reroll rejected</button>"
        if reroll["enabled"]
        else f"<span class=muted>to reroll: <code>{esc(reroll['command'])}</code></span>"
    )
    return (
        f"<div class=review><span id=mark-counts><b data-count=pick>{counts['pick']}</b> picked"
        f" · <b data-count=reject>{counts['reject']}</b> rejected</span>{action}"
        "<span class=keys>← → ↑ ↓ move · <kbd>p</kbd> pick · <kbd>x</kbd> reject · "
        "<kbd>Enter</kbd> play</span></div><pre id=reroll-status hidden></pre>"
    )


def job_page(
    job: dict[str, Any],
    events: list[Any],
    takes: list[dict[str, Any]],
    ledger: str,
    inputs: Sequence[dict[str, Any]] = (),
    blocked: str | None = None,
) -> str:
    """``/jobs/{key}``: the clip, its prompt and request, every event, cost, file and sha256;
    the jobs whose results it takes (``inputs``), and why it is ``blocked`` if it is."""
    key, batch = esc(job["key"]), esc(job["batch"])
    request = json.loads(job["request"] or "{}")
    prompt = request.get("prompt", "") if isinstance(request, dict) else ""
    shown = f"{job['state']} (blocked)" if blocked else str(job["state"])
    media = (
        f'<video controls preload=metadata src="/clips/{key}" poster="/posters/{key}"></video>'
        if job["state"] == "done"
        else f'<div class="placeholder s-{esc(job["state"])}">{esc(shown)}</div>'
    )
    if job["state"] == "done" and is_image_model(str(job["model"])):
        media = f'<img src="/clips/{key}" alt="{esc(job["entry_id"])}">'  # a still
    body = (
        f'<nav class=crumbs><a href="/">Batches</a> / <a href="/batches/{batch}">{batch}</a> / '
        f"<b>{esc(job['entry_id'])}</b></nav>"
        f'<article class=job data-key="{key}" data-mark="{esc(job["mark"] or "")}">'
        f"<div class=media>{media}{_mark_buttons()}</div><div class=facts>"
        f"<h1>{esc(job['entry_id'])}</h1><p class=prompt>{esc(prompt)}</p>"
        f"<dl class=fields>{_fields(job, blocked)}</dl>{_inputs(inputs)}"
        f"{_takes(takes, job['key'])}</div></article>"
        f"<h2>Request</h2><pre class=request>{esc(json.dumps(request, indent=2))}</pre>"
        f"<h2>History</h2>{_events(events)}"
    )
    return layout(str(job["entry_id"]), body, page="job", ledger=ledger)


def _mark_buttons() -> str:
    return (
        "<div class=marks><button type=button data-set=pick>Pick <kbd>p</kbd></button>"
        "<button type=button data-set=reject>Reject <kbd>x</kbd></button></div>"
    )


def _fields(job: dict[str, Any], blocked: str | None = None) -> str:
    reason = f"blocked: {blocked}" if blocked else job["last_error"] or job["detail"] or "-"
    rows = [
        ("state", job["state"]),
        ("mark", job["mark"] or "-"),
        ("model", job["model"]),
        ("length", duration(job["seconds"]) if job["seconds"] else "-"),
        ("price", usd(job["price_micro"])),
        ("attempts", job["attempts"]),
        ("Krea job", job["remote_id"] or "-"),
        ("Krea status", job["remote_status"] or "-"),
        ("reason", reason),
        ("file", f"{job['out_dir']}/{job['output_path']}" if job["output_path"] else "-"),
        ("bytes", job["bytes"] if job["bytes"] is not None else "-"),
        ("sha256", job["sha256"] or "-"),
        ("retakes", job["reroll_of"] or "-"),
        ("sent", job["intent_at"] or "-"),
        ("completed", job["completed_at"] or "-"),
        ("verified", job["done_at"] or "-"),
        ("key", job["key"]),
    ]
    return "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(str(v))}</dd></div>" for k, v in rows)


def _inputs(inputs: Sequence[dict[str, Any]]) -> str:
    """Links to the jobs whose results this one takes (``{from: ID}``), each in its state."""
    if not inputs:
        return ""
    links = "".join(
        f'<a class="take s-{esc(i["state"])}" href="/jobs/{esc(i["key"])}">'
        f"{esc(i['entry_id'])} · {esc(i['state'])}</a>"
        for i in inputs
    )
    return f"<h2>Inputs</h2><div class=takes>{links}</div>"


def _takes(takes: list[dict[str, Any]], key: str) -> str:
    if len(takes) < 2:
        return ""
    links = "".join(
        f'<a class="take s-{esc(t["state"])}{" current" if t["key"] == key else ""}" '
        f'href="/jobs/{esc(t["key"])}">{esc(t["entry_id"])}'
        f"{' · ' + esc(t['mark']) if t['mark'] else ''}</a>"
        for t in takes
    )
    return f"<h2>Takes</h2><div class=takes>{links}</div>"


def _events(events: list[Any]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("#", "at", "from", "to", "cause", "Krea", "detail"))
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{esc(str(v)) if v is not None else ''}</td>"
            for v in (e.seq, e.at, e.from_state, e.to_state, e.cause, e.remote_status, e.detail)
        )
        + "</tr>"
        for e in events
    )
    return f"<table class=events><tr>{head}</tr>{rows}</table>"
