/**
 * The JWT-SVIDs the agent mints for workloads: one server call per (entry, audience set) at a
 * time, shared by every caller that asks meanwhile, kept in the JwtSvidCache (jwt-cache.ts)
 * until half of its life has passed, dropped when its entry changes or goes and when the key
 * that signed it is tainted. Which entries a workload gets tokens for is the SVID cache's
 * business; this module only mints and keeps what it is asked for, as svid-minter.ts does for
 * X.509-SVIDs.
 */
import type { Clock } from '../common/clock.js';
import { SigilError, toSigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { Secret } from '../common/secret.js';
import type { IssuedJwtSvid } from './workload-api/identity-source.js';
import { isAgentRejected } from './agent-identity.js';
import { audienceKey, JwtSvidCache } from './jwt-cache.js';
import type { WireJwtSvid } from './server-client.js';

/** What the minter needs from the server. */
export interface JwtSvidIssuer {
  newJwtSvid(entryId: string, audience: readonly string[], signal?: AbortSignal): Promise<WireJwtSvid>;
}

/** The fields of an entry a JWT-SVID is minted for and served with. */
export interface JwtMintForm {
  readonly id: string;
  readonly hint: string;
}

/** Options of a JwtSvidMinter. */
export interface JwtSvidMinterOptions {
  readonly issuer: JwtSvidIssuer;
  readonly clock: Clock;
  readonly logger: Logger;
  /** The server refused the agent SVID: attest again. */
  readonly onRejected?: () => Promise<void>;
}

/** Mints, shares and caches the workloads' JWT-SVIDs. */
export class JwtSvidMinter {
  readonly #o: JwtSvidMinterOptions;
  readonly #cache = new JwtSvidCache();
  readonly #inFlight = new Map<string, Promise<IssuedJwtSvid>>();
  /** The tainted key IDs last acted on, sorted and joined: a repeat of the same set costs nothing. */
  #tainted = '';

  constructor(options: JwtSvidMinterOptions) {
    this.#o = options;
  }

  /** Number of cached tokens. */
  get size(): number {
    return this.#cache.size;
  }

  /**
   * A JWT-SVID of entry `e` for `audience`: the cached one while it is fresh, else the one
   * being minted for the same entry and audience set, else a new server call. Failures the
   * workload may retry become ERR_UNAVAILABLE (`reattesting`, `jwt-mint-failed`).
   */
  fetch(e: JwtMintForm, audience: readonly string[], signal?: AbortSignal): Promise<IssuedJwtSvid> {
    const key = audienceKey(e.id, audience);
    const cached = this.#cache.get(key, this.#o.clock.nowMs());
    if (cached !== undefined) return Promise.resolve({ spiffeId: cached.spiffeId, token: cached.token, hint: e.hint });
    let pending = this.#inFlight.get(key);
    if (pending === undefined) {
      pending = (async () => {
        try {
          const wire = await this.#o.issuer.newJwtSvid(e.id, audience, signal);
          const token = new Secret(wire.token);
          const issuedAtMs = Number(wire.issued_at) * 1000 || this.#o.clock.nowMs();
          this.#cache.put(key, { token, spiffeId: wire.spiffe_id, issuedAtMs, expiresAtMs: Number(wire.expires_at) * 1000, receivedAtMs: this.#o.clock.nowMs() });
          this.#o.logger.info({ entryId: e.id, spiffeId: wire.spiffe_id, expiresAt: new Date(Number(wire.expires_at) * 1000).toISOString() }, 'JWT-SVID minted');
          return { spiffeId: wire.spiffe_id, token, hint: e.hint };
        } catch (err) {
          if (isAgentRejected(err)) {
            void this.#o.onRejected?.();
            throw new SigilError('ERR_UNAVAILABLE', 'agent is re-attesting; try again', { reason: 'reattesting', cause: err });
          }
          const se = toSigilError(err);
          if (se.code === 'ERR_INTERNAL' || se.code === 'ERR_DEADLINE_EXCEEDED' || se.code === 'ERR_CANCELLED') {
            throw new SigilError('ERR_UNAVAILABLE', 'could not mint a JWT-SVID now', { reason: 'jwt-mint-failed', cause: err });
          }
          throw se;
        } finally {
          this.#inFlight.delete(key);
        }
      })();
      this.#inFlight.set(key, pending);
    }
    return pending;
  }

  /** Drops every cached token of an entry (it changed or was removed). */
  dropEntry(entryId: string): void {
    this.#cache.dropEntry(entryId);
  }

  /** Drops cached JWT-SVIDs signed by a newly tainted key: the next fetch gets one from the active key. */
  applyTainted(kids: ReadonlySet<string>): void {
    const key = [...kids].sort().join(',');
    if (key === this.#tainted) return;
    this.#tainted = key;
    if (kids.size === 0) return;
    const dropped = this.#cache.dropSignedBy(kids);
    this.#o.logger.warn({ taintedJwtKeys: [...kids], jwtSvids: dropped }, 'JWT signing key tainted; dropped the cached JWT-SVIDs it signed');
  }
}
