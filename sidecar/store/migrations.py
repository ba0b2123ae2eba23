"""Versioned schema migrations, each recorded in the same transaction that applies it.

The schema covers the whole ARCHITECTURE.md: later components fill tables that exist from v1.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from sidecar.errors import StoreError


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial schema",
        """
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        -- The follower's position: the last height whose events are all in chain_inbox.
        CREATE TABLE cursor (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            chain_id TEXT NOT NULL,
            height INTEGER NOT NULL,
            block_time TEXT,
            updated_at REAL NOT NULL
        );
        -- Every support_event of committed blocks, exactly once (event_id is the dedupe key).
        CREATE TABLE chain_inbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE,
            height INTEGER NOT NULL,
            position INTEGER NOT NULL,
            event_type TEXT NOT NULL,
            ticket_id TEXT,
            sequence INTEGER,
            sender TEXT,
            payload_json TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'processed', 'poison')),
            error TEXT,
            received_at REAL NOT NULL,
            processed_at REAL
        );
        CREATE INDEX chain_inbox_pending ON chain_inbox (state, id);
        CREATE INDEX chain_inbox_ticket ON chain_inbox (ticket_id, id);
        -- The local mirror of on-chain tickets.
        CREATE TABLE tickets (
            ticket_id TEXT PRIMARY KEY,
            ticket_number TEXT,
            submitter TEXT,
            category TEXT,
            priority TEXT,
            status TEXT,
            assigned_agent TEXT,
            recipients_json TEXT NOT NULL DEFAULT '[]',
            related_entity_json TEXT,
            payload_hash TEXT,
            content_state TEXT NOT NULL DEFAULT 'none'
                CHECK (content_state IN ('none', 'decrypted', 'placeholder')),
            content_reason TEXT,
            response_count INTEGER NOT NULL DEFAULT 0,
            last_sequence INTEGER NOT NULL DEFAULT 0,
            last_height INTEGER NOT NULL DEFAULT 0,
            chain_updated_at INTEGER,
            archived INTEGER NOT NULL DEFAULT 0,
            purged INTEGER NOT NULL DEFAULT 0,
            updated_at REAL NOT NULL
        );
        -- One external ticket per (ticket, desk): the idempotency anchor of outbound creates.
        CREATE TABLE external_refs (
            ticket_id TEXT NOT NULL,
            desk TEXT NOT NULL,
            external_id TEXT NOT NULL,
            external_key TEXT,
            external_url TEXT,
            state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'closed', 'removed')),
            registered_on_chain INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (ticket_id, desk),
            UNIQUE (desk, external_id)
        );
        -- Per-field sync state: the base (last value both sides agreed on) for conflict detection.
        CREATE TABLE field_state (
            ticket_id TEXT NOT NULL,
            desk TEXT NOT NULL,
            field TEXT NOT NULL,
            base_value TEXT,
            chain_value TEXT,
            desk_value TEXT,
            chain_changed_at REAL,
            desk_changed_at REAL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (ticket_id, desk, field)
        );
        -- The durable job queue: retry state is data.
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            dedupe_key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            desk TEXT NOT NULL,
            ticket_id TEXT,
            inbox_id INTEGER REFERENCES chain_inbox (id),
            payload_json TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'running', 'done', 'dead', 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_run_at REAL NOT NULL,
            last_error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            finished_at REAL
        );
        CREATE INDEX jobs_due ON jobs (state, next_run_at);
        CREATE INDEX jobs_ticket ON jobs (ticket_id, desk, id);
        -- Chain transactions the signer owns, persisted before signing and before broadcasting.
        CREATE TABLE tx_intents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            dedupe_key TEXT NOT NULL UNIQUE,
            msg_type TEXT NOT NULL,
            ticket_id TEXT,
            msg_bytes BLOB NOT NULL,
            state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'signed', 'broadcast', 'included', 'failed', 'dead')),
            batch_id INTEGER REFERENCES tx_batches (id),
            attempts INTEGER NOT NULL DEFAULT 0,
            code INTEGER,
            log TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX tx_intents_state ON tx_intents (state, id);
        CREATE TABLE tx_batches (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            tx_hash TEXT UNIQUE,
            tx_bytes BLOB,
            account_sequence INTEGER,
            timeout_height INTEGER,
            state TEXT NOT NULL DEFAULT 'signed'
                CHECK (state IN ('signed', 'broadcast', 'included', 'failed', 'expired')),
            height INTEGER,
            code INTEGER,
            log TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        -- Fields changed on both sides since their base.
        CREATE TABLE conflicts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ticket_id TEXT NOT NULL,
            desk TEXT NOT NULL,
            field TEXT NOT NULL,
            base_value TEXT,
            chain_value TEXT,
            desk_value TEXT,
            strategy TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
            resolution TEXT,
            detected_at REAL NOT NULL,
            resolved_at REAL,
            resolved_by TEXT
        );
        CREATE INDEX conflicts_open ON conflicts (state, id);
        -- Webhook deliveries: replay protection and the inbound work list.
        CREATE TABLE webhook_deliveries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            desk TEXT NOT NULL,
            delivery_id TEXT NOT NULL,
            event_type TEXT,
            external_id TEXT,
            body_sha256 TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'accepted'
                CHECK (state IN ('accepted', 'processed', 'ignored', 'failed')),
            reason TEXT,
            received_at REAL NOT NULL,
            processed_at REAL,
            UNIQUE (desk, delivery_id)
        );
        -- Append-only audit log; each row carries the hash of the previous one.
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            event_type TEXT NOT NULL,
            ticket_id TEXT,
            desk TEXT,
            direction TEXT,
            actor TEXT,
            status TEXT,
            error TEXT,
            block_height INTEGER,
            tx_hash TEXT,
            details_json TEXT NOT NULL DEFAULT '{}',
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE INDEX audit_ts ON audit (ts);
        """,
    ),
    Migration(
        2,
        "tx intents by ticket",
        """
        -- The signer holds a ticket's next Msg back while an earlier one of the same ticket is in flight.
        CREATE INDEX tx_intents_ticket ON tx_intents (ticket_id, state, id);
        """,
    ),
    Migration(
        3,
        "create marks and unverified chain refs",
        """
        -- A desk create about to be sent, committed before the POST: a retry while the desk's search
        -- may still miss the new ticket searches again and waits instead of creating a second one.
        CREATE TABLE create_marks (
            ticket_id TEXT NOT NULL,
            desk TEXT NOT NULL,
            sent_at REAL NOT NULL,
            sends INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (ticket_id, desk)
        );
        -- 0: a ref registered on chain by someone else, not yet checked against the desk ticket's claim.
        ALTER TABLE external_refs ADD COLUMN verified INTEGER NOT NULL DEFAULT 1;
        -- Refs the sidecar recorded from a desk answer carry the key; chain-only refs do not.
        UPDATE external_refs SET verified = 0 WHERE external_key IS NULL
        """,
    ),
    Migration(
        4,
        "webhook deliveries by body",
        """
        -- A signed body replayed under a new delivery id is a duplicate: looked up by its hash per desk.
        -- Not unique: rows recorded before this version may repeat a body.
        CREATE INDEX webhook_deliveries_body ON webhook_deliveries (desk, body_sha256);
        """,
    ),
    Migration(
        5,
        "inbound sync",
        """
        -- Desk issues inbound sync must re-read (webhook hints, sweep hits, operators): one row per issue.
        CREATE TABLE inbound_queue (
            desk TEXT NOT NULL,
            external_id TEXT NOT NULL,
            reason TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_run_at REAL NOT NULL,
            last_error TEXT,
            hints INTEGER NOT NULL DEFAULT 1,
            queued_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (desk, external_id)
        );
        CREATE INDEX inbound_queue_due ON inbound_queue (state, next_run_at);
        -- Every desk comment inbound sync has decided on, once: sent to the chain, or why not.
        CREATE TABLE inbound_comments (
            desk TEXT NOT NULL,
            comment_id TEXT NOT NULL,
            ticket_id TEXT NOT NULL,
            external_id TEXT NOT NULL,
            outcome TEXT NOT NULL,
            parts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            PRIMARY KEY (desk, comment_id)
        );
        -- A response the sidecar sealed from a desk comment, by payload hash: when its event comes back
        -- from the chain it is not posted to the desk it came from.
        CREATE TABLE inbound_origins (
            payload_hash TEXT PRIMARY KEY,
            desk TEXT NOT NULL,
            ticket_id TEXT NOT NULL
        );
        -- Intents made from desk changes: which desk, which change, when the desk made it (for latency).
        CREATE TABLE inbound_intents (
            intent_id INTEGER PRIMARY KEY REFERENCES tx_intents (id),
            desk TEXT NOT NULL,
            ticket_id TEXT NOT NULL,
            item TEXT NOT NULL,
            desk_changed_at REAL,
            reported INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX inbound_intents_unreported ON inbound_intents (reported, intent_id);
        ALTER TABLE field_state ADD COLUMN synced_from TEXT;
        ALTER TABLE field_state ADD COLUMN desk_change_id TEXT;
        ALTER TABLE conflicts ADD COLUMN rule TEXT;
        ALTER TABLE conflicts ADD COLUMN winner TEXT;
        CREATE INDEX conflicts_ticket ON conflicts (ticket_id, desk, field, state)
        """,
    ),
    Migration(
        6,
        "operator pauses",
        """
        -- A direction an operator paused, for one desk or ('' ) every desk; kept across restarts.
        CREATE TABLE pauses (
            direction TEXT NOT NULL CHECK (direction IN ('outbound', 'inbound')),
            desk TEXT NOT NULL,
            since REAL NOT NULL,
            paused_by TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (direction, desk)
        );
        """,
    ),
    Migration(
        7,
        "attachments",
        """
        -- Every attachment copied (or withheld) between the chain's artifact store and a desk, once.
        -- Outbound: one row per (desk, ticket, plaintext sha256), so the same file is uploaded once per issue.
        -- Inbound: one row per desk attachment id. Reasons are codes (too_large, type_not_allowed, ...),
        -- never file names or content.
        CREATE TABLE attachments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            direction TEXT NOT NULL CHECK (direction IN ('outbound', 'inbound')),
            desk TEXT NOT NULL,
            ticket_id TEXT NOT NULL,
            sha256 TEXT,
            size INTEGER,
            content_type TEXT,
            ref TEXT,
            desk_attachment_id TEXT,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'withheld', 'failed')),
            reason TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE UNIQUE INDEX attachments_outbound ON attachments (desk, ticket_id, sha256)
            WHERE direction = 'outbound';
        CREATE UNIQUE INDEX attachments_desk_id ON attachments (desk, desk_attachment_id)
            WHERE desk_attachment_id IS NOT NULL;
        CREATE INDEX attachments_state ON attachments (direction, state);
        CREATE INDEX attachments_ref ON attachments (ref);
        """,
    ),
    Migration(
        8,
        "inbound intents by ticket",
        """
        -- Every re-read and outbound job asks which of a ticket's inbound changes are still on their way.
        CREATE INDEX inbound_intents_ticket ON inbound_intents (ticket_id, desk);
        """,
    ),
    Migration(
        9,
        "desk reads",
        """
        -- The desk's own change time of each issue as inbound's last completed re-read found it: a sweep hit
        -- showing no later change has nothing new to read (sidecar/sync/sweep.py).
        CREATE TABLE desk_reads (
            desk TEXT NOT NULL,
            external_id TEXT NOT NULL,
            desk_updated_at REAL NOT NULL,
            read_at REAL NOT NULL,
            PRIMARY KEY (desk, external_id)
        );
        """,
    ),
    Migration(
        10,
        "jobs by desk and state",
        """
        -- A worker claims its desk's oldest due jobs: in id order from this index it stops after its batch,
        -- where jobs_due (state, next_run_at) reads and sorts every pending job (sidecar/store/jobs.py).
        CREATE INDEX jobs_claim ON jobs (desk, state, id);
        """,
    ),
    Migration(
        11,
        "indexes the soak found missing",
        """
        -- Each served a query of the sync loops by scanning a table that grows for as long as the sidecar runs
        -- (found by an hour's soak: at 20 minutes 95,000 deliveries, 48,000 intents, 26,000 comments).
        -- Inbound's re-read asks which of one ticket's comments it already decided (sidecar/store/inbound.py).
        CREATE INDEX inbound_comments_ticket ON inbound_comments (desk, ticket_id);
        -- Inbound takes the deliveries still waiting, oldest first: few, among every delivery kept.
        CREATE INDEX webhook_deliveries_waiting ON webhook_deliveries (id) WHERE state = 'accepted';
        -- The signer marks the intents of an included tx (sidecar/store/intents.py).
        CREATE INDEX tx_intents_batch ON tx_intents (batch_id);
        """,
    ),
    Migration(
        12,
        "figures that do not grow with history",
        """
        -- Two figures read every few seconds walked every row the sidecar ever finished (an hour's soak: its CPU
        -- rose from 53% to 66% of a core at a steady load). Health's last_sync, the newest finished job: this
        -- index holds the done jobs by their finish time, so the newest is one step away.
        CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state = 'done';
        -- The intents per state (metrics, read at every signer step): counted as they change, by triggers.
        CREATE TABLE tx_intent_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO tx_intent_counts (state, n) SELECT state, COUNT(*) FROM tx_intents GROUP BY state;
        CREATE TRIGGER tx_intents_count_insert AFTER INSERT ON tx_intents BEGIN
            INSERT INTO tx_intent_counts (state, n) VALUES (NEW.state, 1) ON CONFLICT (state) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER tx_intents_count_delete AFTER DELETE ON tx_intents BEGIN
            UPDATE tx_intent_counts SET n = n - 1 WHERE state = OLD.state;
        END;
        CREATE TRIGGER tx_intents_count_state AFTER UPDATE OF state ON tx_intents WHEN NEW.state IS NOT OLD.state
        BEGIN
            UPDATE tx_intent_counts SET n = n - 1 WHERE state = OLD.state;
            INSERT INTO tx_intent_counts (state, n) VALUES (NEW.state, 1) ON CONFLICT (state) DO UPDATE SET n = n + 1;
        END;
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone()
    if row is None:
        return 0
    (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(version)


def migrate(conn: sqlite3.Connection, path: str) -> list[int]:
    """Apply pending migrations (each in its own BEGIN IMMEDIATE transaction); return the versions applied.

    Refuses a database written by a newer sidecar: its schema may mean things this code cannot know.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    found = current_version(conn)
    if found > LATEST_VERSION:
        raise StoreError(
            f"database {path} has schema version {found}, newer than this sidecar knows ({LATEST_VERSION}); "
            "run the newer sidecar or restore a backup that matches this version"
        )
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version <= found:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(migration.version)
    return applied


def _statements(sql: str) -> list[str]:
    """Split a migration into statements (executescript would commit on its own). A piece ending in ";" is
    joined to the next until SQLite calls it complete: a trigger's body holds statements of its own."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    statements: list[str] = []
    pending = ""
    for piece in "\n".join(lines).split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip().removesuffix(";").strip())
            pending = ""
    if pending.strip(" \n;"):
        statements.append(pending.strip().removesuffix(";").strip())
    return statements
