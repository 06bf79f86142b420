/**
 * The bundles a verifier trusts, keyed by trust domain name: the own trust domain plus the
 * federated ones. Mutable holder of immutable Bundle values.
 */
import type { Bundle, BundleSource } from './bundle.js';
import { TrustDomain } from './spiffe-id.js';

function nameOf(td: TrustDomain | string): string {
  return typeof td === 'string' ? TrustDomain.parse(td).name : td.name;
}

/** A set of bundles, at most one per trust domain. */
export class BundleSet implements BundleSource {
  readonly #byName = new Map<string, Bundle>();

  /** A set holding the given bundles (a later one replaces an earlier one of the same trust domain). */
  constructor(bundles: Iterable<Bundle> = []) {
    for (const b of bundles) this.set(b);
  }

  /** The bundle of `td` (a TrustDomain, `example.org` or `spiffe://example.org`). */
  get(td: TrustDomain | string): Bundle | undefined {
    return this.#byName.get(nameOf(td));
  }

  /** BundleSource: the bundle of `td`. */
  getBundleForTrustDomain(td: TrustDomain): Bundle | undefined {
    return this.#byName.get(td.name);
  }

  /** True when a bundle for `td` is held. */
  has(td: TrustDomain | string): boolean {
    return this.#byName.has(nameOf(td));
  }

  /** Adds or replaces the bundle of the bundle's own trust domain. */
  set(bundle: Bundle): void {
    this.#byName.set(bundle.trustDomain.name, bundle);
  }

  /** Removes the bundle of `td`; true when there was one. */
  delete(td: TrustDomain | string): boolean {
    return this.#byName.delete(nameOf(td));
  }

  /** Number of bundles held. */
  get size(): number {
    return this.#byName.size;
  }

  /** The bundles, sorted by trust domain name (stable output for the Workload API and tests). */
  list(): Bundle[] {
    return [...this.#byName.keys()].sort().map((k) => this.#byName.get(k)!);
  }

  /** The trust domains held, sorted by name. */
  trustDomains(): TrustDomain[] {
    return this.list().map((b) => b.trustDomain);
  }

  /** A shallow copy (bundles are immutable, so this is a full snapshot). */
  clone(): BundleSet {
    return new BundleSet(this.#byName.values());
  }

  /** True when both hold equal bundles for the same trust domains. */
  equals(other: BundleSet): boolean {
    if (this.size !== other.size) return false;
    for (const [name, b] of this.#byName) {
      const o = other.#byName.get(name);
      if (o === undefined || !o.equals(b)) return false;
    }
    return true;
  }

  [Symbol.iterator](): IterableIterator<Bundle> {
    return this.list()[Symbol.iterator]();
  }
}
