"""Generated manifests in, ledger facts out.

Manifests follow ``jobs.yaml.example``: one batch, ``kling/kling-2.5`` for 5 seconds, and jobs
that differ only by prompt (so the bench measures the pipeline, not schema validation of varied
requests). The ledger is read with the standard ``sqlite3`` module in read-only mode: the bench
checks the orchestrator's results without going through the orchestrator's own code.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

MODEL = "kling/kling-2.5"
DURATION = 5


def write_manifest(folder: Path, jobs: int, batch: str) -> Path:
    """A manifest of ``jobs`` jobs named ``clip000000``…, written as ``<batch>.yaml``."""
    path = folder / f"{batch}.yaml"
    with path.open("w") as out:
        out.write(f"batch: {batch}\ndefaults:\n  model: {MODEL}\n  duration: {DURATION}\njobs:\n")
        for index in range(jobs):
            out.write(f"  - id: clip{index:06d}\n    prompt: scene {index}, slow pan at dusk\n")
    return path


def request_body(index: int) -> dict[str, object]:
    """The body the orchestrator sends for job ``index`` of a generated manifest."""
    return {"prompt": f"scene {index}, slow pan at dusk", "duration": DURATION}


def ensure_dir(folder: Path) -> Path:
    """``folder``, created with its parents if needed."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _connect(ledger: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)


def done_rows(ledger: Path) -> list[tuple[str, str]]:
    """(remote_id, done_at) of every job with a verified file."""
    with _connect(ledger) as db:
        rows = db.execute(
            "SELECT remote_id, done_at FROM jobs WHERE state = 'done' AND remote_id IS NOT NULL"
        ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def noticed_rows(ledger: Path) -> list[tuple[str, str]]:
    """(remote_id, first moment the ledger recorded it completed): when a sweep noticed it."""
    with _connect(ledger) as db:
        rows = db.execute(
            "SELECT remote_id, min(at) FROM events WHERE to_state = 'completed' "
            "AND remote_id IS NOT NULL GROUP BY remote_id"
        ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


def state_counts(ledger: Path) -> dict[str, int]:
    """Jobs per state."""
    with _connect(ledger) as db:
        rows = db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
    return {str(state): int(count) for state, count in rows}


def download_window(ledger: Path) -> tuple[str, str, int] | None:
    """(first 'downloading' event, last 'done' event, bytes of done files), ISO wall times."""
    with _connect(ledger) as db:
        first = db.execute("SELECT min(at) FROM events WHERE to_state = 'downloading'").fetchone()
        last = db.execute("SELECT max(at) FROM events WHERE to_state = 'done'").fetchone()
        size = db.execute("SELECT sum(bytes) FROM jobs WHERE state = 'done'").fetchone()
    if not (first and first[0] and last and last[0] and size and size[0]):
        return None
    return str(first[0]), str(last[0]), int(size[0])


def result_urls(ledger: Path) -> list[str]:
    """The media URLs of the downloaded jobs (for the plain-loop comparison)."""
    with _connect(ledger) as db:
        rows = db.execute(
            "SELECT result_url FROM jobs WHERE state = 'done' ORDER BY seq"
        ).fetchall()
    return [str(r[0]) for r in rows if r[0]]
