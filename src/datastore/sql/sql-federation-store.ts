/**
 * Federation relationships in SQL: the operator's fields plus the refresher's state and a
 * fetch lease, so that several servers on one PostgreSQL database fetch each peer one at a
 * time. An accepted bundle is written to `bundles` in the same transaction as the outcome.
 */
import { SigilError } from '../../common/errors.js';
import type { AuditFor, FederationRefreshOutcome, FederationRelationship, FederationRelationshipFields } from '../datastore.js';
import { MAX_FEDERATION_ERROR, validateBundleDocument, validateFederationFields, validateTime, validateTrustDomainId } from '../validation.js';
import { appendAudit, type SqlTransactionRunner } from './sql-audit-store.js';
import type { SqlExecutor, SqlRow } from './sql-driver.js';

const COLUMNS =
  'trust_domain_id, bundle_endpoint_url, profile, endpoint_spiffe_id, created_at, updated_at, last_attempt_at, last_success_at, last_error, last_sequence, consecutive_failures, next_refresh_at';

const SQL = {
  get: `SELECT ${COLUMNS} FROM federation_relationships WHERE trust_domain_id = ?`,
  list: `SELECT ${COLUMNS} FROM federation_relationships ORDER BY trust_domain_id`,
  insert:
    "INSERT INTO federation_relationships (trust_domain_id, bundle_endpoint_url, profile, endpoint_spiffe_id, created_at, updated_at, last_attempt_at, last_success_at, last_error, last_sequence, consecutive_failures, next_refresh_at, lease_holder, lease_until) VALUES (?, ?, ?, ?, ?, ?, 0, 0, '', 0, 0, 0, '', 0)",
  update: 'UPDATE federation_relationships SET bundle_endpoint_url = ?, profile = ?, endpoint_spiffe_id = ?, updated_at = ?, next_refresh_at = 0, consecutive_failures = 0 WHERE trust_domain_id = ?',
  delete: 'DELETE FROM federation_relationships WHERE trust_domain_id = ?',
  claim:
    "UPDATE federation_relationships SET lease_holder = ?, lease_until = ? WHERE trust_domain_id = ? AND (next_refresh_at <= ? OR ? = 1) AND (lease_holder = '' OR lease_holder = ? OR lease_until <= ?)",
  recordOk:
    "UPDATE federation_relationships SET last_attempt_at = ?, last_success_at = ?, last_error = '', last_sequence = ?, consecutive_failures = 0, next_refresh_at = ?, lease_holder = '', lease_until = 0 WHERE trust_domain_id = ? AND lease_holder = ?",
  recordFail:
    "UPDATE federation_relationships SET last_attempt_at = ?, last_error = ?, consecutive_failures = consecutive_failures + 1, next_refresh_at = ?, lease_holder = '', lease_until = 0 WHERE trust_domain_id = ? AND lease_holder = ?",
  setBundle:
    'INSERT INTO bundles (trust_domain_id, document, updated_at) VALUES (?, ?, ?) ON CONFLICT (trust_domain_id) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at',
} as const;

function fromRow(r: SqlRow): FederationRelationship {
  return {
    trustDomainId: r['trust_domain_id'] as string,
    bundleEndpointUrl: r['bundle_endpoint_url'] as string,
    profile: r['profile'] as FederationRelationship['profile'],
    endpointSpiffeId: r['endpoint_spiffe_id'] as string,
    createdAt: Number(r['created_at']),
    updatedAt: Number(r['updated_at']),
    lastAttemptAt: Number(r['last_attempt_at']),
    lastSuccessAt: Number(r['last_success_at']),
    lastError: r['last_error'] as string,
    lastSequence: Number(r['last_sequence']),
    consecutiveFailures: Number(r['consecutive_failures']),
    nextRefreshAt: Number(r['next_refresh_at']),
  };
}

function holderOf(holder: unknown): string {
  if (typeof holder !== 'string' || !/^[A-Za-z0-9._:-]{1,128}$/.test(holder)) {
    throw new SigilError('ERR_INVALID_ARGUMENT', 'federation lease holder must be 1 to 128 of [A-Za-z0-9._:-]', { reason: 'invalid-lease-holder' });
  }
  return holder;
}

async function getIn(tx: SqlExecutor, td: string): Promise<FederationRelationship | undefined> {
  const row = (await tx.all(SQL.get, [td]))[0];
  return row === undefined ? undefined : fromRow(row);
}

/** The Datastore's federation methods over SQL. */
export class SqlFederationStore {
  readonly #tx: SqlTransactionRunner;
  readonly #now: () => number;

  constructor(tx: SqlTransactionRunner, now: () => number) {
    this.#tx = tx;
    this.#now = now;
  }

  async create(rel: FederationRelationshipFields, audit?: AuditFor<FederationRelationship>): Promise<FederationRelationship> {
    const f = validateFederationFields(rel);
    return this.#tx('write', async (tx) => {
      if ((await getIn(tx, f.trustDomainId)) !== undefined) {
        throw new SigilError('ERR_ALREADY_EXISTS', `a federation relationship with ${f.trustDomainId} already exists`, { reason: 'federation-exists' });
      }
      const now = this.#now();
      await tx.run(SQL.insert, [f.trustDomainId, f.bundleEndpointUrl, f.profile, f.endpointSpiffeId, now, now]);
      const created = (await getIn(tx, f.trustDomainId)) as FederationRelationship;
      await appendAudit(tx, audit, created, now);
      return created;
    });
  }

  async get(trustDomainId: string): Promise<FederationRelationship | undefined> {
    const td = validateTrustDomainId(trustDomainId);
    return this.#tx('read', (tx) => getIn(tx, td));
  }

  async list(): Promise<FederationRelationship[]> {
    return this.#tx('read', async (tx) => (await tx.all(SQL.list)).map(fromRow));
  }

  async update(rel: FederationRelationshipFields, audit?: AuditFor<FederationRelationship>): Promise<FederationRelationship> {
    const f = validateFederationFields(rel);
    return this.#tx('write', async (tx) => {
      const now = this.#now();
      if ((await tx.run(SQL.update, [f.bundleEndpointUrl, f.profile, f.endpointSpiffeId, now, f.trustDomainId])) === 0) {
        throw new SigilError('ERR_NOT_FOUND', `no federation relationship with ${f.trustDomainId}`, { reason: 'federation-not-found' });
      }
      const updated = (await getIn(tx, f.trustDomainId)) as FederationRelationship;
      await appendAudit(tx, audit, updated, now);
      return updated;
    });
  }

  async delete(trustDomainId: string, audit?: AuditFor<FederationRelationship>): Promise<FederationRelationship> {
    const td = validateTrustDomainId(trustDomainId);
    return this.#tx('write', async (tx) => {
      const old = await getIn(tx, td);
      if (old === undefined) throw new SigilError('ERR_NOT_FOUND', `no federation relationship with ${td}`, { reason: 'federation-not-found' });
      await tx.run(SQL.delete, [td]);
      await appendAudit(tx, audit, old, this.#now());
      return old;
    });
  }

  async claim(trustDomainId: string, holder: string, now: number, leaseUntil: number, force = false): Promise<boolean> {
    const td = validateTrustDomainId(trustDomainId);
    const h = holderOf(holder);
    const n = validateTime(now, 'claim time');
    const until = validateTime(leaseUntil, 'lease end');
    return this.#tx('write', async (tx) => (await tx.run(SQL.claim, [h, until, td, n, force ? 1 : 0, h, n])) === 1);
  }

  async record(trustDomainId: string, holder: string, o: FederationRefreshOutcome): Promise<boolean> {
    const td = validateTrustDomainId(trustDomainId);
    const h = holderOf(holder);
    const at = validateTime(o.at, 'refresh time');
    const next = validateTime(o.nextRefreshAt, 'next refresh time');
    if (o.accepted !== undefined) {
      const doc = validateBundleDocument(o.accepted.document);
      const seq = o.accepted.sequence;
      if (!Number.isSafeInteger(seq) || seq < 0) throw new SigilError('ERR_INVALID_ARGUMENT', 'bundle sequence must be a non-negative integer', { reason: 'invalid-sequence' });
      return this.#tx('write', async (tx) => {
        if ((await tx.run(SQL.recordOk, [at, at, seq, next, td, h])) === 0) return false;
        await tx.run(SQL.setBundle, [td, doc, at]);
        return true;
      });
    }
    const error = (o.error ?? 'unknown error').slice(0, MAX_FEDERATION_ERROR);
    return this.#tx('write', async (tx) => (await tx.run(SQL.recordFail, [at, error, next, td, h])) === 1);
  }
}
