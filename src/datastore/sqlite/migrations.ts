/**
 * The SQLite schema as ordered steps; never edit a released step, append a new one.
 * Tables are STRICT (types enforced) and keyed WITHOUT ROWID where the key is text, so an
 * entry page read in id order walks one b-tree. An entry's lists are stored twice: as
 * JSON in its own row, so a page is one query with no per-row child reads (an agent's
 * sync of 100k entries), and as child rows indexed for matching (selectors, federations),
 * kept in step by the same transaction. Times are epoch milliseconds; flags are 0/1.
 */
import type { Migration } from '../sql/migrate.js';

/** Every SQLite schema step, in order. */
export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'entries, entry events, attested nodes, join tokens, bundles, ca journals',
    statements: [
      `CREATE TABLE registered_entries (
        id TEXT PRIMARY KEY NOT NULL,
        spiffe_id TEXT NOT NULL,
        parent_id TEXT NOT NULL,
        selectors_hash TEXT NOT NULL,
        selector_count INTEGER NOT NULL,
        selectors_json TEXT NOT NULL,
        dns_names_json TEXT NOT NULL,
        federates_with_json TEXT NOT NULL,
        x509_svid_ttl INTEGER NOT NULL,
        jwt_svid_ttl INTEGER NOT NULL,
        admin INTEGER NOT NULL,
        downstream INTEGER NOT NULL,
        hint TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        revision INTEGER NOT NULL,
        created_at INTEGER NOT NULL
      ) WITHOUT ROWID, STRICT`,
      // The identity of an entry: a second one with the same triple is a duplicate.
      'CREATE UNIQUE INDEX registered_entries_identity ON registered_entries (spiffe_id, parent_id, selectors_hash)',
      'CREATE INDEX registered_entries_parent ON registered_entries (parent_id, id)',
      'CREATE INDEX registered_entries_selectors_hash ON registered_entries (selectors_hash)',
      `CREATE TABLE entry_selectors (
        entry_id TEXT NOT NULL REFERENCES registered_entries (id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (entry_id, type, value)
      ) WITHOUT ROWID, STRICT`,
      'CREATE INDEX entry_selectors_match ON entry_selectors (type, value)',
      `CREATE TABLE entry_federates_with (
        entry_id TEXT NOT NULL REFERENCES registered_entries (id) ON DELETE CASCADE,
        trust_domain_id TEXT NOT NULL,
        PRIMARY KEY (entry_id, trust_domain_id)
      ) WITHOUT ROWID, STRICT`,
      'CREATE INDEX entry_federates_with_td ON entry_federates_with (trust_domain_id)',
      // AUTOINCREMENT: event ids are never reused, even after the newest rows are deleted.
      `CREATE TABLE entry_events (
        event_id INTEGER PRIMARY KEY AUTOINCREMENT,
        entry_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
        at INTEGER NOT NULL
      ) STRICT`,
      'CREATE INDEX entry_events_at ON entry_events (at)',
      `CREATE TABLE attested_nodes (
        spiffe_id TEXT PRIMARY KEY NOT NULL,
        attestation_type TEXT NOT NULL,
        cert_serial TEXT NOT NULL,
        cert_not_after INTEGER NOT NULL,
        new_cert_serial TEXT NOT NULL,
        new_cert_not_after INTEGER NOT NULL,
        banned INTEGER NOT NULL,
        can_reattest INTEGER NOT NULL,
        selectors_json TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID, STRICT`,
      'CREATE INDEX attested_nodes_expiry ON attested_nodes (cert_not_after)',
      `CREATE TABLE node_selectors (
        spiffe_id TEXT NOT NULL REFERENCES attested_nodes (spiffe_id) ON DELETE CASCADE,
        type TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (spiffe_id, type, value)
      ) WITHOUT ROWID, STRICT`,
      'CREATE INDEX node_selectors_match ON node_selectors (type, value)',
      `CREATE TABLE join_tokens (
        token_hash TEXT PRIMARY KEY NOT NULL,
        token_id TEXT NOT NULL UNIQUE,
        expires_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL
      ) WITHOUT ROWID, STRICT`,
      'CREATE INDEX join_tokens_expiry ON join_tokens (expires_at)',
      `CREATE TABLE bundles (
        trust_domain_id TEXT PRIMARY KEY NOT NULL,
        document TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID, STRICT`,
      `CREATE TABLE ca_journals (
        trust_domain_id TEXT PRIMARY KEY NOT NULL,
        journal BLOB NOT NULL,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID, STRICT`,
    ],
  },
  {
    version: 2,
    description: 'audit trail: records written with the change they record, and the shippers\' cursors',
    statements: [
      // AUTOINCREMENT: a seq is never reused, even after the newest records are pruned.
      `CREATE TABLE audit_records (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        audit_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        record TEXT NOT NULL
      ) STRICT`,
      `CREATE TABLE audit_cursors (
        name TEXT PRIMARY KEY NOT NULL,
        seq INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) WITHOUT ROWID, STRICT`,
    ],
  },
  {
    version: 3,
    // a token is spent in the transaction that records the agent it admitted, and remembers the
    // agent key, so an attestation whose answer was lost can be finished by the same key (issue 20)
    description: 'join tokens remember the agent key that spent them',
    statements: [`ALTER TABLE join_tokens ADD COLUMN spent_by TEXT NOT NULL DEFAULT ''`],
  },
  {
    version: 4,
    description: 'one CA journal per server (several servers share one trust domain); the old journal becomes the legacy owner ""',
    statements: [
      `CREATE TABLE server_ca_journals (
        trust_domain_id TEXT NOT NULL,
        server_id TEXT NOT NULL,
        journal BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (trust_domain_id, server_id)
      ) WITHOUT ROWID, STRICT`,
      `INSERT INTO server_ca_journals (trust_domain_id, server_id, journal, updated_at) SELECT trust_domain_id, '', journal, updated_at FROM ca_journals`,
      'DROP TABLE ca_journals',
    ],
  },
  {
    version: 5,
    description: 'federation relationships: the peer bundle endpoints, the refresher state and its fetch lease',
    statements: [
      `CREATE TABLE federation_relationships (
        trust_domain_id TEXT PRIMARY KEY NOT NULL,
        bundle_endpoint_url TEXT NOT NULL,
        profile TEXT NOT NULL,
        endpoint_spiffe_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        last_attempt_at INTEGER NOT NULL,
        last_success_at INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        last_sequence INTEGER NOT NULL,
        consecutive_failures INTEGER NOT NULL,
        next_refresh_at INTEGER NOT NULL,
        lease_holder TEXT NOT NULL,
        lease_until INTEGER NOT NULL
      ) WITHOUT ROWID, STRICT`,
    ],
  },
];
