/**
 * The trust bundles the agent serves workloads: its own trust domain's (the one stored at the
 * last run until the first entry sync brings the server's) and the federated ones, each with
 * its Workload API form computed once, and a version that changes with any of them.
 */
import type { Logger } from '../common/logger.js';
import { Bundle } from '../spiffe/bundle.js';
import { TrustDomain } from '../spiffe/spiffe-id.js';
import type { TrustDomainBundle } from './workload-api/identity-source.js';
import type { WireBundle } from './server-client.js';

/** Options of WorkloadBundles: the SVID cache's own (see SvidCacheOptions). */
export interface WorkloadBundlesOptions {
  readonly trustDomain: TrustDomain;
  readonly logger: Logger;
  readonly onRoots?: (roots: Buffer[]) => void;
  readonly storedBundle?: Bundle;
  readonly onOwnBundle?: (bundle: Bundle) => void;
}

/** A bundle with its Workload API form. */
export interface ServedBundle {
  readonly bundle: Bundle;
  readonly wire: TrustDomainBundle;
}

/** The Workload API form of a bundle. */
function toTrustDomainBundle(b: Bundle): TrustDomainBundle {
  return {
    trustDomainId: b.trustDomain.idString,
    x509AuthoritiesDer: Buffer.from(b.x509ToDer()),
    jwtKeysJwks: Buffer.from(b.jwtToJwksBytes()),
  };
}

/** The own and federated bundles, as the last entry sync (or the data dir) gave them. */
export class WorkloadBundles {
  readonly #o: WorkloadBundlesOptions;
  #own: Bundle | undefined;
  #ownWire: TrustDomainBundle | undefined;
  #federated = new Map<string, ServedBundle>();
  #version = 0;
  /** Whether #own came from the server (not only from the data dir). */
  #ownFromServer = false;

  constructor(options: WorkloadBundlesOptions) {
    this.#o = options;
    const stored = options.storedBundle;
    if (stored !== undefined && stored.trustDomain.equals(options.trustDomain)) {
      this.#own = stored;
      this.#ownWire = toTrustDomainBundle(stored);
      this.#version++;
    }
  }

  /** The own trust domain's bundle, once known. */
  get own(): Bundle | undefined {
    return this.#own;
  }

  /** The own bundle's Workload API form, once known. */
  get ownWire(): TrustDomainBundle | undefined {
    return this.#ownWire;
  }

  /** Changes whenever anything a workload sees of the bundles changes. */
  get version(): number {
    return this.#version;
  }

  /** A federated trust domain's bundle (by trust domain ID), if the server sent one. */
  federated(trustDomainId: string): ServedBundle | undefined {
    return this.#federated.get(trustDomainId);
  }

  /** Replaces the bundles; true when anything a workload sees changed. */
  apply(own: WireBundle, federated: readonly WireBundle[]): boolean {
    const parse = (w: WireBundle): Bundle => Bundle.parseJwks(TrustDomain.parse(w.trust_domain_id), w.document);
    let changed = false;
    try {
      const b = parse(own);
      const fromServer = this.#ownFromServer;
      this.#ownFromServer = true;
      if (this.#own === undefined || !this.#own.equals(b)) {
        const rootsChanged = !fromServer || this.#own === undefined || !this.#own.sameAuthorities(b);
        this.#own = b;
        this.#ownWire = toTrustDomainBundle(b);
        changed = true;
        if (rootsChanged) this.#o.onRoots?.(b.x509AuthoritiesDer().map((d) => Buffer.from(d)));
        this.#o.onOwnBundle?.(b);
        this.#o.logger.info({ bundle: b }, 'trust bundle updated');
      } else if (!fromServer) {
        // The server confirms the stored bundle: trust exactly its roots from now on (not the bootstrap file's too).
        this.#o.onRoots?.(b.x509AuthoritiesDer().map((d) => Buffer.from(d)));
      }
    } catch (err) {
      this.#o.logger.error({ err }, 'server sent an unusable trust bundle; keeping the previous one');
    }
    const fed = new Map<string, ServedBundle>();
    for (const w of federated) {
      try {
        const b = parse(w);
        const old = this.#federated.get(b.trustDomain.idString);
        fed.set(b.trustDomain.idString, old !== undefined && old.bundle.equals(b) ? old : { bundle: b, wire: toTrustDomainBundle(b) });
      } catch (err) {
        this.#o.logger.warn({ err, trustDomain: w.trust_domain_id }, 'ignoring unusable federated bundle');
      }
    }
    if (fed.size !== this.#federated.size || [...fed].some(([k, v]) => this.#federated.get(k) !== v)) changed = true;
    this.#federated = fed;
    if (changed) this.#version++;
    return changed;
  }
}
