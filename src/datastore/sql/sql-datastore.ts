/**
 * The Datastore over any SQL database reachable through a SqlDriver: every rule (validation,
 * duplicate detection, events, pagination, matching) lives here once, so SQLite and
 * PostgreSQL differ only in their driver, dialect fragments and migrations.
 *
 * A record's lists (selectors, DNS names, federations) are stored as JSON in its own row,
 * so reading a page is one query whatever its size, and again as indexed child rows that
 * the filters match against. Every write runs in one write transaction that also keeps
 * the child rows in step and appends its entry event, so an event exists if and only if
 * its change does.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../common/clock.js';
import { SigilError, isSigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type {
  AgentAdmission,
  AttestedNode,
  AuditFor,
  StoredAuditRecord,
  BundleRecord,
  CaJournalRecord,
  FederationRefreshOutcome,
  FederationRelationship,
  FederationRelationshipFields,
  Datastore,
  DatastoreChange,
  EntryEvent,
  EntryFilter,
  JoinTokenRecord,
  NewRegistrationEntry,
  NodeFilter,
  Page,
  PageRequest,
  RegistrationEntry,
} from '../datastore.js';
import { encodePageToken, resolvePage } from '../pagination.js';
import {
  selectorsHash,
  validateBundleDocument,
  validateEntryFields,
  validateEntryId,
  validateJoinToken,
  validateNode,
  validateSelectors,
  validateServerId,
  validateTime,
  validateTrustDomainId,
  type ValidEntryFields,
  type ValidNodeFields,
} from '../validation.js';
import type { SqlDriver, SqlExecutor } from './sql-driver.js';
import { appendAudit, SqlAuditStore } from './sql-audit-store.js';
import { SqlFederationStore } from './sql-federation-store.js';
import {
  bundleFromRow,
  decodeEntry,
  ENTRY_COLUMNS,
  entryColumns,
  entryFromFields,
  flag,
  invalidFilter,
  journalFromRow,
  nodeColumns,
  nodeFromRow,
  notFound,
  optionalBoolean,
  optionalString,
  SQL,
  tokenFromRow,
  type NodeRow,
  type Where,
} from './sql-rows.js';

/** What a SqlDatastore needs besides its driver. */
export interface SqlDatastoreOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** The schema version the driver's database is at (after migrations). */
  readonly schemaVersion: number;
}

/** Default and maximum number of events one listEntryEvents call returns. */
const DEFAULT_EVENT_LIMIT = 1000;
const MAX_EVENT_LIMIT = 10_000;
/** Parent IDs bound in one statement of listEntriesByParentIds, entry IDs in one of getEntries (keeps each list parameter small). */
const PARENTS_PER_STATEMENT = 1000;

function checkTokenHash(tokenHash: unknown): asserts tokenHash is string {
  if (typeof tokenHash !== 'string' || !/^[0-9a-f]{64}$/.test(tokenHash)) {
    throw new SigilError('ERR_INVALID_ARGUMENT', 'join token hash must be 64 lowercase hex characters', { reason: 'invalid-token-hash' });
  }
}

function validateSpend(spend: { readonly tokenHash: string; readonly agentKey: string }): { tokenHash: string; agentKey: string } {
  if (spend === null || typeof spend !== 'object') throw new SigilError('ERR_INVALID_ARGUMENT', 'join token spend must be an object', { reason: 'invalid-admission' });
  checkTokenHash(spend.tokenHash);
  if (typeof spend.agentKey !== 'string' || !/^[0-9a-f]{64}$/.test(spend.agentKey)) {
    throw new SigilError('ERR_INVALID_ARGUMENT', 'agent key must be 64 lowercase hex characters', { reason: 'invalid-agent-key' });
  }
  return { tokenHash: spend.tokenHash, agentKey: spend.agentKey };
}

/** Rejects once `signal` has fired, with its reason when that is a SigilError (the call's own ERR_CANCELLED / ERR_DEADLINE_EXCEEDED). */
function throwIfGone(signal: AbortSignal | undefined): void {
  if (signal?.aborted !== true) return;
  const r: unknown = signal.reason;
  throw r instanceof SigilError ? r : new SigilError('ERR_CANCELLED', 'the caller has gone', { reason: 'caller-gone' });
}

/** The dialect-neutral Datastore; drivers and migrations make it SQLite or PostgreSQL. */
export class SqlDatastore implements Datastore {
  /** The schema version the database is at. */
  readonly schemaVersion: number;
  readonly #driver: SqlDriver;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #audit: SqlAuditStore;
  /** The change kinds each open transaction has signalled already. */
  readonly #signalled = new WeakMap<SqlExecutor, Set<DatastoreChange>>();
  readonly #federation: SqlFederationStore;

  constructor(driver: SqlDriver, options: SqlDatastoreOptions) {
    this.#driver = driver;
    this.#clock = options.clock;
    this.#log = options.logger;
    this.schemaVersion = options.schemaVersion;
    this.#audit = new SqlAuditStore((mode, fn) => this.#tx(mode, fn), () => this.#clock.nowMs());
    this.#federation = new SqlFederationStore((mode, fn) => this.#tx(mode, fn), () => this.#clock.nowMs());
  }

  // ---------------------------------------------------------------- plumbing

  /** Runs `fn` in a transaction; anything that is not a SigilError becomes ERR_INTERNAL (logged). */
  /** `single`: `fn` runs one read statement, consistent on its own, so no transaction is opened around it. */
  async #tx<T>(mode: 'read' | 'write' | 'single', fn: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    try {
      return await (mode === 'single' ? this.#driver.single(fn) : this.#driver.transaction(mode, fn));
    } catch (err) {
      if (isSigilError(err)) throw err;
      if (this.#driver.dialect.isUniqueViolation(err)) {
        // A concurrent writer (another server on the same PostgreSQL) won the race past our pre-check.
        throw new SigilError('ERR_ALREADY_EXISTS', 'record already exists', { reason: 'conflict', cause: err });
      }
      this.#log.error({ err }, 'datastore operation failed');
      throw new SigilError('ERR_INTERNAL', 'datastore operation failed', { reason: 'datastore-error', cause: err });
    }
  }

  /** Tells other processes of the change when this transaction commits (PostgreSQL NOTIFY; nothing on SQLite). */
  async #signal(tx: SqlExecutor, kind: DatastoreChange): Promise<void> {
    const sql = this.#driver.dialect.notifySql;
    const channel = this.#driver.changeChannel;
    if (sql === undefined || channel === undefined) return;
    // once per transaction and kind: a bulk insert of many entries signals once
    let kinds = this.#signalled.get(tx);
    if (kinds === undefined) this.#signalled.set(tx, (kinds = new Set()));
    if (kinds.has(kind)) return;
    kinds.add(kind);
    await tx.all(sql, [channel, kind]);
  }

  async watchChanges(listener: (change: DatastoreChange) => void): Promise<() => void> {
    if (this.#driver.subscribe === undefined) return () => undefined;
    return this.#driver.subscribe((kind) => {
      if (kind === 'entries' || kind === 'bundles') listener(kind);
    });
  }

  async #entryById(tx: SqlExecutor, id: string): Promise<RegistrationEntry | undefined> {
    const row = (await tx.rows(SQL.entryById, [id]))[0];
    return row === undefined ? undefined : decodeEntry(row);
  }

  async #writeEntryChildren(tx: SqlExecutor, id: string, f: ValidEntryFields): Promise<void> {
    for (const s of f.selectors) await tx.run(SQL.insertEntrySelector, [id, s.type, s.value]);
    for (const td of f.federatesWith) await tx.run(SQL.insertEntryFederation, [id, td]);
  }

  async #checkNoDuplicate(tx: SqlExecutor, f: ValidEntryFields, exceptId: string | undefined): Promise<void> {
    const rows = await tx.all(SQL.entryIdentity, [f.spiffeId, f.parentId, f.selectorsHash]);
    if (rows.some((r) => r['id'] !== exceptId)) {
      throw new SigilError(
        'ERR_ALREADY_EXISTS',
        `an entry with spiffe id ${f.spiffeId}, parent id ${f.parentId} and the same selectors already exists`,
        { reason: 'entry-exists' },
      );
    }
  }

  async #insertEntry(tx: SqlExecutor, id: string, f: ValidEntryFields, explicitId: boolean, now: number): Promise<RegistrationEntry> {
    if (explicitId && (await tx.all(SQL.entryMeta, [id])).length > 0) {
      throw new SigilError('ERR_ALREADY_EXISTS', `an entry with id ${id} already exists`, { reason: 'entry-id-exists' });
    }
    await this.#checkNoDuplicate(tx, f, undefined);
    await tx.run(SQL.insertEntry, [id, ...entryColumns(f), 0, now]);
    await this.#writeEntryChildren(tx, id, f);
    await tx.run(SQL.insertEvent, [id, 'created', now]);
    await this.#signal(tx, 'entries');
    return entryFromFields(id, f, 0, now);
  }

  #prepareNew(entry: NewRegistrationEntry): { id: string; explicitId: boolean; fields: ValidEntryFields } {
    const fields = validateEntryFields(entry);
    const explicitId = entry.id !== undefined;
    return { id: explicitId ? validateEntryId(entry.id) : randomUUID(), explicitId, fields };
  }

  // ---------------------------------------------------------------- entries

  async createEntry(entry: NewRegistrationEntry): Promise<RegistrationEntry> {
    const { id, explicitId, fields } = this.#prepareNew(entry);
    const created = await this.#tx('write', (tx) => this.#insertEntry(tx, id, fields, explicitId, this.#clock.nowMs()));
    this.#log.debug({ entryId: id, spiffeId: fields.spiffeId }, 'entry created');
    return created;
  }

  async createEntries(entries: readonly NewRegistrationEntry[]): Promise<RegistrationEntry[]> {
    if (!Array.isArray(entries)) throw new SigilError('ERR_INVALID_ARGUMENT', 'entries must be a list', { reason: 'invalid-entry' });
    const prepared = entries.map((e) => this.#prepareNew(e));
    if (prepared.length === 0) return [];
    const created = await this.#tx('write', async (tx) => {
      const now = this.#clock.nowMs();
      const out: RegistrationEntry[] = [];
      for (const p of prepared) out.push(await this.#insertEntry(tx, p.id, p.fields, p.explicitId, now));
      return out;
    });
    this.#log.debug({ count: created.length }, 'entries created');
    return created;
  }

  async createEntryIfNotExists(entry: NewRegistrationEntry, audit?: AuditFor<RegistrationEntry>): Promise<{ entry: RegistrationEntry; created: boolean }> {
    const { id, explicitId, fields } = this.#prepareNew(entry);
    return this.#tx('write', async (tx) => {
      const existing = (await tx.rows(SQL.entryIdentity, [fields.spiffeId, fields.parentId, fields.selectorsHash]))[0];
      if (existing !== undefined) return { entry: decodeEntry(existing), created: false };
      const now = this.#clock.nowMs();
      const created = await this.#insertEntry(tx, id, fields, explicitId, now);
      await appendAudit(tx, audit, created, now);
      return { entry: created, created: true };
    });
  }

  async getEntry(id: string): Promise<RegistrationEntry | undefined> {
    if (typeof id !== 'string') throw new SigilError('ERR_INVALID_ARGUMENT', 'entry id must be a string', { reason: 'invalid-entry-id' });
    return this.#tx('single', (tx) => this.#entryById(tx, id));
  }

  async getEntries(ids: readonly string[]): Promise<Map<string, RegistrationEntry>> {
    if (!Array.isArray(ids) || ids.some((id) => typeof id !== 'string')) {
      throw new SigilError('ERR_INVALID_ARGUMENT', 'entry ids must be a list of strings', { reason: 'invalid-entry-id' });
    }
    const wanted = [...new Set(ids)];
    const out = new Map<string, RegistrationEntry>();
    if (wanted.length === 0) return out;
    const d = this.#driver.dialect;
    // the list drives the join: one probe of the primary key per ID
    const sql = `SELECT ${ENTRY_COLUMNS} FROM (${d.textListSubquery}) p CROSS JOIN registered_entries e WHERE e.id = p.value`;
    const read = async (tx: SqlExecutor): Promise<Map<string, RegistrationEntry>> => {
      for (let i = 0; i < wanted.length; i += PARENTS_PER_STATEMENT) {
        for (const row of await tx.rows(sql, [d.textListParam(wanted.slice(i, i + PARENTS_PER_STATEMENT))])) {
          const e = decodeEntry(row);
          out.set(e.id, e);
        }
      }
      return out;
    };
    // one statement needs no transaction around it
    return this.#tx(wanted.length <= PARENTS_PER_STATEMENT ? 'single' : 'read', read);
  }

  async updateEntry(entry: Omit<RegistrationEntry, 'revision' | 'createdAt'>, audit?: AuditFor<RegistrationEntry>): Promise<RegistrationEntry> {
    const id = validateEntryId(entry?.id);
    const f = validateEntryFields(entry);
    const updated = await this.#tx('write', async (tx) => {
      const meta = (await tx.all(SQL.entryMeta, [id]))[0];
      if (meta === undefined) throw notFound('entry-not-found', `entry ${id} not found`);
      await this.#checkNoDuplicate(tx, f, id);
      const revision = (meta['revision'] as number) + 1;
      await tx.run(SQL.updateEntry, [...entryColumns(f), revision, id]);
      await tx.run(SQL.deleteEntrySelectors, [id]);
      await tx.run(SQL.deleteEntryFederations, [id]);
      await this.#writeEntryChildren(tx, id, f);
      const now = this.#clock.nowMs();
      await tx.run(SQL.insertEvent, [id, 'updated', now]);
      const updated = entryFromFields(id, f, revision, meta['created_at'] as number);
      await appendAudit(tx, audit, updated, now);
      await this.#signal(tx, 'entries');
      return updated;
    });
    this.#log.debug({ entryId: id, revision: updated.revision }, 'entry updated');
    return updated;
  }

  async deleteEntry(id: string, audit?: AuditFor<RegistrationEntry>): Promise<RegistrationEntry> {
    if (typeof id !== 'string') throw new SigilError('ERR_INVALID_ARGUMENT', 'entry id must be a string', { reason: 'invalid-entry-id' });
    const deleted = await this.#tx('write', async (tx) => {
      const existing = await this.#entryById(tx, id);
      if (existing === undefined) throw notFound('entry-not-found', `entry ${id} not found`);
      await tx.run(SQL.deleteEntry, [id]);
      const now = this.#clock.nowMs();
      await tx.run(SQL.insertEvent, [id, 'deleted', now]);
      await appendAudit(tx, audit, existing, now);
      await this.#signal(tx, 'entries');
      return existing;
    });
    this.#log.debug({ entryId: id }, 'entry deleted');
    return deleted;
  }

  #entryWhere(filter: EntryFilter | undefined): Where {
    const where: Where = { clauses: [], params: [], none: false };
    if (filter === undefined) return where;
    if (filter === null || typeof filter !== 'object') throw invalidFilter('entry filter must be an object');
    const d = this.#driver.dialect;
    const spiffeId = optionalString(filter.spiffeId, 'spiffe id');
    if (spiffeId !== undefined) {
      where.clauses.push('e.spiffe_id = ?');
      where.params.push(spiffeId);
    }
    const parentId = optionalString(filter.parentId, 'parent id');
    if (parentId !== undefined) {
      where.clauses.push('e.parent_id = ?');
      where.params.push(parentId);
    }
    if (filter.parentIds !== undefined) {
      if (!Array.isArray(filter.parentIds) || filter.parentIds.some((p) => typeof p !== 'string')) {
        throw invalidFilter('parent ids filter must be a list of strings');
      }
      if (filter.parentIds.length === 0) where.none = true;
      where.clauses.push(`e.parent_id IN (${d.textListSubquery})`);
      where.params.push(d.textListParam(filter.parentIds));
    }
    if (filter.selectors !== undefined) {
      const { selectors, match } = (filter.selectors ?? {}) as { selectors?: unknown; match?: unknown };
      const set = validateSelectors(selectors, true);
      const pairs = d.pairListParam(set.map((s) => [s.type, s.value] as const));
      // The given pairs drive the join (CROSS JOIN pins them as SQLite's outer loop; PostgreSQL
      // reads it as a plain join): SQLite cannot see that the list is small and would otherwise
      // scan every selector row probing the list.
      const from = `FROM (${d.pairListSubquery}) g CROSS JOIN entry_selectors s`;
      const on = 's.type = g.type AND s.value = g.value';
      switch (match) {
        case 'exact':
          where.clauses.push('e.selectors_hash = ?');
          where.params.push(selectorsHash(set));
          break;
        case 'any':
          where.clauses.push(`e.id IN (SELECT s.entry_id ${from} WHERE ${on})`);
          where.params.push(pairs);
          break;
        case 'superset':
          where.clauses.push(`e.id IN (SELECT s.entry_id ${from} WHERE ${on} GROUP BY s.entry_id HAVING COUNT(*) = ?)`);
          where.params.push(pairs, set.length);
          break;
        case 'subset':
          // All of the entry's selectors are among the given ones: as many matched as it has.
          where.clauses.push(
            `e.id IN (SELECT s.entry_id ${from} JOIN registered_entries x ON x.id = s.entry_id WHERE ${on} GROUP BY s.entry_id, x.selector_count HAVING COUNT(*) = x.selector_count)`,
          );
          where.params.push(pairs);
          break;
        default:
          throw invalidFilter(`invalid selector match ${JSON.stringify(String(match))}: use exact, subset, superset or any`);
      }
    }
    const federatesWith = optionalString(filter.federatesWith, 'federates with');
    if (federatesWith !== undefined) {
      where.clauses.push('e.id IN (SELECT f.entry_id FROM entry_federates_with f WHERE f.trust_domain_id = ?)');
      where.params.push(federatesWith);
    }
    const hint = optionalString(filter.hint, 'hint');
    if (hint !== undefined) {
      where.clauses.push('e.hint = ?');
      where.params.push(hint);
    }
    const downstream = optionalBoolean(filter.downstream, 'downstream');
    if (downstream !== undefined) {
      where.clauses.push('e.downstream = ?');
      where.params.push(flag(downstream));
    }
    return where;
  }

  async listEntries(filter?: EntryFilter, page?: PageRequest): Promise<Page<RegistrationEntry>> {
    const { size, after } = resolvePage(page);
    const where = this.#entryWhere(filter);
    if (where.none) return { items: [], nextPageToken: '' };
    const sql = `SELECT ${ENTRY_COLUMNS} FROM registered_entries e WHERE ${[...where.clauses, 'e.id > ?'].join(' AND ')} ORDER BY e.id LIMIT ?`;
    return this.#tx('single', async (tx) => {
      const rows = await tx.rows(sql, [...where.params, after, size + 1]);
      const more = rows.length > size;
      if (more) rows.length = size;
      const items = rows.map(decodeEntry);
      const last = items[items.length - 1];
      return { items, nextPageToken: more && last !== undefined ? encodePageToken(last.id) : '' };
    });
  }

  async listEntriesByParentIds(parentIds: readonly string[]): Promise<RegistrationEntry[]> {
    if (!Array.isArray(parentIds) || parentIds.some((p) => typeof p !== 'string')) throw invalidFilter('parent ids must be a list of strings');
    const parents = [...new Set(parentIds)];
    if (parents.length === 0) return [];
    const d = this.#driver.dialect;
    // The list drives the join (CROSS JOIN pins it as SQLite's outer loop), so each parent is
    // one probe of the (parent_id, id) index. Paging by id instead made SQLite walk the whole
    // table once per statement, quadratic over an agent's descendants.
    const sql = `SELECT ${ENTRY_COLUMNS} FROM (${d.textListSubquery}) p CROSS JOIN registered_entries e WHERE e.parent_id = p.value`;
    return this.#tx('read', async (tx) => {
      const out: RegistrationEntry[] = [];
      for (let i = 0; i < parents.length; i += PARENTS_PER_STATEMENT) {
        for (const row of await tx.rows(sql, [d.textListParam(parents.slice(i, i + PARENTS_PER_STATEMENT))])) out.push(decodeEntry(row));
      }
      return out;
    });
  }

  async listEntriesBySpiffeIdPrefix(prefix: string): Promise<RegistrationEntry[]> {
    if (typeof prefix !== 'string' || !/^[\x21-\x7e]{1,2048}$/.test(prefix)) {
      throw invalidFilter('spiffe id prefix must be 1 to 2048 printable ASCII characters');
    }
    // The first string after every one starting with the prefix: its last character plus one
    // (ASCII only, so UTF-16 order, UTF-8 byte order and both collations agree; at most 0x7f).
    const upper = prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
    return this.#tx('single', async (tx) => (await tx.rows(SQL.entriesBySpiffeIdRange, [prefix, upper])).map(decodeEntry));
  }

  async countEntries(filter?: EntryFilter): Promise<number> {
    const where = this.#entryWhere(filter);
    if (where.none) return 0;
    const sql = `SELECT COUNT(*) AS n FROM registered_entries e${where.clauses.length > 0 ? ` WHERE ${where.clauses.join(' AND ')}` : ''}`;
    return this.#tx('single', async (tx) => Number((await tx.all(sql, where.params))[0]?.['n'] ?? 0));
  }

  async listEntryEvents(afterEventId: number, limit: number = DEFAULT_EVENT_LIMIT): Promise<EntryEvent[]> {
    if (!Number.isSafeInteger(afterEventId) || afterEventId < 0) {
      throw new SigilError('ERR_INVALID_ARGUMENT', `invalid event id ${String(afterEventId)}`, { reason: 'invalid-event-id' });
    }
    if (!Number.isSafeInteger(limit) || limit < 0) {
      throw new SigilError('ERR_INVALID_ARGUMENT', `invalid event limit ${String(limit)}`, { reason: 'invalid-limit' });
    }
    const n = limit === 0 ? DEFAULT_EVENT_LIMIT : Math.min(limit, MAX_EVENT_LIMIT);
    return this.#tx('single', async (tx) =>
      (await tx.all(SQL.listEvents, [afterEventId, n])).map((r) => ({
        eventId: Number(r['event_id']),
        entryId: r['entry_id'] as string,
        kind: r['kind'] as EntryEvent['kind'],
        at: r['at'] as number,
      })),
    );
  }

  async latestEntryEventId(): Promise<number> {
    return this.#tx('single', async (tx) => Number((await tx.all(SQL.latestEvent))[0]?.['id'] ?? 0));
  }

  async pruneEntryEvents(beforeMs: number): Promise<number> {
    const before = validateTime(beforeMs, 'prune time');
    return this.#tx('write', (tx) => tx.run(SQL.pruneEvents, [before]));
  }

  // ---------------------------------------------------------------- attested nodes

  async #nodeById(tx: SqlExecutor, spiffeId: string): Promise<AttestedNode | undefined> {
    const row = (await tx.all(`SELECT ${SQL.nodeColumns} FROM attested_nodes n WHERE n.spiffe_id = ?`, [spiffeId]))[0];
    return row === undefined ? undefined : nodeFromRow(row as unknown as NodeRow);
  }

  async #writeNodeSelectors(tx: SqlExecutor, n: ValidNodeFields): Promise<void> {
    for (const s of n.selectors) await tx.run(SQL.insertNodeSelector, [n.spiffeId, s.type, s.value]);
  }

  async #insertNode(tx: SqlExecutor, n: ValidNodeFields, audit?: AuditFor<AttestedNode>): Promise<AttestedNode> {
    const now = this.#clock.nowMs();
    await tx.run(SQL.insertNode, [n.spiffeId, ...nodeColumns(n), now, now]);
    await this.#writeNodeSelectors(tx, n);
    const created = { ...n, createdAt: now, updatedAt: now };
    await appendAudit(tx, audit, created, now);
    return created;
  }

  async #replaceNode(tx: SqlExecutor, n: ValidNodeFields, existing: AttestedNode, audit?: AuditFor<AttestedNode>): Promise<AttestedNode> {
    const now = this.#clock.nowMs();
    await tx.run(SQL.updateNode, [...nodeColumns(n), now, n.spiffeId]);
    await tx.run(SQL.deleteNodeSelectors, [n.spiffeId]);
    await this.#writeNodeSelectors(tx, n);
    const updated = { ...n, createdAt: existing.createdAt, updatedAt: now };
    await appendAudit(tx, audit, updated, now);
    return updated;
  }

  async createAttestedNode(node: Omit<AttestedNode, 'createdAt' | 'updatedAt'>, audit?: AuditFor<AttestedNode>): Promise<AttestedNode> {
    const n = validateNode(node);
    return this.#tx('write', async (tx) => {
      if ((await this.#nodeById(tx, n.spiffeId)) !== undefined) {
        throw new SigilError('ERR_ALREADY_EXISTS', `agent ${n.spiffeId} already exists`, { reason: 'node-exists' });
      }
      return this.#insertNode(tx, n, audit);
    });
  }

  async getAttestedNode(spiffeId: string): Promise<AttestedNode | undefined> {
    if (typeof spiffeId !== 'string') throw new SigilError('ERR_INVALID_ARGUMENT', 'agent spiffe id must be a string', { reason: 'invalid-spiffe-id' });
    return this.#tx('single', (tx) => this.#nodeById(tx, spiffeId));
  }

  async updateAttestedNode(node: Omit<AttestedNode, 'createdAt' | 'updatedAt'>, audit?: AuditFor<AttestedNode>): Promise<AttestedNode> {
    const n = validateNode(node);
    return this.#tx('write', async (tx) => {
      const existing = await this.#nodeById(tx, n.spiffeId);
      if (existing === undefined) throw notFound('node-not-found', `agent ${n.spiffeId} not found`);
      return this.#replaceNode(tx, n, existing, audit);
    });
  }

  async admitAttestedNode(admission: AgentAdmission, signal?: AbortSignal, audit?: AuditFor<AttestedNode>): Promise<AttestedNode> {
    if (admission === null || typeof admission !== 'object') {
      throw new SigilError('ERR_INVALID_ARGUMENT', 'admission must be an object', { reason: 'invalid-admission' });
    }
    const n = validateNode(admission.node);
    const spend = admission.joinToken === undefined ? undefined : validateSpend(admission.joinToken);
    throwIfGone(signal);
    return this.#tx('write', async (tx) => {
      const existing = await this.#nodeById(tx, n.spiffeId);
      if (existing?.banned === true) {
        throw new SigilError('ERR_FAILED_PRECONDITION', `agent ${n.spiffeId} is banned`, { reason: 'agent-banned' });
      }
      if (spend !== undefined) {
        const row = (await tx.all(SQL.getToken, [spend.tokenHash]))[0];
        const spentBy = row === undefined ? undefined : (row['spent_by'] as string);
        // Spent by this very key: the attestation it admitted may be finished again, but only
        // while that agent is still recorded (an evicted agent must bring a new token).
        const usable = spentBy === '' || (spentBy === spend.agentKey && existing !== undefined);
        if (!usable) throw notFound('join-token-unknown', 'join token is unknown or already used');
        if (spentBy === '') await tx.run(SQL.spendToken, [spend.agentKey, spend.tokenHash]);
      }
      const node = existing === undefined ? await this.#insertNode(tx, n, audit) : await this.#replaceNode(tx, n, existing, audit);
      // the last moment before commit: a caller that has gone gets nothing written
      throwIfGone(signal);
      return node;
    });
  }

  async deleteAttestedNode(spiffeId: string, audit?: AuditFor<AttestedNode>): Promise<AttestedNode> {
    if (typeof spiffeId !== 'string') throw new SigilError('ERR_INVALID_ARGUMENT', 'agent spiffe id must be a string', { reason: 'invalid-spiffe-id' });
    return this.#tx('write', async (tx) => {
      const existing = await this.#nodeById(tx, spiffeId);
      if (existing === undefined) throw notFound('node-not-found', `agent ${spiffeId} not found`);
      await tx.run(SQL.deleteNode, [spiffeId]);
      await appendAudit(tx, audit, existing, this.#clock.nowMs());
      return existing;
    });
  }

  #nodeWhere(filter: NodeFilter | undefined): Where {
    const where: Where = { clauses: [], params: [], none: false };
    if (filter === undefined) return where;
    if (filter === null || typeof filter !== 'object') throw invalidFilter('agent filter must be an object');
    const banned = optionalBoolean(filter.banned, 'banned');
    if (banned !== undefined) {
      where.clauses.push('n.banned = ?');
      where.params.push(flag(banned));
    }
    const type = optionalString(filter.attestationType, 'attestation type');
    if (type !== undefined) {
      where.clauses.push('n.attestation_type = ?');
      where.params.push(type);
    }
    if (filter.expiresBefore !== undefined) {
      where.clauses.push('n.cert_not_after < ?');
      where.params.push(validateTime(filter.expiresBefore, 'expires before'));
    }
    return where;
  }

  async listAttestedNodes(filter?: NodeFilter, page?: PageRequest): Promise<Page<AttestedNode>> {
    const { size, after } = resolvePage(page);
    const where = this.#nodeWhere(filter);
    const sql = `SELECT ${SQL.nodeColumns} FROM attested_nodes n WHERE ${[...where.clauses, 'n.spiffe_id > ?'].join(' AND ')} ORDER BY n.spiffe_id LIMIT ?`;
    return this.#tx('single', async (tx) => {
      const rows = await tx.all(sql, [...where.params, after, size + 1]);
      const more = rows.length > size;
      if (more) rows.length = size;
      const items = rows.map((r) => nodeFromRow(r as unknown as NodeRow));
      const last = items[items.length - 1];
      return { items, nextPageToken: more && last !== undefined ? encodePageToken(last.spiffeId) : '' };
    });
  }

  async countAttestedNodes(filter?: NodeFilter): Promise<number> {
    const where = this.#nodeWhere(filter);
    const sql = `SELECT COUNT(*) AS n FROM attested_nodes n${where.clauses.length > 0 ? ` WHERE ${where.clauses.join(' AND ')}` : ''}`;
    return this.#tx('single', async (tx) => Number((await tx.all(sql, where.params))[0]?.['n'] ?? 0));
  }

  // ---------------------------------------------------------------- join tokens

  async createJoinToken(token: Omit<JoinTokenRecord, 'createdAt' | 'spentBy'>, audit?: AuditFor<JoinTokenRecord>): Promise<JoinTokenRecord> {
    const t = validateJoinToken(token);
    return this.#tx('write', async (tx) => {
      if ((await tx.all(SQL.tokenConflict, [t.tokenHash, t.tokenId])).length > 0) {
        throw new SigilError('ERR_ALREADY_EXISTS', `join token ${t.tokenId} already exists`, { reason: 'token-exists' });
      }
      const now = this.#clock.nowMs();
      await tx.run(SQL.insertToken, [t.tokenHash, t.tokenId, t.expiresAt, now]);
      const created = { ...t, createdAt: now, spentBy: '' };
      await appendAudit(tx, audit, created, now);
      return created;
    });
  }

  /** Expired tokens are returned too: the caller checks `expiresAt` and can say "expired" rather than "unknown". */
  async getJoinToken(tokenHash: string): Promise<JoinTokenRecord | undefined> {
    checkTokenHash(tokenHash);
    return this.#tx('single', async (tx) => {
      const row = (await tx.all(SQL.getToken, [tokenHash]))[0];
      return row === undefined ? undefined : tokenFromRow(row);
    });
  }

  async listJoinTokens(): Promise<JoinTokenRecord[]> {
    return this.#tx('single', async (tx) => (await tx.all(SQL.listTokens)).map(tokenFromRow));
  }

  async pruneJoinTokens(beforeMs: number): Promise<number> {
    const before = validateTime(beforeMs, 'prune time');
    return this.#tx('write', (tx) => tx.run(SQL.pruneTokens, [before]));
  }

  // ---------------------------------------------------------------- bundles

  async getBundle(trustDomainId: string): Promise<BundleRecord | undefined> {
    const td = validateTrustDomainId(trustDomainId);
    return this.#tx('single', async (tx) => {
      const row = (await tx.all(SQL.getBundle, [td]))[0];
      return row === undefined ? undefined : bundleFromRow(row);
    });
  }

  async setBundle(trustDomainId: string, document: string, audit?: AuditFor<BundleRecord>): Promise<BundleRecord> {
    const td = validateTrustDomainId(trustDomainId);
    const doc = validateBundleDocument(document);
    return this.#tx('write', async (tx) => {
      const now = this.#clock.nowMs();
      await tx.run(SQL.setBundle, [td, doc, now]);
      const record = { trustDomainId: td, document: doc, updatedAt: now };
      await appendAudit(tx, audit, record, now);
      await this.#signal(tx, 'bundles');
      return record;
    });
  }

  /** ERR_NOT_FOUND (reason `bundle-not-found`) when there is no bundle for the trust domain. */
  async deleteBundle(trustDomainId: string, audit?: AuditFor<string>): Promise<void> {
    const td = validateTrustDomainId(trustDomainId);
    await this.#tx('write', async (tx) => {
      if ((await tx.run(SQL.deleteBundle, [td])) === 0) throw notFound('bundle-not-found', `no bundle for ${td}`);
      await appendAudit(tx, audit, td, this.#clock.nowMs());
    });
  }

  async listBundles(): Promise<BundleRecord[]> {
    return this.#tx('single', async (tx) => (await tx.all(SQL.listBundles)).map(bundleFromRow));
  }

  async mergeBundle(
    trustDomainId: string,
    merge: (current: BundleRecord | undefined, journals: readonly CaJournalRecord[]) => string | undefined,
  ): Promise<{ record: BundleRecord | undefined; changed: boolean }> {
    const td = validateTrustDomainId(trustDomainId);
    return this.#tx('write', async (tx) => {
      const row = (await tx.all(SQL.getBundle, [td]))[0];
      const current = row === undefined ? undefined : bundleFromRow(row);
      const journals = (await tx.all(SQL.listJournals, [td])).map(journalFromRow);
      const next = merge(current, journals);
      if (next === undefined || next === current?.document) return { record: current, changed: false };
      const doc = validateBundleDocument(next);
      const now = this.#clock.nowMs();
      await tx.run(SQL.setBundle, [td, doc, now]);
      await this.#signal(tx, 'bundles');
      return { record: { trustDomainId: td, document: doc, updatedAt: now }, changed: true };
    });
  }

  // ---------------------------------------------------------------- federation (sql-federation-store.ts)

  createFederationRelationship(rel: FederationRelationshipFields, audit?: AuditFor<FederationRelationship>): Promise<FederationRelationship> {
    return this.#federation.create(rel, audit);
  }

  getFederationRelationship(trustDomainId: string): Promise<FederationRelationship | undefined> {
    return this.#federation.get(trustDomainId);
  }

  listFederationRelationships(): Promise<FederationRelationship[]> {
    return this.#federation.list();
  }

  updateFederationRelationship(rel: FederationRelationshipFields, audit?: AuditFor<FederationRelationship>): Promise<FederationRelationship> {
    return this.#federation.update(rel, audit);
  }

  deleteFederationRelationship(trustDomainId: string, audit?: AuditFor<FederationRelationship>): Promise<FederationRelationship> {
    return this.#federation.delete(trustDomainId, audit);
  }

  claimFederationRefresh(trustDomainId: string, holder: string, now: number, leaseUntil: number, force?: boolean): Promise<boolean> {
    return this.#federation.claim(trustDomainId, holder, now, leaseUntil, force);
  }

  recordFederationRefresh(trustDomainId: string, holder: string, outcome: FederationRefreshOutcome): Promise<boolean> {
    return this.#federation.record(trustDomainId, holder, outcome);
  }

  // ---------------------------------------------------------------- CA journal

  async getCaJournal(trustDomainId: string, serverId: string): Promise<Uint8Array | undefined> {
    const td = validateTrustDomainId(trustDomainId);
    const sid = validateServerId(serverId);
    return this.#tx('single', async (tx) => {
      const row = (await tx.all(SQL.getJournal, [td, sid]))[0];
      // A plain copy: callers must not see (or keep alive) a driver's pooled buffer.
      return row === undefined ? undefined : new Uint8Array(row['journal'] as Uint8Array);
    });
  }

  async setCaJournal(trustDomainId: string, serverId: string, journal: Uint8Array, audit?: AuditFor<string>): Promise<void> {
    const td = validateTrustDomainId(trustDomainId);
    const sid = validateServerId(serverId);
    if (!(journal instanceof Uint8Array)) {
      throw new SigilError('ERR_INVALID_ARGUMENT', 'ca journal must be bytes', { reason: 'invalid-journal' });
    }
    await this.#tx('write', async (tx) => {
      const now = this.#clock.nowMs();
      await tx.run(SQL.setJournal, [td, sid, Buffer.from(journal), now]);
      await appendAudit(tx, audit, td, now);
      await this.#signal(tx, 'bundles');
    });
  }

  async updateCaJournal(
    trustDomainId: string,
    serverId: string,
    update: (current: Uint8Array | undefined) => Uint8Array | undefined,
    audit?: AuditFor<string>,
  ): Promise<boolean> {
    const td = validateTrustDomainId(trustDomainId);
    const sid = validateServerId(serverId);
    return this.#tx('write', async (tx) => {
      const row = (await tx.all(SQL.getJournal, [td, sid]))[0];
      const next = update(row === undefined ? undefined : new Uint8Array(row['journal'] as Uint8Array));
      if (next === undefined) return false;
      if (!(next instanceof Uint8Array)) {
        throw new SigilError('ERR_INVALID_ARGUMENT', 'ca journal must be bytes', { reason: 'invalid-journal' });
      }
      const now = this.#clock.nowMs();
      await tx.run(SQL.setJournal, [td, sid, Buffer.from(next), now]);
      await appendAudit(tx, audit, td, now);
      await this.#signal(tx, 'bundles');
      return true;
    });
  }

  async deleteCaJournal(trustDomainId: string, serverId: string): Promise<void> {
    const td = validateTrustDomainId(trustDomainId);
    const sid = validateServerId(serverId);
    await this.#tx('write', async (tx) => {
      if ((await tx.run(SQL.deleteJournal, [td, sid])) === 0) throw notFound('journal-not-found', `no CA journal of server ${JSON.stringify(sid)} for ${td}`);
      await this.#signal(tx, 'bundles');
    });
  }

  async listCaJournals(trustDomainId: string): Promise<CaJournalRecord[]> {
    const td = validateTrustDomainId(trustDomainId);
    return this.#tx('read', async (tx) => (await tx.all(SQL.listJournals, [td])).map(journalFromRow));
  }

  // ---------------------------------------------------------------- audit trail (sql-audit-store.ts)

  listAuditRecords(afterSeq: number, limit?: number): Promise<StoredAuditRecord[]> {
    return this.#audit.list(afterSeq, limit);
  }

  getAuditCursor(name: string): Promise<number> {
    return this.#audit.getCursor(name);
  }

  setAuditCursor(name: string, seq: number): Promise<void> {
    return this.#audit.setCursor(name, seq);
  }

  pruneAuditRecords(beforeMs: number, throughSeq: number): Promise<number> {
    return this.#audit.prune(beforeMs, throughSeq);
  }

  async close(): Promise<void> {
    await this.#driver.close();
  }
}
