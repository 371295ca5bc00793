"""The P5.1 checker: after any history of faults and kills, ledger, disk and Krea's bill agree.

It reads only ground truth (the simulator's jobs and bill, the ledger file, the output folder)
and returns the problems it found, so a soak run can report all of them at once:

1. every remote job Krea created is claimed by exactly one ledger row (an entry or an orphan),
   across every ledger of the account when several batches ran side by side, or recorded as a
   possible duplicate (a lost POST's job reconciliation could not tell apart; counted);
2. each entry has at most one billed job, and a billed job is the row's own, never an orphan;
3. the ledger's cost equals the simulator's bill, job by job and in total;
4. every billed entry has exactly one verified file (size and sha256 of what Krea served), and
   the output folder holds nothing else: no stray MP4, no temp file;
5. nothing is left in flight, and SQLite's integrity check passes.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.jobs import TERMINAL, JobRecord, JobState
from orchestrator.simulator import media_sha256_for
from orchestrator.transfer import verified_on_disk

S = JobState


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


@dataclass(frozen=True)
class Part:
    """One batch's ledger rows, output folder and ledger file."""

    rows: list[JobRecord]
    out_dir: Path
    ledger_path: Path
    doubts: frozenset[str] = frozenset()  #: job ids the ledger records as possible duplicates


def check_history(sim_jobs: list[dict[str, Any]], billed_micro: int, *parts: Part) -> Verdict:
    """Every invariant of the module docstring; an empty ``problems`` list means they all hold."""
    verdict = Verdict()
    rows = [row for part in parts for row in part.rows]
    entries = [r for r in rows if r.state is not S.ORPHAN]
    orphans = [r for r in rows if r.state is S.ORPHAN]
    by_id = {job["job_id"]: job for job in sim_jobs}
    doubts = frozenset().union(*(part.doubts for part in parts))
    _claims(verdict, by_id, entries, orphans, doubts)
    _bill(verdict, by_id, billed_micro - _doubts_billed(verdict, by_id, doubts), entries, orphans)
    for part in parts:
        _disk(verdict, by_id, [r for r in part.rows if r.state is not S.ORPHAN], part.out_dir)
        _ledger(verdict, part.rows, part.ledger_path)
    states = Counter(str(r.state) for r in entries)
    verdict.figures |= {
        "entries": len(entries),
        "states": dict(sorted(states.items())),
        "remote_jobs": len(sim_jobs),
        "orphans": len(orphans),
        "billed_micro": billed_micro,
    }
    return verdict


def _doubts_billed(verdict: Verdict, by_id: dict[str, Any], doubts: frozenset[str]) -> int:
    """What Krea billed for the possible duplicates (reported apart, never as the entries')."""
    billed = [by_id[i]["charged_micro"] for i in doubts if by_id.get(i, {}).get("charged_micro")]
    verdict.figures["possible_duplicates"] = len(doubts)
    verdict.figures["possible_duplicates_billed"] = len(billed)
    verdict.figures["possible_duplicates_billed_micro"] = sum(billed)
    return sum(billed)


def _claims(
    verdict: Verdict,
    by_id: dict[str, Any],
    entries: list[JobRecord],
    orphans: list[JobRecord],
    doubts: frozenset[str],
) -> None:
    claims = Counter(r.remote_id for r in [*entries, *orphans] if r.remote_id)
    twice_judged = sorted(doubts & set(claims))
    verdict.check(not twice_judged, f"possible duplicates an entry also claims: {twice_judged[:5]}")
    unclaimed = sorted(set(by_id) - set(claims) - doubts)
    verdict.check(not unclaimed, f"{len(unclaimed)} remote jobs no row claims: {unclaimed[:5]}")
    twice = sorted(i for i, n in claims.items() if n > 1)
    verdict.check(not twice, f"remote jobs claimed by two rows: {twice[:5]}")
    unknown = sorted(set(claims) - set(by_id))
    verdict.check(not unknown, f"ledger rows name jobs Krea never created: {unknown[:5]}")


def _bill(
    verdict: Verdict,
    by_id: dict[str, Any],
    billed_micro: int,
    entries: list[JobRecord],
    orphans: list[JobRecord],
) -> None:
    charged = {i: job["charged_micro"] for i, job in by_id.items() if job["charged_micro"]}
    ledger_cost = 0
    for row in [*entries, *orphans]:
        if row.remote_status == "completed":
            ledger_cost += row.price_micro
            got = charged.get(row.remote_id or "")
            verdict.check(
                got == row.price_micro, f"{row.entry_id}: ledger {row.price_micro}, billed {got}"
            )
    verdict.check(ledger_cost == billed_micro, f"ledger cost {ledger_cost} != bill {billed_micro}")
    billed_orphans = [r.remote_id for r in orphans if r.remote_id in charged]
    verdict.check(not billed_orphans, f"orphans were billed (paid twice): {billed_orphans[:5]}")
    verdict.figures["billed_orphans"] = len(billed_orphans)
    verdict.figures["ledger_cost_micro"] = ledger_cost


def _disk(verdict: Verdict, by_id: dict[str, Any], entries: list[JobRecord], out: Path) -> None:
    done = [r for r in entries if r.state is S.DONE]
    for row in done:
        path = out / (row.output_path or "")
        whole = verified_on_disk(path, row.bytes, row.sha256, full=True)
        verdict.check(whole, f"{row.entry_id}: the file is missing or differs from the ledger")
        served = media_sha256_for(row.remote_id or "")
        verdict.check(row.sha256 == served, f"{row.entry_id}: not the bytes Krea served")
    for row in entries:
        billed = by_id.get(row.remote_id or "", {}).get("charged_micro")
        verdict.check(not billed or row.state is S.DONE, f"{row.entry_id}: billed, not downloaded")
    expected = {(out / (r.output_path or "")).resolve() for r in done}
    on_disk = {p.resolve() for p in out.rglob("*") if p.is_file()}
    strays = sorted(str(p) for p in on_disk - expected)
    verdict.check(not strays, f"files no done job owns (temp or stray): {strays[:5]}")
    verdict.figures["files"] = verdict.figures.get("files", 0) + len(on_disk)  # every part's


def _ledger(verdict: Verdict, rows: list[JobRecord], ledger_path: Path) -> None:
    open_rows = [r.entry_id for r in rows if r.state not in TERMINAL]
    verdict.check(not open_rows, f"{len(open_rows)} rows still in flight: {open_rows[:5]}")
    with sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    verdict.check(integrity == "ok", f"integrity_check: {integrity}")
