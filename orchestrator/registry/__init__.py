"""The account registry: what every run on this machine that shares an API key has sent.

Krea keeps no client data on a job (krea-api.md §3.3), so a run settles a lost POST by the times
of the jobs on the account. Two runs on one key, each with its own ledger, would otherwise take
each other's fresh jobs for their own lost ones, and cancel or adopt them. So every run of an
account writes here, before the remote call it describes:

* ``attempts``: each POST on the wire (``wire``), and each whose outcome is still unknown
  (``ambiguous``), with its local send and answer times and its floor. A row goes when the POST's
  job is claimed or known never created. A crashed run's rows stay: the next run on that ledger
  takes them over, and until then other runs count them as possible owners of any job they fit.
* ``claims``: the id of every job a run of the account created, and of every job a run recorded
  as a possible duplicate (a lost POST's job it could not tell apart). Reconciliation never
  takes a claimed job as a candidate.
* ``runs``: who is alive. A dead run (its process gone) blocks no one: its POSTs are no longer on
  the wire, and the last heartbeat bounds when it could have sent anything. A POST marked
  ``written`` (its body reached the socket) was sent even if its run died; one not marked may
  never have left the machine, and its lone job proves nothing while another client is active.
* ``ledgers``: since when each ledger's POSTs are registered: an intent after that with no
  attempt and no claim was never sent (the next run sends it again without reconciling).
* ``clock``: what the runs learnt of Krea's clock, so a restarted run's windows are narrow.

One POST of the account's runs is on the wire at a time on the machine (an ``flock``, the
*POST turn*, ``turn``): two runs' windows then never overlap in time. A POST is registered only
in its turn and, with company, the turn is given back only once its job is claimed, so a run
killed while waiting sent nothing, and one killed with a POST registered died in its turn,
where the next holder closes that POST's window. A run alone shares one hold of the turn among
its own overlapping POSTs.

Modules: ``account`` (a run's async handle), ``store`` (the file, on the run's registry thread),
``turn`` (the POST turn), ``processes`` (liveness, the turn's lock and file). The file is
``$XDG_STATE_HOME/orchestrator/accounts/<fingerprint>.db``, named by a one-way
fingerprint of the API base and key, never the key. Several processes write it: a rollback
journal (SQLite 3.40's WAL mode has a bug with concurrent writers), short ``BEGIN IMMEDIATE``
transactions, a busy timeout, and all work on one thread per process so the loop never blocks.
"""

from orchestrator.registry.account import AccountRegistry, fingerprint, state_dir
from orchestrator.registry.store import HEARTBEAT_S, RegisteredAttempt, Snapshot

__all__ = [
    "HEARTBEAT_S",
    "AccountRegistry",
    "RegisteredAttempt",
    "Snapshot",
    "fingerprint",
    "state_dir",
]
