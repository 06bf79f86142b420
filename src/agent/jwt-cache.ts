/**
 * JWT-SVIDs minted for workloads, kept per (entry, audience set) until half of their
 * lifetime has passed, so a burst of FetchJWTSVID calls costs one server round trip.
 * Bounded: past `maxSize` the oldest token is dropped. Tokens are held only as Secrets.
 */
import type { Secret } from '../common/secret.js';

/** One cached token. */
export interface CachedJwtSvid {
  readonly token: Secret<string>;
  readonly spiffeId: string;
  readonly issuedAtMs: number;
  readonly expiresAtMs: number;
  /** When the agent received it (its own clock): a server clock that disagrees must not keep a token past half its life. */
  readonly receivedAtMs: number;
}

/** The `kid` of a compact JWS's protected header (not secret); undefined when unreadable. */
function kidOf(token: string): string | undefined {
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, token.indexOf('.')), 'base64url').toString('utf8'));
    return typeof header === 'object' && header !== null && 'kid' in header && typeof header.kid === 'string' ? header.kid : undefined;
  } catch {
    return undefined;
  }
}

/** The cache key of an audience set: order and repeats do not matter. */
export function audienceKey(entryId: string, audience: readonly string[]): string {
  return `${entryId}\u0000${[...new Set(audience)].sort().join('\u0000')}`;
}

/** A bounded map of fresh JWT-SVIDs. */
export class JwtSvidCache {
  readonly #maxSize: number;
  readonly #items = new Map<string, CachedJwtSvid>();

  constructor(maxSize = 1000) {
    this.#maxSize = maxSize;
  }

  /** The cached token for the key when less than half of its life has passed at `nowMs`. */
  get(key: string, nowMs: number): CachedJwtSvid | undefined {
    const item = this.#items.get(key);
    if (item === undefined) return undefined;
    const start = Math.max(item.issuedAtMs, Math.min(item.receivedAtMs, item.expiresAtMs));
    const halfLife = start + (item.expiresAtMs - start) / 2;
    if (nowMs >= halfLife) {
      this.#items.delete(key);
      return undefined;
    }
    return item;
  }

  /** Stores a token, dropping the oldest when full. */
  put(key: string, item: CachedJwtSvid): void {
    this.#items.delete(key);
    this.#items.set(key, item);
    while (this.#items.size > this.#maxSize) {
      const oldest = this.#items.keys().next().value as string;
      this.#items.delete(oldest);
    }
  }

  /** Drops every token of an entry (it changed or was removed). */
  dropEntry(entryId: string): void {
    const prefix = `${entryId}\u0000`;
    for (const k of [...this.#items.keys()]) if (k.startsWith(prefix)) this.#items.delete(k);
  }

  /** Drops every token whose JOSE header names one of `kids` (a tainted signing key); returns how many went. */
  dropSignedBy(kids: ReadonlySet<string>): number {
    let dropped = 0;
    for (const [k, item] of [...this.#items]) {
      if (kids.has(kidOf(item.token.reveal()) ?? '')) {
        this.#items.delete(k);
        dropped++;
      }
    }
    return dropped;
  }

  /** Number of cached tokens. */
  get size(): number {
    return this.#items.size;
  }
}
