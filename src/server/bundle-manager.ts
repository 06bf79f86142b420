/**
 * Keeps the trust domain's bundle document in the datastore in step with the CA authorities
 * of every server sharing it, and serves own and federated bundles to the APIs. The own
 * bundle is the merge of every server's CA journal (each server's prepared, active and old
 * authorities), computed and written in one datastore transaction under the write lock, so
 * no server overwrites another's authorities; `spiffe_sequence` goes up on every change
 * whichever server made it. Authorities leave only when their owner's journal drops them
 * (pruned, revoked) or they expire. Every server polls the stored bundle and journals, so a
 * change made by another server reaches its agents too. Documents are SPIFFE bundles
 * (src/spiffe's Bundle); each stored document is parsed once and reused until it changes.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { AuditFor, Datastore, BundleRecord, CaJournalRecord } from '../datastore/datastore.js';
import type { Logger } from '../common/logger.js';
import { logRetry } from '../common/retry-log.js';
import { SigilError } from '../common/errors.js';
import { decodeCaJournal, drainedAt } from '../ca/ca-journal.js';
import { Bundle } from '../spiffe/bundle.js';
import { TrustDomain } from '../spiffe/spiffe-id.js';
import type { ChangeHub } from './change-hub.js';
import type { ServerCa } from './server-ca.js';

/** A stored bundle with its parsed value. */
export interface ParsedBundleRecord {
  readonly record: BundleRecord;
  readonly bundle: Bundle;
  /** Own bundle only: subject key identifiers of the tainted X.509 authorities (see agent.proto's Bundle). */
  readonly taintedX509SubjectKeyIds?: readonly Buffer[];
  /** Own bundle only: kids of the tainted JWT signing keys. */
  readonly taintedJwtKeyIds?: readonly string[];
}

/** Serialises a bundle as the compact JSON document stored and sent to agents. */
export function bundleDocument(bundle: Bundle): string {
  return JSON.stringify(bundle.toJwksObject());
}

/** What the merge of every server's journal yields. */
interface MergedAuthorities {
  readonly x509: Buffer[];
  readonly jwt: Array<[string, KeyObject]>;
  readonly taintedX509: string[];
  readonly taintedJwt: string[];
  /** Removed servers (sigil server remove) none of whose authorities is left: their journals can go. */
  readonly drained: string[];
  /** Every journal's owner, `!` after a removed one (`srv-a,srv-b!`): a change is a server joining, removed or deleted. */
  readonly servers: string;
}

/**
 * The live authorities of every journal (servers in ID order, each in journal order; JWT keys
 * sorted by kid), so equal journals give equal text. Expired ones are left out; an unreadable
 * journal is skipped (logged) rather than taking every other server's authorities with it.
 */
function mergeJournals(journals: readonly CaJournalRecord[], nowMs: number, logger: Logger): MergedAuthorities {
  const x509: Buffer[] = [];
  const jwt = new Map<string, KeyObject>();
  const taintedX509 = new Set<string>();
  const taintedJwt = new Set<string>();
  const drained: string[] = [];
  const servers: string[] = [];
  for (const j of journals) {
    let journal;
    try {
      journal = decodeCaJournal(j.journal);
    } catch (err) {
      logger.warn({ serverId: j.serverId, err }, 'skipping an unreadable CA journal');
      continue;
    }
    // a removed server signs nothing more: each of its authorities goes once what it signed has expired
    const removed = journal.removedAt !== undefined;
    servers.push(`${j.serverId}${removed ? '!' : ''}`);
    const gone = (r: { notAfter: number; signedUntil: number }): boolean => r.notAfter <= nowMs || (removed && r.signedUntil <= nowMs);
    if (removed && drainedAt(journal) <= nowMs) drained.push(j.serverId);
    for (const r of journal.x509) {
      if (gone(r)) continue;
      for (const a of r.anchors) {
        const der = Buffer.from(a, 'base64');
        if (!x509.some((x) => x.equals(der))) x509.push(der);
      }
      if (r.tainted) taintedX509.add(r.id);
    }
    for (const r of journal.jwt) {
      if (gone(r)) continue;
      if (!jwt.has(r.id)) jwt.set(r.id, createPublicKey({ key: Buffer.from(r.publicKey, 'base64'), format: 'der', type: 'spki' }));
      if (r.tainted) taintedJwt.add(r.id);
    }
  }
  return {
    x509,
    jwt: [...jwt].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)),
    taintedX509: [...taintedX509].sort(),
    taintedJwt: [...taintedJwt].sort(),
    drained,
    servers: servers.sort().join(','),
  };
}

/** How often every server reads the shared bundle and journals for changes other servers made. */
export const BUNDLE_POLL_MS = 1000;

/** Own and federated bundles. */
export class BundleManager {
  readonly #ds: Datastore;
  readonly #td: TrustDomain;
  readonly #refreshHintSeconds: number;
  readonly #hub: ChangeHub;
  readonly #logger: Logger;
  readonly #now: () => number;
  /** Last parsed document per trust domain ID: parsing imports every key, which costs more than a signature. */
  readonly #parsed = new Map<string, { document: string; bundle: Bundle }>();
  #ca: ServerCa | undefined;
  #syncing: Promise<void> = Promise.resolve();
  /** Tainted authority IDs of every server, as last read: a taint leaves the document alone but must still reach agents. */
  #tainted = { x509: [] as string[], jwt: [] as string[] };
  /** The own document last read or written. */
  #document: string | undefined;
  #x509Anchors: Buffer[] = [];
  readonly #listeners = new Set<() => void>();
  readonly #serverListeners = new Set<() => void>();
  /** The servers' key of the last merge (MergedAuthorities.servers). */
  #servers: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #unwatch: (() => void) | undefined;
  readonly #onCaChange = (): void => void this.syncOwn().catch((err: unknown) => this.#logger.error({ err }, 'bundle update failed'));

  constructor(options: { ds: Datastore; trustDomain: TrustDomain; refreshHintSeconds: number; hub: ChangeHub; logger: Logger; now: () => number }) {
    this.#ds = options.ds;
    this.#td = options.trustDomain;
    this.#refreshHintSeconds = options.refreshHintSeconds;
    this.#hub = options.hub;
    this.#logger = options.logger;
    this.#now = options.now;
  }

  /** Stores the merged authorities, follows `ca`'s changes, and polls for other servers' changes every `pollMs`. */
  async start(ca: ServerCa, pollMs = BUNDLE_POLL_MS): Promise<void> {
    await this.syncOwn();
    this.#ca = ca;
    ca.on('bundle-changed', this.#onCaChange);
    // a daemon's timer (DESIGN.md, Processes): ref'd, and cleared by stop()
    const tick = (): void => {
      if (this.#stopped) return;
      void this.syncOwn({ readFirst: true })
        .catch((err: unknown) => logRetry(this.#logger, err, {}, 'bundle poll failed'))
        .finally(() => {
          if (!this.#stopped) this.#timer = setTimeout(tick, pollMs);
        });
    };
    this.#timer = setTimeout(tick, pollMs);
    // another server's change wakes this one at once (PostgreSQL); the poll catches lost ones
    this.#unwatch = await this.#ds.watchChanges((change) => {
      if (change === 'bundles' && !this.#stopped) void this.syncOwn({ readFirst: true }).catch((err: unknown) => this.#logger.warn({ err }, 'bundle refresh failed'));
    });
  }

  /** Stops following the CA and polling. */
  stop(): void {
    this.#stopped = true;
    this.#unwatch?.();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#ca?.off('bundle-changed', this.#onCaChange);
  }

  /** Waits for pending bundle updates (tests). */
  async settled(): Promise<void> {
    await this.#syncing;
  }

  /** Calls `listener` whenever the own bundle or the tainted set changes (whoever changed it); returns its unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Calls `listener` whenever the set of servers' journals changes: one joins, is marked
   * removed (sigil server remove) or is deleted. A running server checks then whether it is
   * the one removed. Returns the unsubscribe function.
   */
  onServersChanged(listener: () => void): () => void {
    this.#serverListeners.add(listener);
    return () => this.#serverListeners.delete(listener);
  }

  /** The X.509 authorities of the own bundle as last read (every server's CAs): what agents' SVIDs may chain to. */
  x509Anchors(): Buffer[] {
    return [...this.#x509Anchors];
  }

  /**
   * Brings the stored own bundle in step with every server's journal: one merge under the
   * write lock, writing (with the next sequence number) only when the authorities or the
   * refresh hint differ. Runs after every update already queued, so one change is one write.
   * `readFirst` (the poll) reads without the write lock and merges only when something differs.
   */
  syncOwn(options: { readFirst?: boolean } = {}): Promise<void> {
    const run = this.#syncing.then(() => this.#syncOwnNow(options.readFirst === true));
    this.#syncing = run.catch(() => undefined); // the caller gets the error
    return run;
  }

  /** The new document for `current`, or undefined when it already holds `merged`. */
  #mergedDocument(current: BundleRecord | undefined, merged: MergedAuthorities): string | undefined {
    const old = current === undefined ? undefined : this.parse(current);
    const storedSeq = old?.sequenceNumber ?? 0;
    const next = Bundle.create(this.#td, { x509Authorities: merged.x509, jwtAuthorities: merged.jwt, sequenceNumber: storedSeq, refreshHintSeconds: this.#refreshHintSeconds });
    if (old !== undefined && old.sameAuthorities(next) && old.refreshHintSeconds === next.refreshHintSeconds) return undefined;
    return bundleDocument(next.with({ sequenceNumber: storedSeq + 1 }));
  }

  async #syncOwnNow(readFirst: boolean): Promise<void> {
    let merged: MergedAuthorities | undefined;
    let record: BundleRecord | undefined;
    let needsWrite = true;
    if (readFirst) {
      const [current, journals] = await Promise.all([this.#ds.getBundle(this.#td.idString), this.#ds.listCaJournals(this.#td.idString)]);
      merged = mergeJournals(journals, this.#now(), this.#logger);
      record = current;
      needsWrite = this.#mergedDocument(current, merged) !== undefined;
    }
    if (needsWrite) {
      const r = await this.#ds.mergeBundle(this.#td.idString, (current, journals) => {
        merged = mergeJournals(journals, this.#now(), this.#logger);
        return this.#mergedDocument(current, merged);
      });
      record = r.record;
      if (r.changed && record !== undefined) {
        this.#logger.info({ trustDomain: this.#td.name, sequence: this.parse(record).sequenceNumber }, 'trust bundle updated');
      }
    }
    this.#observe(record, merged);
    for (const serverId of merged?.drained ?? []) await this.#deleteDrained(serverId);
  }

  /** Deletes a removed server's journal once none of its authorities is left (whichever server gets there first). */
  async #deleteDrained(serverId: string): Promise<void> {
    try {
      await this.#ds.deleteCaJournal(this.#td.idString, serverId);
      this.#logger.info({ serverId }, 'removed server\'s authorities have all left the bundle; its CA journal deleted');
    } catch (err) {
      if (!(err instanceof SigilError && err.code === 'ERR_NOT_FOUND')) throw err;
    }
  }

  /** Tells agents (through the hub) and listeners when the stored document or the tainted set changed. */
  #observe(record: BundleRecord | undefined, merged: MergedAuthorities | undefined): void {
    if (merged !== undefined && merged.servers !== this.#servers) {
      this.#servers = merged.servers;
      for (const l of [...this.#serverListeners]) l();
    }
    let changed = false;
    if (record !== undefined && record.document !== this.#document) {
      this.#document = record.document;
      this.#x509Anchors = this.parse(record).x509Authorities.map((c) => Buffer.from(c.der));
      changed = true;
    }
    if (merged !== undefined) {
      const tainted = { x509: merged.taintedX509, jwt: merged.taintedJwt };
      if (tainted.x509.join(',') !== this.#tainted.x509.join(',') || tainted.jwt.join(',') !== this.#tainted.jwt.join(',')) {
        this.#tainted = tainted;
        this.#logger.info({ taintedX509Authorities: tainted.x509, taintedJwtKeys: tainted.jwt }, 'tainted authorities changed; pushing bundles to agents');
        changed = true;
      }
    }
    if (!changed) return;
    this.#hub.notify('bundles');
    for (const l of [...this.#listeners]) l();
  }

  /** Parses a stored bundle record (cached per document); throws ERR_INVALID_BUNDLE on a malformed one. */
  parse(record: BundleRecord): Bundle {
    const hit = this.#parsed.get(record.trustDomainId);
    if (hit !== undefined && hit.document === record.document) return hit.bundle;
    const bundle = Bundle.parseJwks(TrustDomain.parse(record.trustDomainId), record.document);
    this.#parsed.set(record.trustDomainId, { document: record.document, bundle });
    return bundle;
  }

  /** The own bundle record. */
  async own(): Promise<BundleRecord> {
    const b = await this.#ds.getBundle(this.#td.idString);
    if (b === undefined) throw new SigilError('ERR_UNAVAILABLE', 'trust bundle is not ready yet', { reason: 'bundle-not-ready' });
    return b;
  }

  /** The own bundle record with its parsed value and the tainted X.509 authorities' key identifiers. */
  async ownParsed(): Promise<ParsedBundleRecord> {
    const record = await this.own();
    return {
      record,
      bundle: this.parse(record),
      taintedX509SubjectKeyIds: this.#taintedIds('x509').map((id) => Buffer.from(id, 'hex')),
      taintedJwtKeyIds: this.#taintedIds('jwt'),
    };
  }

  /** Sorted IDs (X.509: hex SKIs; JWT: kids) of every server's tainted live authorities, as last read. */
  #taintedIds(kind: 'x509' | 'jwt'): string[] {
    return [...this.#tainted[kind]];
  }

  /** Every federated bundle, sorted by trust domain ID. */
  async federated(): Promise<BundleRecord[]> {
    const all = await this.#ds.listBundles();
    return all.filter((b) => b.trustDomainId !== this.#td.idString).sort((a, b) => (a.trustDomainId < b.trustDomainId ? -1 : 1));
  }

  /** Every federated bundle with its parsed value, sorted by trust domain ID. */
  async federatedParsed(): Promise<ParsedBundleRecord[]> {
    return (await this.federated()).map((record) => ({ record, bundle: this.parse(record) }));
  }

  /** Parses `example.org` or `spiffe://example.org` and refuses the own trust domain. */
  federatedId(text: string): string {
    const td = TrustDomain.parse(text);
    if (td.equals(this.#td)) {
      throw new SigilError('ERR_INVALID_ARGUMENT', `${td.name} is the server's own trust domain, not a federated one`, { reason: 'own-trust-domain' });
    }
    return td.idString;
  }

  /**
   * Creates or replaces a federated bundle. The document is validated and stored in its
   * canonical form, so members the standard does not define (or private key material an
   * operator pasted by mistake) are never handed on to agents. `audit` is stored with the change.
   */
  async setFederated(trustDomain: string, document: string | Bundle, audit?: AuditFor<BundleRecord>): Promise<BundleRecord> {
    const id = this.federatedId(trustDomain);
    const bundle = typeof document === 'string' ? Bundle.parseJwks(TrustDomain.parse(id), document) : document;
    if (bundle.trustDomain.idString !== id) {
      throw new SigilError('ERR_INVALID_ARGUMENT', `bundle of ${bundle.trustDomain.name} cannot be stored as ${id}`, { reason: 'bundle-trust-domain' });
    }
    const rec = await this.#ds.setBundle(id, bundleDocument(bundle), audit);
    this.#hub.notify('bundles');
    return rec;
  }

  /** Deletes a federated bundle (with `audit` in the same transaction); ERR_NOT_FOUND when absent. */
  async deleteFederated(trustDomain: string, audit?: AuditFor<string>): Promise<void> {
    const id = this.federatedId(trustDomain);
    if ((await this.#ds.getBundle(id)) === undefined) {
      throw new SigilError('ERR_NOT_FOUND', `no federated bundle for ${id}`, { reason: 'bundle-not-found' });
    }
    await this.#ds.deleteBundle(id, audit);
    this.#parsed.delete(id);
    this.#hub.notify('bundles');
  }
}
