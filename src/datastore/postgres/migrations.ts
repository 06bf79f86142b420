/**
 * The PostgreSQL schema as ordered steps; never edit a released step, append a new one.
 * The same tables and columns as the SQLite schema (src/datastore/sqlite/migrations.ts), so
 * the neutral layer's SQL runs unchanged: lists as JSON text in the row plus indexed child
 * rows, times as epoch milliseconds (BIGINT), flags as 0/1. Text keys use the "C" collation
 * so ordering and page tokens compare bytes, as SQLite does, whatever the database locale.
 * Entry event IDs come from an identity column: never reused, even after rollbacks, which
 * leave gaps (readers must not expect consecutive IDs).
 */
import type { Migration } from '../sql/migrate.js';

/** Every PostgreSQL schema step, in order. */
export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'entries, entry events, attested nodes, join tokens, bundles, ca journals',
    statements: [
      `CREATE TABLE registered_entries (
        id TEXT COLLATE "C" PRIMARY KEY,
        spiffe_id TEXT COLLATE "C" NOT NULL,
        parent_id TEXT COLLATE "C" NOT NULL,
        selectors_hash TEXT COLLATE "C" NOT NULL,
        selector_count BIGINT NOT NULL,
        selectors_json TEXT NOT NULL,
        dns_names_json TEXT NOT NULL,
        federates_with_json TEXT NOT NULL,
        x509_svid_ttl BIGINT NOT NULL,
        jwt_svid_ttl BIGINT NOT NULL,
        admin SMALLINT NOT NULL CHECK (admin IN (0, 1)),
        downstream SMALLINT NOT NULL CHECK (downstream IN (0, 1)),
        hint TEXT COLLATE "C" NOT NULL,
        expires_at BIGINT NOT NULL,
        revision BIGINT NOT NULL,
        created_at BIGINT NOT NULL
      )`,
      // The identity of an entry: a second one with the same triple is a duplicate.
      'CREATE UNIQUE INDEX registered_entries_identity ON registered_entries (spiffe_id, parent_id, selectors_hash)',
      'CREATE INDEX registered_entries_parent ON registered_entries (parent_id, id)',
      'CREATE INDEX registered_entries_selectors_hash ON registered_entries (selectors_hash)',
      `CREATE TABLE entry_selectors (
        entry_id TEXT COLLATE "C" NOT NULL REFERENCES registered_entries (id) ON DELETE CASCADE,
        type TEXT COLLATE "C" NOT NULL,
        value TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (entry_id, type, value)
      )`,
      'CREATE INDEX entry_selectors_match ON entry_selectors (type, value)',
      `CREATE TABLE entry_federates_with (
        entry_id TEXT COLLATE "C" NOT NULL REFERENCES registered_entries (id) ON DELETE CASCADE,
        trust_domain_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (entry_id, trust_domain_id)
      )`,
      'CREATE INDEX entry_federates_with_td ON entry_federates_with (trust_domain_id)',
      `CREATE TABLE entry_events (
        event_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        entry_id TEXT COLLATE "C" NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('created', 'updated', 'deleted')),
        at BIGINT NOT NULL
      )`,
      'CREATE INDEX entry_events_at ON entry_events (at)',
      `CREATE TABLE attested_nodes (
        spiffe_id TEXT COLLATE "C" PRIMARY KEY,
        attestation_type TEXT COLLATE "C" NOT NULL,
        cert_serial TEXT COLLATE "C" NOT NULL,
        cert_not_after BIGINT NOT NULL,
        new_cert_serial TEXT COLLATE "C" NOT NULL,
        new_cert_not_after BIGINT NOT NULL,
        banned SMALLINT NOT NULL CHECK (banned IN (0, 1)),
        can_reattest SMALLINT NOT NULL CHECK (can_reattest IN (0, 1)),
        selectors_json TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      'CREATE INDEX attested_nodes_expiry ON attested_nodes (cert_not_after)',
      `CREATE TABLE node_selectors (
        spiffe_id TEXT COLLATE "C" NOT NULL REFERENCES attested_nodes (spiffe_id) ON DELETE CASCADE,
        type TEXT COLLATE "C" NOT NULL,
        value TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (spiffe_id, type, value)
      )`,
      'CREATE INDEX node_selectors_match ON node_selectors (type, value)',
      `CREATE TABLE join_tokens (
        token_hash TEXT COLLATE "C" PRIMARY KEY,
        token_id TEXT COLLATE "C" NOT NULL UNIQUE,
        expires_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL
      )`,
      'CREATE INDEX join_tokens_expiry ON join_tokens (expires_at)',
      `CREATE TABLE bundles (
        trust_domain_id TEXT COLLATE "C" PRIMARY KEY,
        document TEXT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
      `CREATE TABLE ca_journals (
        trust_domain_id TEXT COLLATE "C" PRIMARY KEY,
        journal BYTEA NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
    ],
  },
  {
    version: 2,
    description: 'audit trail: records written with the change they record, and the shippers\' cursors',
    statements: [
      // Identity values are never reused; write transactions are serialised by the write lock, so seq order is commit order.
      `CREATE TABLE audit_records (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        audit_id TEXT COLLATE "C" NOT NULL,
        at BIGINT NOT NULL,
        record TEXT NOT NULL
      )`,
      `CREATE TABLE audit_cursors (
        name TEXT COLLATE "C" PRIMARY KEY,
        seq BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
      )`,
    ],
  },
  {
    version: 3,
    // a token is spent in the transaction that records the agent it admitted, and remembers the
    // agent key, so an attestation whose answer was lost can be finished by the same key (issue 20)
    description: 'join tokens remember the agent key that spent them',
    statements: [`ALTER TABLE join_tokens ADD COLUMN spent_by TEXT COLLATE "C" NOT NULL DEFAULT ''`],
  },
  {
    version: 4,
    description: 'one CA journal per server (several servers share one trust domain); the old journal becomes the legacy owner ""',
    statements: [
      `CREATE TABLE server_ca_journals (
        trust_domain_id TEXT COLLATE "C" NOT NULL,
        server_id TEXT COLLATE "C" NOT NULL,
        journal BYTEA NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (trust_domain_id, server_id)
      )`,
      `INSERT INTO server_ca_journals (trust_domain_id, server_id, journal, updated_at) SELECT trust_domain_id, '', journal, updated_at FROM ca_journals`,
      'DROP TABLE ca_journals',
    ],
  },
  {
    version: 5,
    description: 'federation relationships: the peer bundle endpoints, the refresher state and its fetch lease',
    statements: [
      `CREATE TABLE federation_relationships (
        trust_domain_id TEXT COLLATE "C" PRIMARY KEY,
        bundle_endpoint_url TEXT NOT NULL,
        profile TEXT NOT NULL,
        endpoint_spiffe_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        last_attempt_at BIGINT NOT NULL,
        last_success_at BIGINT NOT NULL,
        last_error TEXT NOT NULL,
        last_sequence BIGINT NOT NULL,
        consecutive_failures BIGINT NOT NULL,
        next_refresh_at BIGINT NOT NULL,
        lease_holder TEXT NOT NULL,
        lease_until BIGINT NOT NULL
      )`,
    ],
  },
];
