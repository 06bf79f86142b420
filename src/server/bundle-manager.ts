/**
 * Keeps the server's own bundle document in the datastore in step with the CA's
 * authorities (bumping `spiffe_sequence` on every change) and serves own and federated
 * bundles to the APIs. Documents are SPIFFE bundles (src/spiffe's Bundle); each stored
 * document is parsed once and the value reused until the document changes.
 */
import type { KeyObject } from 'node:crypto';
import type { AuditFor, Datastore, BundleRecord } from '../datastore/datastore.js';
import type { Logger } from '../common/logger.js';
import { SigilError } from '../common/errors.js';
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

/** Own and federated bundles. */
export class BundleManager {
  readonly #ds: Datastore;
  readonly #ca: ServerCa;
  readonly #td: TrustDomain;
  readonly #refreshHintSeconds: number;
  readonly #hub: ChangeHub;
  readonly #logger: Logger;
  /** Last parsed document per trust domain ID: parsing imports every key, which costs more than a signature. */
  readonly #parsed = new Map<string, { document: string; bundle: Bundle }>();
  #syncing: Promise<void> = Promise.resolve();
  /** Tainted authority IDs last announced: a taint leaves the document alone but must still reach agents. */
  #tainted = '';
  readonly #onCaChange = (): void => {
    this.#syncing = this.#syncing
      .then(async () => {
        await this.#syncOwnNow();
        const tainted = this.#taintedKey();
        if (tainted === this.#tainted) return;
        this.#tainted = tainted;
        this.#logger.info({ taintedX509Authorities: this.#taintedIds('x509'), taintedJwtKeys: this.#taintedIds('jwt') }, 'tainted authorities changed; pushing bundles to agents');
        this.#hub.notify('bundles');
      })
      .catch((err: unknown) => this.#logger.error({ err }, 'bundle update failed'));
  };

  constructor(options: { ds: Datastore; ca: ServerCa; trustDomain: TrustDomain; refreshHintSeconds: number; hub: ChangeHub; logger: Logger }) {
    this.#ds = options.ds;
    this.#ca = options.ca;
    this.#td = options.trustDomain;
    this.#refreshHintSeconds = options.refreshHintSeconds;
    this.#hub = options.hub;
    this.#logger = options.logger;
  }

  /** Stores the current authorities and follows the CA's changes. */
  async start(): Promise<void> {
    await this.syncOwn();
    this.#tainted = this.#taintedKey();
    this.#ca.on('bundle-changed', this.#onCaChange);
  }

  /** Stops following the CA. */
  stop(): void {
    this.#ca.off('bundle-changed', this.#onCaChange);
  }

  /** Waits for pending bundle updates (tests). */
  async settled(): Promise<void> {
    await this.#syncing;
  }

  /** The CA's current authorities as a bundle (JWT keys sorted by kid, so equal authorities give equal text). */
  #caBundle(sequenceNumber: number): Bundle {
    const jwt = this.#ca
      .jwtAuthorities()
      .map((a): [string, KeyObject] => [a.kid, a.publicKey])
      .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    return Bundle.create(this.#td, {
      x509Authorities: this.#ca.x509Authorities(),
      jwtAuthorities: jwt,
      sequenceNumber,
      refreshHintSeconds: this.#refreshHintSeconds,
    });
  }

  /**
   * Writes the own bundle when the CA's authorities (or the refresh hint) differ from the stored
   * document. Runs after every update already queued (the CA's own change events included), so
   * one authority change is one write, one sequence number and one push however many callers ask.
   */
  syncOwn(): Promise<void> {
    const run = this.#syncing.then(() => this.#syncOwnNow());
    this.#syncing = run.catch(() => undefined); // the caller gets the error
    return run;
  }

  async #syncOwnNow(): Promise<void> {
    const stored = await this.#ds.getBundle(this.#td.idString);
    const old = stored === undefined ? undefined : this.parse(stored);
    const storedSeq = old?.sequenceNumber ?? 0;
    const current = this.#caBundle(storedSeq);
    if (old !== undefined && old.sameAuthorities(current) && old.refreshHintSeconds === current.refreshHintSeconds) return;
    const seq = storedSeq + 1;
    await this.#ds.setBundle(this.#td.idString, bundleDocument(current.with({ sequenceNumber: seq })));
    this.#logger.info({ trustDomain: this.#td.name, sequence: seq }, 'trust bundle updated');
    this.#hub.notify('bundles');
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

  /** Sorted IDs (X.509: hex SKIs; JWT: kids) of the tainted authorities the CA still holds. */
  #taintedIds(kind: 'x509' | 'jwt'): string[] {
    const all = this.#ca.status()[kind];
    return all
      .filter((a) => a.tainted)
      .map((a) => a.id)
      .sort();
  }

  #taintedKey(): string {
    return `${this.#taintedIds('x509').join(',')}/${this.#taintedIds('jwt').join(',')}`;
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
