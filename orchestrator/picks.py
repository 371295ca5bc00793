"""The deliverable set: a batch's picked clips linked into a folder, with their list.

``orchestrator export --batch B --picks --to DIR`` ends the review loop: what the reviewer picked
(``marks``, issue 15) is put in one folder to hand over. Why it is built this way:

* **Links, not copies.** Each clip is hard-linked: 300 clips of 30 MB cost no space and no time.
  Where a link cannot be made (DIR on another filesystem, or one without links) the clip is
  copied, to a temp file renamed into place, so no half file is ever under a clip's name.
* **Only what the ledger vouches for.** A pick is delivered when its job is ``done`` and its
  file has the size and sha256 the ledger recorded, read in full (it is what a client gets, and
  a changed modification time is no proof). Any other pick is reported, one line each, and left
  out; the export still delivers the rest, and exits 1 (:data:`~orchestrator.errors.
  EXIT_JOBS_FAILED`: not everything asked for is there).
* **Paths kept.** A clip goes to ``DIR/<its output path>``, the path relative to the batch's
  out_dir, which the manifest keeps unique: no two picks collide, and DIR mirrors the output
  folder.
* **Checked before anything changes.** Every target is checked first. A file already there
  with the same content is fine (exporting again does nothing new); a different one stops the
  export, naming it, with nothing linked or written (exit 2).
* **The list is written whole.** ``DIR/picks.csv`` (id, prompt, model, params, price, file,
  sha256) goes to a temp file, then ``os.replace``: a reader sees the old list or the new one.
  It is the export's own file and is replaced each time; nothing in DIR is ever deleted.

The file work blocks (links, copies, hashing), so it runs in one worker thread.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import EXIT_JOBS_FAILED, EXIT_OK, InputError
from orchestrator.jobs import JobState
from orchestrator.ledger import Ledger
from orchestrator.ledger.review_queries import Picked
from orchestrator.money.report_sections import usd_text
from orchestrator.transfer import sha256_of, verified_on_disk

#: The list of the deliverable set, in DIR.
LIST_NAME = "picks.csv"
COLUMNS = ("id", "prompt", "model", "params", "price", "file", "sha256")
#: ``click.echo``'s shape, for the command's lines (this module does not import click).
Echo = Callable[..., object]


@dataclass(frozen=True)
class Delivery:
    """One pick to deliver: its row, where its clip is, and where it goes."""

    pick: Picked
    source: Path
    target: Path
    present: bool  #: the same file is already at the target


@dataclass
class Exported:
    """What an export of picks did."""

    folder: Path
    linked: int = 0
    copied: int = 0
    present: int = 0  #: already in the folder (an earlier export)
    left_out: list[str] = field(default_factory=list)  #: one line per pick not delivered

    @property
    def delivered(self) -> int:
        return self.linked + self.copied + self.present

    @property
    def exit_code(self) -> int:
        return EXIT_JOBS_FAILED if self.left_out else EXIT_OK

    def summary(self, batch: str) -> str:
        """One line for people: how many clips are where, and how they got there."""
        return (
            f"{self.delivered} picked clip{'' if self.delivered == 1 else 's'} of batch {batch!r} "
            f"in {self.folder} ({self.linked} linked, {self.copied} copied, {self.present} "
            f"already there), listed in {self.folder / LIST_NAME}"
            + (f"; {len(self.left_out)} left out" if self.left_out else "")
        )


async def export_picks(ledger: Ledger, batch: str, folder: Path) -> Exported:
    """Put ``batch``'s verified picks into ``folder`` with their list; see the module docstring.

    Raises InputError, changing nothing, when the batch is unknown or a target holds another
    file.
    """
    record = await ledger.batch(batch)
    if record is None:
        raise InputError(f"no batch {batch!r} in {ledger.path}")
    picks = await ledger.picked(batch)
    return await asyncio.to_thread(deliver, picks, Path(record.out_dir), folder)


async def export_picks_at(ledger_path: Path, batch: str, folder: Path, echo: Echo) -> int:
    """`orchestrator export --picks`: export, say what was left out (stderr) and what was done;
    the exit code."""
    async with Ledger.open(ledger_path, readonly=True) as ledger:
        done = await export_picks(ledger, batch, folder)
    for line in done.left_out:
        echo(line, err=True)
    echo(done.summary(batch))
    return done.exit_code


def deliver(picks: list[Picked], out_dir: Path, folder: Path) -> Exported:
    """The file work of :func:`export_picks` (blocks): check all, then link, then list."""
    done = Exported(folder)
    deliveries = []
    for pick in picks:
        why = _not_deliverable(pick, out_dir)
        if why:
            done.left_out.append(f"left out {pick.entry_id}: {why}")
        else:
            deliveries.append(_planned(pick, out_dir, folder))
    _refuse_conflicts(deliveries, folder)
    for delivery in deliveries:
        _place(delivery, done)
    _write_atomically(folder / LIST_NAME, picks_csv(d.pick for d in deliveries))
    return done


def _not_deliverable(pick: Picked, out_dir: Path) -> str:
    """Why ``pick`` cannot be delivered ("" when it can)."""
    if pick.state != JobState.DONE:
        return f"it is {pick.state}, not a clip on disk"
    if not pick.output_path:
        return "the ledger records no file for it"
    source = out_dir / pick.output_path
    if not verified_on_disk(source, pick.bytes, pick.sha256, full=True):
        return f"{source} is missing or not the file the ledger recorded (size and sha256)"
    return ""


def _planned(pick: Picked, out_dir: Path, folder: Path) -> Delivery:
    """Where the pick goes, and whether it is there already."""
    relative = pick.output_path or ""
    source, target = out_dir / relative, folder / relative
    return Delivery(pick, source, target, _same_file(source, target, pick))


def _same_file(source: Path, target: Path, pick: Picked) -> bool:
    """Whether ``target`` already holds the pick's clip (a link to it, or the same bytes)."""
    if not target.is_file():
        return False
    if os.path.samefile(source, target):
        return True
    return target.stat().st_size == pick.bytes and sha256_of(target) == pick.sha256


def _refuse_conflicts(deliveries: list[Delivery], folder: Path) -> None:
    """InputError naming every target that holds something else, or leads out of the folder."""
    root = folder.resolve()
    problems = [
        f"{d.target} is already there and is not {d.pick.entry_id}'s clip"
        for d in deliveries
        if not d.present and os.path.lexists(d.target)
    ]
    problems += [
        f"{d.target} leads outside {folder} (a symbolic link?)"
        for d in deliveries
        if not d.target.resolve().is_relative_to(root)
    ]
    problems += [f"{p} is a file, not a folder" for p in _files_in_the_way(deliveries, folder)]
    if folder.exists() and not folder.is_dir():
        problems.insert(0, f"{folder} is a file, not a folder")
    if problems:
        lines = "\n".join(f"  {problem}" for problem in problems)
        raise InputError(f"nothing was exported, to keep what {folder} holds:\n{lines}")


def _files_in_the_way(deliveries: list[Delivery], folder: Path) -> list[Path]:
    """Files (not folders) where a target's folders would have to be made."""
    ancestors = {a for d in deliveries for a in d.target.parents if a.is_relative_to(folder)}
    return sorted(a for a in ancestors if a != folder and a.exists() and not a.is_dir())


def _place(delivery: Delivery, done: Exported) -> None:
    """Link (or copy) one clip to its target, counting how."""
    if delivery.present:
        done.present += 1
        return
    delivery.target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(delivery.source, delivery.target)
    except FileExistsError:  # made since the check: never replace what someone else wrote
        raise InputError(f"{delivery.target} appeared during the export; run it again") from None
    except OSError:  # another filesystem (EXDEV), or one without hard links: copy instead
        _copy_atomically(delivery.source, delivery.target)
        done.copied += 1
        return
    done.linked += 1


def picks_csv(picks: Iterable[Picked]) -> str:
    """The list of the deliverable set, one row per pick."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(_row(pick) for pick in picks)
    return out.getvalue()


def _row(pick: Picked) -> tuple[str, ...]:
    """One pick as the list shows it: params are the request but its prompt, as JSON."""
    request = json.loads(pick.request)
    prompt = request.pop("prompt", "") if isinstance(request, dict) else ""
    params = json.dumps(request, sort_keys=True, ensure_ascii=False)
    file = Path(pick.output_path or "").as_posix()
    return (pick.entry_id, str(prompt), pick.model, params, usd_text(pick.price_micro), file,
            pick.sha256 or "")  # fmt: skip


def _write_atomically(path: Path, text: str) -> None:
    """``path`` holds ``text`` whole, or what it held before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` through a temp file beside it: never a half clip."""
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(handle)
    try:
        shutil.copy2(source, temp)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
