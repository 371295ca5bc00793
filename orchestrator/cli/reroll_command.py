"""`orchestrator reroll`: a new take of every clip rejected in review, sent by an ordinary run.

Two steps, each safe to repeat. First, under the ledger's lock, every rejected clip of the batch
that has no new take yet gets one: a pending job of its own beside the first
(``review_queries``), so the rejected clip keeps its file, cost and history. Then the batch's
manifest is run with only those takes selectable: a kill at any point is resumed by running
``reroll`` again, which makes no second take of a clip that already has one and sends what is
still pending.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator import errors
from orchestrator.cli.commands import require_ledger
from orchestrator.config import Settings
from orchestrator.ledger import Batch, Ledger, LedgerLock
from orchestrator.ledger.review_queries import Reroll
from orchestrator.manifest.entries import did_you_mean
from orchestrator.money.report_sections import dollars


async def prepare_takes(settings: Settings, batch: str, *, dry_run: bool) -> tuple[Batch, str]:
    """Make the new takes of ``batch`` (none with ``dry_run``); the batch and what was done."""
    require_ledger(settings.ledger_path)  # a writable open would create an empty one
    lock = LedgerLock(settings.ledger_path)
    if not dry_run:
        lock.acquire()  # no run may sync or send this batch while its takes are added
    try:
        async with Ledger.open(settings.ledger_path, readonly=dry_run) as ledger:
            record = await ledger.batch(batch)
            if record is None:
                names = await ledger.batch_names()
                raise errors.ConfigError(
                    f"--batch: no batch {batch!r} in {settings.ledger_path}"
                    + did_you_mean(batch, names)
                    + (f" (batches: {', '.join(names)})" if names else "")
                )
            rerolls = await (ledger.rerolls_due if dry_run else ledger.add_rerolls)(batch)
            pending = len(await ledger.reroll_keys(batch))
    finally:
        lock.release()
    if not Path(record.manifest_path).exists():  # noqa: ASYNC240 (one stat, before any run)
        raise errors.ConfigError(
            f"batch {batch!r} was run from {record.manifest_path}, which is gone: "
            "the takes are sent by running that manifest"
        )
    return record, _describe(batch, rerolls, pending, dry_run)


def _describe(batch: str, rerolls: list[Reroll], pending: int, dry_run: bool) -> str:
    """What reroll did (or would do), one line per job taken again and a total."""
    lines = []
    for reroll in rerolls:
        name, froms = reroll.rejected, ", ".join(reroll.made_from)
        if reroll.reason:
            lines.append(f"  {name}: not taken again, {reroll.reason}")
        elif reroll.waits:
            source = f"the new take of {froms}" if dry_run else froms
            lines.append(f"  {name}: not sent yet, `run` makes it from {source}")
        elif dry_run:
            source = f" from the new take of {froms}" if froms else ""
            lines.append(f"  {name}: a new take{source}, about {dollars(reroll.price_micro)}")
        else:
            lines.append(f"  {name}: new take {reroll.take}" + (f", from {froms}" if froms else ""))
    made = [r for r in rerolls if not r.reason and not r.waits]
    rejected = sum(1 for r in made if not r.made_from)
    follows = len(made) - rejected
    them = "it" if rejected == 1 else "them"
    what = _clips(rejected) + (f" and {_jobs(follows)} made from {them}" if follows else "")
    cost = dollars(sum(r.price_micro for r in made))
    if dry_run:
        head = f"reroll {batch}: {what} would be taken again (about {cost})"
    elif made:
        head = f"reroll {batch}: a new take of {what} (about {cost})"
    else:
        head = f"reroll {batch}: no rejected clip without a new take (`orchestrator view` marks)"
    earlier = pending - (0 if dry_run else len(made))
    tail = [f"  and {earlier} take(s) made earlier, still to be sent"] if earlier > 0 else []
    return "\n".join([head, *lines, *tail])


def _clips(n: int) -> str:
    return f"{n} rejected clip" + ("" if n == 1 else "s")


def _jobs(n: int) -> str:
    return f"{n} job" + ("" if n == 1 else "s")


def reroll_settings(settings: Settings, record: Batch) -> Settings:
    """The run that sends the takes: the batch's own output folder, only the new takes (a
    batch `cancel` stopped is resumed: asking for takes is asking for them to be sent)."""
    return settings.with_(out_dir=Path(record.out_dir), rerolls_only=True, resume_cancelled=True)
