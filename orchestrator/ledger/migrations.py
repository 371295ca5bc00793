"""The ledger's schema as numbered migrations, each applied in one transaction with its record.

A ledger written by an older version is upgraded in place on open; one written by a newer version is
refused (we would not know what its columns mean). ``PRAGMA user_version`` mirrors the number of the
last migration applied so ``sqlite3 ledger.db 'pragma user_version'`` tells what a file holds.

The ``events`` table is append-only and written by triggers, never by Python: every insert of a job
and every change of its ``rev`` (which each transition bumps) adds one event row in the same
statement, so no code path can change a job without leaving its history behind.
"""

from __future__ import annotations

from collections.abc import Callable

import aiosqlite

from orchestrator.clock import now_utc
from orchestrator.errors import LedgerError

M001_INITIAL = """
CREATE TABLE batches (
    name            TEXT PRIMARY KEY,
    manifest_path   TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    out_dir         TEXT NOT NULL,
    budget_micro    INTEGER,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE jobs (
    key               TEXT PRIMARY KEY,
    batch             TEXT NOT NULL REFERENCES batches(name),
    entry_id          TEXT NOT NULL,
    model             TEXT NOT NULL,
    request           TEXT NOT NULL,             -- canonical JSON of the body to POST
    state             TEXT NOT NULL,
    planned           INTEGER NOT NULL DEFAULT 1, -- 1 while the batch's latest manifest has it
    seq               INTEGER NOT NULL,          -- manifest order = submission order
    price_micro       INTEGER NOT NULL,          -- estimated price, micro-USD
    seconds           REAL,                      -- seconds of video it stands for
    output_path       TEXT,                      -- relative to the batch's out_dir
    remote_id         TEXT,
    remote_status     TEXT,
    remote_created_at TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0, -- POSTs that may have created a remote job
    result_url        TEXT,
    bytes             INTEGER,
    sha256            TEXT,
    last_error        TEXT,
    floor             TEXT,  -- newest remote created_at known when the intent was committed
    intent_at         TEXT,  -- local time the intent was committed (before the POST)
    answered_at       TEXT,  -- local time the POST's outcome became known
    completed_at      TEXT,  -- Krea's completed_at
    done_at           TEXT,
    cause             TEXT NOT NULL,             -- why the latest transition happened
    detail            TEXT,                      -- details of the latest transition
    rev               INTEGER NOT NULL DEFAULT 0, -- bumped by every transition
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE INDEX jobs_batch_state_seq ON jobs(batch, state, seq);
CREATE UNIQUE INDEX jobs_remote_id ON jobs(remote_id) WHERE remote_id IS NOT NULL;
CREATE INDEX jobs_remote_created ON jobs(remote_created_at) WHERE remote_created_at IS NOT NULL;

CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    job_key       TEXT NOT NULL,
    batch         TEXT NOT NULL,
    at            TEXT NOT NULL,
    from_state    TEXT,
    to_state      TEXT NOT NULL,
    cause         TEXT NOT NULL,
    remote_id     TEXT,
    remote_status TEXT,
    price_micro   INTEGER,
    detail        TEXT
);
CREATE INDEX events_job ON events(job_key, seq);

CREATE TRIGGER jobs_inserted AFTER INSERT ON jobs BEGIN
    INSERT INTO events (job_key, batch, at, from_state, to_state, cause, remote_id, remote_status,
                        price_micro, detail)
    VALUES (NEW.key, NEW.batch, NEW.updated_at, NULL, NEW.state, NEW.cause, NEW.remote_id,
            NEW.remote_status, NEW.price_micro, NEW.detail);
END;
CREATE TRIGGER jobs_transitioned AFTER UPDATE OF rev ON jobs BEGIN
    INSERT INTO events (job_key, batch, at, from_state, to_state, cause, remote_id, remote_status,
                        price_micro, detail)
    VALUES (NEW.key, NEW.batch, NEW.updated_at, OLD.state, NEW.state, NEW.cause, NEW.remote_id,
            NEW.remote_status, NEW.price_micro, NEW.detail);
END;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events BEGIN
    SELECT RAISE(ABORT, 'events are append-only');
END;

CREATE TABLE assets (
    sha256      TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    asset_id    TEXT,
    size_bytes  INTEGER,
    mime_type   TEXT,
    uploaded_at TEXT NOT NULL
);
"""

M002_EVENTS_BY_BATCH = """
CREATE INDEX events_batch ON events(batch, seq);
"""

M003_SYNCED_PLAN = """
-- JSON: the manifest header, output folder and planner fingerprint of the plan the batch's jobs
-- were last synced from (see orchestrator/startup.py); NULL until a sync has committed.
ALTER TABLE batches ADD COLUMN synced_plan TEXT;
"""

M004_FILE_MTIME = """
-- The modification time (ns) of a done job's file when it was verified: start-up compares it (with
-- the size) to notice a file changed since, and only then reads the file to check its sha256.
ALTER TABLE jobs ADD COLUMN file_mtime_ns INTEGER;
"""

#: The one form of every remote timestamp: fixed-width UTC with milliseconds, so text order is
#: time order (``max()``, ``>=``). Krea's answers are parsed into it (``answers.normal_utc``);
#: this rewrites what older versions stored as Krea sent it. SQLite's strftime reads ISO-8601
#: with any offset and gives UTC, rounding to the nearest millisecond as ``normal_utc`` does; a
#: value it cannot read is left as it is.
_ONE_FORM = "'%Y-%m-%dT%H:%M:%fZ'"
_WELL_FORMED = (
    "'"
    + "-".join(["[0-9]" * 4, "[0-9]" * 2, "[0-9]" * 2])
    + "T"
    + ":".join(["[0-9]" * 2, "[0-9]" * 2, "[0-9]" * 2 + "." + "[0-9]" * 3])
    + "Z'"
)
M005_ONE_TIMESTAMP_FORM = "\n".join(
    f"UPDATE jobs SET {column} = coalesce(strftime({_ONE_FORM}, {column}), {column}) "
    f"WHERE {column} IS NOT NULL AND {column} NOT GLOB {_WELL_FORMED};"
    for column in ("remote_created_at", "floor", "completed_at")
)

#: Jobs on the account that no run of this machine can claim, seen by sweeps and reconciliation:
#: ``foreign`` (in no POST's window: another client's) or ``possible_duplicate`` (one of our lost
#: POSTs may have made it, but it cannot be told apart from another client's: the entry was
#: sent again, and the job is reported, never cancelled). ``price_micro`` is what it costs if it
#: is ours (the dearest entry that could own it); foreign jobs have none.
M006_UNATTRIBUTED = """
CREATE TABLE unattributed (
    remote_id     TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('foreign', 'possible_duplicate')),
    batch         TEXT,
    model         TEXT,
    price_micro   INTEGER NOT NULL DEFAULT 0,
    remote_status TEXT,
    created_at    TEXT NOT NULL,             -- Krea's created_at
    seen_at       TEXT NOT NULL,
    note          TEXT
);
CREATE INDEX unattributed_by_kind ON unattributed (kind, batch);
"""

M007_BATCH_API_AND_CANCEL = """
-- The API base the batch's last run used (`cancel` sends its DELETEs there), and when
-- `orchestrator cancel` stopped the batch (a `run` then sends nothing until --resume-cancelled).
ALTER TABLE batches ADD COLUMN api_base TEXT;
ALTER TABLE batches ADD COLUMN cancelled_at TEXT;
"""

#: The states in which a remote job's completion is billed, as money.spend_history's
#: CURRENT_REMOTE was when migration 8 shipped (report_queries uses the table for that set only).
BILLED_STATES = ("completed", "done", "downloading", "orphan", "submitted")
_BILLED_IN = ", ".join(f"'{state}'" for state in BILLED_STATES)

M008_REPORT_SUMS = f"""
-- Each remote job's billing time (the first event that showed it completed), kept as events are
-- appended, so a report finds it by a lookup instead of sorting every event. ``ident`` is the
-- remote id, else the job's key (what report_queries matches jobs by).
CREATE TABLE billed_first (
    ident TEXT PRIMARY KEY,
    batch TEXT NOT NULL,
    at    TEXT,
    seq   INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO billed_first
    SELECT coalesce(nullif(remote_id, ''), job_key), batch, nullif(at, ''), min(seq) FROM events
    WHERE remote_status = 'completed' AND to_state IN ({_BILLED_IN}) GROUP BY 1;
CREATE TRIGGER events_billed_first AFTER INSERT ON events
WHEN NEW.remote_status = 'completed' AND NEW.to_state IN ({_BILLED_IN}) BEGIN
    INSERT OR IGNORE INTO billed_first
    VALUES (coalesce(nullif(NEW.remote_id, ''), NEW.job_key), NEW.batch, nullif(NEW.at, ''),
            NEW.seq);
END;
-- What the report reads of each job, in an index: its sums scan it instead of every (wide) row.
CREATE INDEX jobs_report ON jobs (batch, model, state, planned, remote_status, seconds,
                                  attempts, price_micro, remote_id, key, completed_at,
                                  updated_at);
"""

#: A job's billing time, from its own row once migration 10 keeps ``billed_at`` there: the first
#: event that showed its remote job completed (``billed_first``), else Krea's ``completed_at``,
#: else ``updated_at``. Its UTC day and, for a time in another form, the time itself, as
#: report_queries groups them. The migration indexes these very expressions and report_queries
#: spells its queries with them (SQLite uses an index on an expression only for that expression).
BILLING_TIME = "coalesce(billed_at, nullif(completed_at, ''), nullif(updated_at, ''))"
BILLING_DAY = f"CASE WHEN {BILLING_TIME} GLOB {_WELL_FORMED} THEN substr({BILLING_TIME}, 1, 10) END"
BILLING_OTHER = f"CASE WHEN {BILLING_TIME} GLOB {_WELL_FORMED} THEN NULL ELSE {BILLING_TIME} END"
#: The jobs the billing indexes hold: the billed ones, as accounting.bucket says (a partial
#: index serves a query that says so literally). A job in flight is not in them, so the status
#: changes Krea reports while it runs (most of a run's transitions) leave the indexes alone.
BILLED_ROWS = (
    "(state IN ('completed', 'downloading', 'done') "
    "OR (state IN ('orphan', 'submitted') AND remote_status = 'completed'))"
)
#: The events the free-attempts index holds: Krea failed or cancelled a remote job.
FREE_STATES = ("cancelled", "failed")
FREE_EVENTS = "to_state IN ({})".format(", ".join(f"'{state}'" for state in FREE_STATES))
#: A job's time in ``billed_first``, by its remote id, else its key (``{0}``: the row's alias).
_BILLED_FIRST_OF = (
    "(SELECT at FROM billed_first WHERE ident = coalesce(nullif({0}remote_id, ''), {0}key))"
)

#: The review loop (`orchestrator view`, `reroll`, `export --picks`, issue 15).
M009_REVIEW = """
-- A reviewer's verdict on one job's clip: picked (part of the deliverable set) or rejected (to be
-- taken again by `orchestrator reroll`). `view` writes it, in short transactions, beside a run
-- that may be writing the jobs; no run writes this table. No row: not marked.
CREATE TABLE marks (
    job_key TEXT PRIMARY KEY,
    batch   TEXT NOT NULL,
    mark    TEXT NOT NULL CHECK (mark IN ('pick', 'reject')),
    at      TEXT NOT NULL
);
CREATE INDEX marks_batch ON marks (batch, mark);
-- A new take `orchestrator reroll` made of a rejected clip: the key of the job it takes again.
-- Such a job is planned as long as the job it re-takes is (a manifest edit drops both).
ALTER TABLE jobs ADD COLUMN reroll_of TEXT;
CREATE INDEX jobs_reroll_of ON jobs (reroll_of) WHERE reroll_of IS NOT NULL;
"""

#: The report's billing times and free attempts read from indexes, not joins (issue 14).
M010_REPORT_INDEXES = f"""
-- Each job's time in billed_first (by its remote id, else its key), kept on its row as either
-- side changes, so a report orders and groups billed jobs by index instead of joining them.
ALTER TABLE jobs ADD COLUMN billed_at TEXT;
UPDATE jobs SET billed_at = {_BILLED_FIRST_OF.format("jobs.")}
WHERE {_BILLED_FIRST_OF.format("jobs.")} IS NOT NULL;
CREATE TRIGGER billed_first_job AFTER INSERT ON billed_first BEGIN
    UPDATE jobs SET billed_at = NEW.at
    WHERE (remote_id = NEW.ident AND remote_id != '')
       OR (key = NEW.ident AND coalesce(remote_id, '') = '');
END;
CREATE TRIGGER jobs_billed_at_inserted AFTER INSERT ON jobs
WHEN NEW.billed_at IS NOT {_BILLED_FIRST_OF.format("NEW.")} BEGIN
    UPDATE jobs SET billed_at = {_BILLED_FIRST_OF.format("NEW.")} WHERE key = NEW.key;
END;
CREATE TRIGGER jobs_billed_at_moved AFTER UPDATE OF remote_id, key ON jobs
WHEN NEW.billed_at IS NOT {_BILLED_FIRST_OF.format("NEW.")} BEGIN
    UPDATE jobs SET billed_at = {_BILLED_FIRST_OF.format("NEW.")} WHERE key = NEW.key;
END;
-- Billed days: the jobs in billed states by kind and day, in GROUP BY order.
CREATE INDEX jobs_billed_days ON jobs (state, remote_status, planned, {BILLING_DAY},
                                       {BILLING_OTHER}, batch, price_micro, billed_at,
                                       completed_at, updated_at) WHERE {BILLED_ROWS};
-- The spend chart: the same jobs in billing order.
CREATE INDEX jobs_billed_order ON jobs ({BILLING_TIME} IS NULL, {BILLING_TIME}, key, state,
                                        remote_status, planned, batch, price_micro, billed_at,
                                        completed_at, updated_at) WHERE {BILLED_ROWS};
-- Free attempts: the few events into failed or cancelled, without scanning every event.
CREATE INDEX events_free ON events (to_state, job_key, at, batch) WHERE {FREE_EVENTS};
"""

#: The states in which a job's result is known (``jobs.HAS_RESULT``) as they were when
#: migration 11 shipped; its trigger names them literally.
RESULT_STATES = ("completed", "downloading", "done")
_RESULT_IN = ", ".join(f"'{state}'" for state in RESULT_STATES)

#: Chained jobs (issue 16): a job that takes other jobs' results waits until they all have one.
M011_INPUTS = f"""
-- job_key takes the result of from_key (a job of its batch) as an input ({{from: ID}}). Written
-- with the job by the sync of its plan; a job with inputs is planned 'waiting'.
CREATE TABLE inputs (
    job_key  TEXT NOT NULL,
    from_key TEXT NOT NULL,
    PRIMARY KEY (job_key, from_key)
) WITHOUT ROWID;
CREATE INDEX inputs_from ON inputs (from_key);
-- The URL each input went as, by field path (JSON), written with the intent: what export shows.
ALTER TABLE jobs ADD COLUMN inputs_sent TEXT;
-- The statement that gives a job its result makes pending every waiting job that takes it and
-- now has all its inputs' results: no code path can forget it, no crash can come between. The
-- rev bump has jobs_transitioned write the event (waiting -> pending). Not counted in the
-- outer statement's changes(), so a transition's compare-and-set check is unchanged.
CREATE TRIGGER jobs_inputs_ready AFTER UPDATE OF state ON jobs
WHEN NEW.state IN ({_RESULT_IN}) AND OLD.state NOT IN ({_RESULT_IN}) BEGIN
    UPDATE jobs SET state = 'pending', cause = 'inputs ready', detail = NULL,
                    updated_at = NEW.updated_at, rev = rev + 1
    WHERE state = 'waiting' AND key IN (SELECT job_key FROM inputs WHERE from_key = NEW.key)
      AND NOT EXISTS (SELECT 1 FROM inputs AS i WHERE i.job_key = jobs.key AND NOT EXISTS (
          SELECT 1 FROM jobs AS u WHERE u.key = i.from_key AND u.state IN ({_RESULT_IN})));
END;
"""

#: (version, name, SQL script). Append only: never edit a migration that has shipped.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "initial schema", M001_INITIAL),
    (2, "index events by batch (per-batch reports)", M002_EVENTS_BY_BATCH),
    (3, "record the plan a batch was synced from (fast resume)", M003_SYNCED_PLAN),
    (4, "the verified file's modification time (changed-file check)", M004_FILE_MTIME),
    (5, "remote timestamps in one fixed-width UTC form", M005_ONE_TIMESTAMP_FORM),
    (6, "jobs on the account no run can claim", M006_UNATTRIBUTED),
    (7, "the batch's API base, and whether it was cancelled", M007_BATCH_API_AND_CANCEL),
    (8, "billing times and report sums without reading every row", M008_REPORT_SUMS),
    (9, "review marks, and the new takes rerolls make", M009_REVIEW),
    (10, "billing times on the jobs, and the report's indexes", M010_REPORT_INDEXES),
    (11, "the jobs whose results a job takes, and its wait for them", M011_INPUTS),
]

Progress = Callable[[int, str], None]


async def migrate(db: aiosqlite.Connection) -> int:
    """Bring the schema up to date; returns the version now in place."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    rows = await db.execute_fetchall("SELECT max(version) FROM migrations")
    current = next(iter(rows))[0] or 0
    newest = MIGRATIONS[-1][0]
    if current > newest:
        raise LedgerError(
            f"this ledger has schema version {current}, newer than this orchestrator knows "
            f"({newest}); upgrade orchestrator"
        )
    for version, name, script in MIGRATIONS:
        if version > current:
            await _apply(db, version, name, script)
    return newest


async def _apply(db: aiosqlite.Connection, version: int, name: str, script: str) -> None:
    statements = [s.strip() for s in _split(script) if s.strip()]
    await db.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements:
            await db.execute(statement)
        await db.execute(
            "INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (version, name, now_utc()),
        )
        await db.execute(f"PRAGMA user_version = {int(version)}")
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


def _split(script: str) -> list[str]:
    """Split a script into statements, keeping each trigger's BEGIN ... END; body whole."""
    statements: list[str] = []
    current: list[str] = []
    in_trigger = False
    for line in script.splitlines():
        stripped = line.split("--", 1)[0].rstrip()
        current.append(stripped)
        if stripped.lstrip().upper().startswith("CREATE TRIGGER"):
            in_trigger = True
        if stripped.endswith(";") and (not in_trigger or stripped.strip().upper() == "END;"):
            statements.append("\n".join(current))
            current, in_trigger = [], False
    statements.append("\n".join(current))
    return statements
