/**
 * BundleSource: the trust bundles alone (X.509 and JWT authorities of every trust domain
 * the workload trusts), for services that verify peers but have no identity of their own
 * to present, or that want one object answering both kinds of lookup.
 */
import { EventEmitter } from 'node:events';
import { SigilError } from '../common/errors.js';
import type { Bundle, BundleSource as BundleLookup } from '../spiffe/bundle.js';
import { BundleSet } from '../spiffe/bundle-set.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';
import { DEFAULT_SOURCE_TIMEOUT_MS, SourceRunner, type SourceOptions } from './source-support.js';

/** Options of BundleSource.create. */
export type BundleSourceOptions = SourceOptions;

/** Events of a BundleSource. */
export interface BundleSourceEvents {
  /** The merged bundles changed (after either kind of update). */
  update: [bundles: BundleSet];
  /** A watch failure or an unusable update; the last good bundles stay. */
  watchError: [error: SigilError];
}

function merge(x509: BundleSet, jwt: BundleSet): BundleSet {
  const out = new BundleSet();
  const names = new Set([...x509.list(), ...jwt.list()].map((b) => b.trustDomain.name));
  for (const name of names) {
    const x = x509.get(name);
    const j = jwt.get(name);
    if (x !== undefined && j !== undefined) {
      out.set(x.with({ jwtAuthorities: [...j.jwtAuthorities].map(([kid, a]) => [kid, a.publicKey] as const) }));
    } else out.set((x ?? j) as Bundle);
  }
  return out;
}

/** A live source of X.509 and JWT bundles, merged per trust domain. */
export class BundleSource extends EventEmitter<BundleSourceEvents> implements BundleLookup {
  readonly #runner: SourceRunner;
  #x509: BundleSet | undefined;
  #jwt: BundleSet | undefined;
  #merged: BundleSet | undefined;
  #denied: SigilError | undefined;

  private constructor(options: BundleSourceOptions) {
    super();
    this.#runner = new SourceRunner(options);
  }

  /** Connects and waits until both X.509 and JWT bundles have arrived; rejects like X509Source.create. */
  static async create(options: BundleSourceOptions = {}, signal?: AbortSignal): Promise<BundleSource> {
    const source = new BundleSource(options);
    const onError = (e: SigilError): void => {
      if (source.listenerCount('watchError') > 0) source.emit('watchError', e);
    };
    await source.#runner.start(
      [
        (client, s, o) => client.watchX509Bundles({ onUpdate: (b) => source.#update(b, undefined), onError, onPermissionDenied: (e) => source.#deny(e) }, s, o),
        (client, s, o) => client.watchJwtBundles({ onUpdate: (b) => source.#update(undefined, b), onError, onPermissionDenied: (e) => source.#deny(e) }, s, o),
      ],
      () => source.#merged !== undefined,
      (listener) => {
        source.on('update', listener);
        return () => source.off('update', listener);
      },
      options.timeoutMs ?? DEFAULT_SOURCE_TIMEOUT_MS,
      signal,
    );
    return source;
  }

  /** Redacted bundles must not be used any more (Workload API §5.2.2, §6.2.2); both kinds go, a later update of each restores them. */
  #deny(err: SigilError): void {
    this.#x509 = undefined;
    this.#jwt = undefined;
    this.#merged = undefined;
    this.#denied = err;
  }

  #checkUsable(): void {
    this.#runner.checkOpen();
    if (this.#denied !== undefined) throw new SigilError('ERR_PERMISSION_DENIED', 'the agent denied this workload its bundles', { reason: 'permission-denied', cause: this.#denied });
  }

  #update(x509: BundleSet | undefined, jwt: BundleSet | undefined): void {
    if (this.#runner.closed) return;
    this.#x509 = x509 ?? this.#x509;
    this.#jwt = jwt ?? this.#jwt;
    if (this.#x509 === undefined || this.#jwt === undefined) return;
    this.#merged = merge(this.#x509, this.#jwt);
    this.#denied = undefined;
    this.emit('update', this.#merged);
  }

  /** Every bundle held, X.509 and JWT authorities merged per trust domain. */
  get bundles(): BundleSet {
    this.#checkUsable();
    return this.#merged as BundleSet;
  }

  /** The bundle of a trust domain (both kinds of authority), or undefined. */
  getBundleForTrustDomain(td: TrustDomain): Bundle | undefined {
    return this.bundles.getBundleForTrustDomain(td);
  }

  /** The X.509 bundle of a trust domain, or undefined. */
  getX509BundleForTrustDomain(td: TrustDomain): Bundle | undefined {
    this.#checkUsable();
    return this.#x509?.getBundleForTrustDomain(td);
  }

  /** The JWT bundle of a trust domain, or undefined. */
  getJwtBundleForTrustDomain(td: TrustDomain): Bundle | undefined {
    this.#checkUsable();
    return this.#jwt?.getBundleForTrustDomain(td);
  }

  /** Stops watching and, unless the client was shared, closes it. */
  close(): Promise<void> {
    return this.#runner.close();
  }
}
