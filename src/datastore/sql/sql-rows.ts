/**
 * The SQL the neutral datastore runs and the codecs between its rows and records: statements
 * as constants (one cached statement each), rows decoded by column or by position.
 */
import type { Selector } from '../../spiffe/selector.js';
import { SigilError } from '../../common/errors.js';
import type { AttestedNode, BundleRecord, CaJournalRecord, JoinTokenRecord, RegistrationEntry } from '../datastore.js';
import type { ValidEntryFields, ValidNodeFields } from '../validation.js';
import type { SqlRow, SqlValue } from './sql-driver.js';

/** An attested_nodes row as selected with SQL.nodeColumns. */
export interface NodeRow {
  spiffe_id: string;
  attestation_type: string;
  cert_serial: string;
  cert_not_after: number;
  new_cert_serial: string;
  new_cert_not_after: number;
  banned: number;
  can_reattest: number;
  selectors_json: unknown;
  created_at: number;
  updated_at: number;
}

/** Selected as array rows in this order; decodeEntry reads them by position. */
export const ENTRY_COLUMNS =
  'e.id, e.spiffe_id, e.parent_id, e.selectors_json, e.x509_svid_ttl, e.jwt_svid_ttl, e.dns_names_json, e.federates_with_json, e.admin, e.downstream, e.hint, e.expires_at, e.revision, e.created_at';
/** Every fixed statement of the neutral datastore (filtered lists are built per call). */
export const SQL = {
  entryById: `SELECT ${ENTRY_COLUMNS} FROM registered_entries e WHERE e.id = ?`,
  entryIdentity: `SELECT ${ENTRY_COLUMNS} FROM registered_entries e WHERE e.spiffe_id = ? AND e.parent_id = ? AND e.selectors_hash = ?`,
  entryMeta: 'SELECT revision, created_at FROM registered_entries WHERE id = ?',
  // A prefix as a range (lower bound inclusive, upper exclusive): both dialects compare these
  // columns byte-wise (SQLite BINARY, PostgreSQL COLLATE "C") and walk the identity index,
  // whose first column is spiffe_id. LIKE would not do: SQLite's is case-insensitive and uses
  // no index, and `_` (allowed in trust domain names) is one of its wildcards.
  entriesBySpiffeIdRange: `SELECT ${ENTRY_COLUMNS} FROM registered_entries e WHERE e.spiffe_id >= ? AND e.spiffe_id < ?`,
  insertEntry:
    'INSERT INTO registered_entries (id, spiffe_id, parent_id, selectors_hash, selector_count, selectors_json, dns_names_json, federates_with_json, x509_svid_ttl, jwt_svid_ttl, admin, downstream, hint, expires_at, revision, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  updateEntry:
    'UPDATE registered_entries SET spiffe_id = ?, parent_id = ?, selectors_hash = ?, selector_count = ?, selectors_json = ?, dns_names_json = ?, federates_with_json = ?, x509_svid_ttl = ?, jwt_svid_ttl = ?, admin = ?, downstream = ?, hint = ?, expires_at = ?, revision = ? WHERE id = ?',
  deleteEntry: 'DELETE FROM registered_entries WHERE id = ?',
  insertEntrySelector: 'INSERT INTO entry_selectors (entry_id, type, value) VALUES (?, ?, ?)',
  insertEntryFederation: 'INSERT INTO entry_federates_with (entry_id, trust_domain_id) VALUES (?, ?)',
  deleteEntrySelectors: 'DELETE FROM entry_selectors WHERE entry_id = ?',
  deleteEntryFederations: 'DELETE FROM entry_federates_with WHERE entry_id = ?',
  insertEvent: 'INSERT INTO entry_events (entry_id, kind, at) VALUES (?, ?, ?)',
  listEvents: 'SELECT event_id, entry_id, kind, at FROM entry_events WHERE event_id > ? ORDER BY event_id LIMIT ?',
  latestEvent: 'SELECT MAX(event_id) AS id FROM entry_events',
  // The newest event always survives so latestEntryEventId never goes backwards.
  pruneEvents: 'DELETE FROM entry_events WHERE at < ? AND event_id < (SELECT MAX(event_id) FROM entry_events)',
  nodeColumns:
    'n.spiffe_id, n.attestation_type, n.cert_serial, n.cert_not_after, n.new_cert_serial, n.new_cert_not_after, n.banned, n.can_reattest, n.selectors_json, n.created_at, n.updated_at',
  insertNode:
    'INSERT INTO attested_nodes (spiffe_id, attestation_type, cert_serial, cert_not_after, new_cert_serial, new_cert_not_after, banned, can_reattest, selectors_json, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
  updateNode:
    'UPDATE attested_nodes SET attestation_type = ?, cert_serial = ?, cert_not_after = ?, new_cert_serial = ?, new_cert_not_after = ?, banned = ?, can_reattest = ?, selectors_json = ?, updated_at = ? WHERE spiffe_id = ?',
  deleteNode: 'DELETE FROM attested_nodes WHERE spiffe_id = ?',
  insertNodeSelector: 'INSERT INTO node_selectors (spiffe_id, type, value) VALUES (?, ?, ?)',
  deleteNodeSelectors: 'DELETE FROM node_selectors WHERE spiffe_id = ?',
  tokenConflict: 'SELECT token_id FROM join_tokens WHERE token_hash = ? OR token_id = ?',
  insertToken: 'INSERT INTO join_tokens (token_hash, token_id, expires_at, created_at) VALUES (?, ?, ?, ?)',
  getToken: 'SELECT token_id, token_hash, expires_at, created_at, spent_by FROM join_tokens WHERE token_hash = ?',
  spendToken: 'UPDATE join_tokens SET spent_by = ? WHERE token_hash = ?',
  listTokens: 'SELECT token_id, token_hash, expires_at, created_at, spent_by FROM join_tokens ORDER BY created_at, token_id',
  pruneTokens: 'DELETE FROM join_tokens WHERE expires_at < ?',
  getBundle: 'SELECT trust_domain_id, document, updated_at FROM bundles WHERE trust_domain_id = ?',
  setBundle:
    'INSERT INTO bundles (trust_domain_id, document, updated_at) VALUES (?, ?, ?) ON CONFLICT (trust_domain_id) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at',
  deleteBundle: 'DELETE FROM bundles WHERE trust_domain_id = ?',
  listBundles: 'SELECT trust_domain_id, document, updated_at FROM bundles ORDER BY trust_domain_id',
  getJournal: 'SELECT journal FROM server_ca_journals WHERE trust_domain_id = ? AND server_id = ?',
  listJournals: 'SELECT server_id, journal, updated_at FROM server_ca_journals WHERE trust_domain_id = ? ORDER BY server_id',
  deleteJournal: 'DELETE FROM server_ca_journals WHERE trust_domain_id = ? AND server_id = ?',
  setJournal:
    'INSERT INTO server_ca_journals (trust_domain_id, server_id, journal, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (trust_domain_id, server_id) DO UPDATE SET journal = excluded.journal, updated_at = excluded.updated_at',
} as const;

/** A WHERE clause under construction; `none` means the filter can match nothing. */
export interface Where {
  readonly clauses: string[];
  readonly params: SqlValue[];
  none: boolean;
}

/** ERR_NOT_FOUND with a reason. */
export function notFound(reason: string, message: string): SigilError {
  return new SigilError('ERR_NOT_FOUND', message, { reason });
}

/** ERR_INVALID_ARGUMENT for a bad list filter. */
export function invalidFilter(message: string): SigilError {
  return new SigilError('ERR_INVALID_ARGUMENT', message, { reason: 'invalid-filter' });
}

/** A string filter field, or undefined; anything else is refused. */
export function optionalString(value: unknown, field: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw invalidFilter(`${field} filter must be a string`);
  return value;
}

/** A boolean filter field, or undefined; anything else is refused. */
export function optionalBoolean(value: unknown, field: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw invalidFilter(`${field} filter must be a boolean`);
  return value;
}

/** A boolean as the 0/1 the schema stores. */
export function flag(b: boolean): number {
  return b ? 1 : 0;
}

/** The entry record a write produced, from its validated fields. */
export function entryFromFields(id: string, f: ValidEntryFields, revision: number, createdAt: number): RegistrationEntry {
  return {
    id,
    spiffeId: f.spiffeId,
    parentId: f.parentId,
    selectors: f.selectors,
    x509SvidTtlSeconds: f.x509SvidTtlSeconds,
    jwtSvidTtlSeconds: f.jwtSvidTtlSeconds,
    dnsNames: f.dnsNames,
    federatesWith: f.federatesWith,
    admin: f.admin,
    downstream: f.downstream,
    hint: f.hint,
    entryExpiresAt: f.entryExpiresAt,
    revision,
    createdAt,
  };
}

/** Selectors as stored in a row: `[[type, value], …]`, already normalised. */
export function encodeSelectors(selectors: readonly Selector[]): string {
  return JSON.stringify(selectors.map((s) => [s.type, s.value]));
}

/** Parses a JSON column; a driver may hand back text (SQLite) or an already parsed value (PostgreSQL jsonb). */
export function jsonColumn<T>(value: unknown): T {
  if (typeof value !== 'string') return value as T;
  // Most entries have no DNS names or federations; skipping the parser for them is a measurable share of a full sync.
  return (value === '[]' ? [] : JSON.parse(value)) as T;
}

/** Selectors from their stored JSON column. */
export function decodeSelectors(value: unknown): Selector[] {
  return jsonColumn<[string, string][]>(value).map(([type, value]) => ({ type, value }));
}

/** An entry from an array row selected with ENTRY_COLUMNS. */
export function decodeEntry(r: unknown[]): RegistrationEntry {
  return {
    id: r[0] as string,
    spiffeId: r[1] as string,
    parentId: r[2] as string,
    selectors: decodeSelectors(r[3]),
    x509SvidTtlSeconds: Number(r[4]),
    jwtSvidTtlSeconds: Number(r[5]),
    dnsNames: jsonColumn<string[]>(r[6]),
    federatesWith: jsonColumn<string[]>(r[7]),
    admin: Number(r[8]) === 1,
    downstream: Number(r[9]) === 1,
    hint: r[10] as string,
    entryExpiresAt: Number(r[11]),
    revision: Number(r[12]),
    createdAt: Number(r[13]),
  };
}

/** An attested node from its row. */
export function nodeFromRow(r: NodeRow): AttestedNode {
  return {
    spiffeId: r.spiffe_id,
    attestationType: r.attestation_type,
    certSerial: r.cert_serial,
    certNotAfter: r.cert_not_after,
    newCertSerial: r.new_cert_serial,
    newCertNotAfter: r.new_cert_not_after,
    selectors: decodeSelectors(r.selectors_json),
    banned: r.banned === 1,
    canReattest: r.can_reattest === 1,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** A join token record from its row. */
export function tokenFromRow(r: SqlRow): JoinTokenRecord {
  return {
    tokenId: r['token_id'] as string,
    tokenHash: r['token_hash'] as string,
    expiresAt: r['expires_at'] as number,
    createdAt: r['created_at'] as number,
    spentBy: r['spent_by'] as string,
  };
}

/** A server's CA journal from its row; a plain copy: callers must not see (or keep alive) a driver's pooled buffer. */
export function journalFromRow(r: SqlRow): CaJournalRecord {
  return { serverId: r['server_id'] as string, journal: new Uint8Array(r['journal'] as Uint8Array), updatedAt: Number(r['updated_at']) };
}

/** A bundle record from its row. */
export function bundleFromRow(r: SqlRow): BundleRecord {
  return { trustDomainId: r['trust_domain_id'] as string, document: r['document'] as string, updatedAt: r['updated_at'] as number };
}

/** The mutable columns of an entry row, in the order both insertEntry and updateEntry list them. */
export function entryColumns(f: ValidEntryFields): SqlValue[] {
  return [
    f.spiffeId,
    f.parentId,
    f.selectorsHash,
    f.selectors.length,
    encodeSelectors(f.selectors),
    JSON.stringify(f.dnsNames),
    JSON.stringify(f.federatesWith),
    f.x509SvidTtlSeconds,
    f.jwtSvidTtlSeconds,
    flag(f.admin),
    flag(f.downstream),
    f.hint,
    f.entryExpiresAt,
  ];
}

/** The mutable columns of an attested_nodes row, in the order both insertNode and updateNode list them (after spiffe_id, before the times). */
export function nodeColumns(n: ValidNodeFields): SqlValue[] {
  return [n.attestationType, n.certSerial, n.certNotAfter, n.newCertSerial, n.newCertNotAfter, flag(n.banned), flag(n.canReattest), encodeSelectors(n.selectors)];
}
