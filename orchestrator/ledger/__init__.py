"""The SQLite ledger: every job's state, remote id and file, durable before the next remote call.

This package is the only place with SQL: ``store`` (the Ledger), ``commits`` (group commit),
``records`` (rows <-> values), ``plan_queries`` (syncing a plan, set-based start-up queries),
``chain_queries`` (jobs that take others' results: edges, waiting, blocked),
``report_queries`` (bulk reads for reports), ``review_queries`` (marks and rerolls),
``takes`` (which jobs a reroll takes again, down a chain), ``migrations`` (the schema),
``lock`` (one writer).
Why it is built this way:

* **WAL + synchronous=FULL**, set on every connection: a commit survives a crash *and* power loss,
  which matters because a lost intent row could mean paying twice (RELIABILITY P1.1).
* **One writer**: ``run`` holds an exclusive ``flock`` on ``<ledger>.lock`` (:class:`LedgerLock`);
  ``status`` and ``report`` open the file read-only and may run beside it (P1.6). The one write
  beside a run is a reviewer's mark (``view``), to a table no run touches (``review_queries``).
* **One statement per transition**: :meth:`Ledger.transition` is a compare-and-set ``UPDATE``
  checked against ``jobs.TRANSITIONS``; a trigger appends the event row in the same statement, so
  a transition cannot happen without its history, and it is durable when the call returns.
* **Group commit** (``commits``): transitions asked for at the same moment by different tasks
  share one transaction and one fsync; rounds commit in the order asked, so a transition queued
  without waiting (:meth:`Ledger.transition_soon`) is durable once any later write has returned.
* Multi-statement units use ``BEGIN IMMEDIATE`` under an ``asyncio.Lock``, and never await anything
  but the database inside (P1.3-P1.5): no HTTP can happen inside a transaction.
"""

from orchestrator.ledger.chain_queries import Blocked
from orchestrator.ledger.lock import LedgerLock
from orchestrator.ledger.records import Batch, Event, Move, PlanSync, Unattributed
from orchestrator.ledger.store import Ledger

__all__ = ["Batch", "Blocked", "Event", "Ledger", "LedgerLock", "Move", "PlanSync", "Unattributed"]
