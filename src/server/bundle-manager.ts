/**
 * Keeps the server's own bundle document in the datastore in step with the CA's
 * authorities (bumping `spiffe_sequence` on every change) and serves own and federated
 * bundles to the APIs.
 */
import type { Datastore, BundleRecord } from '../datastore/datastore.js';
import type { Logger } from '../common/logger.js';
import { SigilError } from '../common/errors.js';
import { TrustDomain } from '../spiffe/spiffe-id.js';
import { buildBundleDocument, readBundleDocument } from './bundle-document.js';
import type { ChangeHub } from './change-hub.js';
import type { ServerCa } from './server-ca.js';

/** Own and federated bundles. */
export class BundleManager {
  readonly #ds: Datastore;
  readonly #ca: ServerCa;
  readonly #td: TrustDomain;
  readonly #refreshHintSeconds: number;
  readonly #hub: ChangeHub;
  readonly #logger: Logger;
  #syncing: Promise<void> = Promise.resolve();
  readonly #onCaChange = (): void => {
    this.#syncing = this.#syncing.then(() => this.syncOwn()).catch((err: unknown) => this.#logger.error({ err }, 'bundle update failed'));
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
    this.#ca.on('bundle-changed', this.#onCaChange);
  }

  stop(): void {
    this.#ca.off('bundle-changed', this.#onCaChange);
  }

  /** Waits for pending bundle updates (tests). */
  async settled(): Promise<void> {
    await this.#syncing;
  }

  /** Writes the own bundle when the CA's authorities differ from the stored document. */
  async syncOwn(): Promise<void> {
    const id = this.#td.idString;
    const stored = await this.#ds.getBundle(id);
    const storedSeq = stored === undefined ? 0 : readBundleDocument(stored.document).sequence;
    const build = (sequence: number): string =>
      buildBundleDocument({
        x509Authorities: this.#ca.x509Authorities(),
        jwtAuthorities: this.#ca.jwtAuthorities(),
        sequence,
        refreshHintSeconds: this.#refreshHintSeconds,
      });
    if (stored !== undefined && build(storedSeq) === stored.document) return;
    const seq = storedSeq + 1;
    await this.#ds.setBundle(id, build(seq));
    this.#logger.info({ trustDomain: this.#td.name, sequence: seq }, 'trust bundle updated');
    this.#hub.notify('bundles');
  }

  /** The own bundle record. */
  async own(): Promise<BundleRecord> {
    const b = await this.#ds.getBundle(this.#td.idString);
    if (b === undefined) throw new SigilError('ERR_UNAVAILABLE', 'trust bundle is not ready yet', { reason: 'bundle-not-ready' });
    return b;
  }

  /** Every federated bundle, sorted by trust domain ID. */
  async federated(): Promise<BundleRecord[]> {
    const all = await this.#ds.listBundles();
    return all.filter((b) => b.trustDomainId !== this.#td.idString).sort((a, b) => (a.trustDomainId < b.trustDomainId ? -1 : 1));
  }

  /** Parses `example.org` or `spiffe://example.org` and refuses the own trust domain. */
  federatedId(text: string): string {
    const td = TrustDomain.parse(text);
    if (td.equals(this.#td)) {
      throw new SigilError('ERR_INVALID_ARGUMENT', `${td.name} is the server's own trust domain, not a federated one`, { reason: 'own-trust-domain' });
    }
    return td.idString;
  }

  /** Creates or replaces a federated bundle after validating its document. */
  async setFederated(trustDomain: string, document: string): Promise<BundleRecord> {
    const id = this.federatedId(trustDomain);
    readBundleDocument(document);
    const rec = await this.#ds.setBundle(id, document);
    this.#hub.notify('bundles');
    return rec;
  }

  /** Deletes a federated bundle; ERR_NOT_FOUND when absent. */
  async deleteFederated(trustDomain: string): Promise<void> {
    const id = this.federatedId(trustDomain);
    if ((await this.#ds.getBundle(id)) === undefined) {
      throw new SigilError('ERR_NOT_FOUND', `no federated bundle for ${id}`, { reason: 'bundle-not-found' });
    }
    await this.#ds.deleteBundle(id);
    this.#hub.notify('bundles');
  }
}
