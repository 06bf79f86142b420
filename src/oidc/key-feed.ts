/**
 * Where `sigil oidc serve|export` gets the trust domain's JWT keys, and what it holds of
 * them: the last good key set, and whether its source is reachable now. A source that
 * fails leaves the last good keys in place (relying parties keep working through an agent
 * restart) and only says so; an empty key set is never "good" (it would let relying parties
 * cache "no keys").
 */
import { EventEmitter } from 'node:events';
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import type { WorkloadApiClient } from '../client/workload-api-client.js';
import { Bundle } from '../spiffe/bundle.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';

/**
 * Why the feed is not healthy, as a kind the public /ready may name: the detail (which can
 * hold a socket path or another process's error text) goes to the log only.
 */
export type FeedProblem = 'starting' | 'source-unavailable' | 'no-keys';

/** The health of a feed. */
export interface FeedState {
  /** The source answered last time and gave keys. */
  readonly healthy: boolean;
  /** Keys being served (those of the last good update). */
  readonly keys: number;
  /** Why not healthy, when not. */
  readonly problem?: FeedProblem;
  /** When the last good update came. */
  readonly updatedAt?: string;
}

/** The keys of one trust domain as last received. Emits 'keys' on every good update that changed them, 'state' on every change of health. */
export class KeyFeed extends EventEmitter {
  readonly #td: TrustDomain;
  readonly #log: Logger;
  #bundle: Bundle | undefined;
  #updatedAt: Date | undefined;
  #problem: FeedProblem | undefined = 'starting';
  /** The detail of the current problem, logged once per change. */
  #detail: string | undefined = 'no keys received yet';

  constructor(trustDomain: TrustDomain, logger: Logger) {
    super();
    this.#td = trustDomain;
    this.#log = logger;
  }

  /** The last good bundle (with at least one JWT key), if any. */
  get bundle(): Bundle | undefined {
    return this.#bundle;
  }

  /** Health and key count. */
  state(): FeedState {
    return {
      healthy: this.#problem === undefined,
      keys: this.#bundle?.jwtAuthorities.size ?? 0,
      ...(this.#problem === undefined ? {} : { problem: this.#problem }),
      ...(this.#updatedAt === undefined ? {} : { updatedAt: this.#updatedAt.toISOString() }),
    };
  }

  /** A bundle set (or one bundle) from the source; takes this trust domain's. */
  update(bundle: Bundle | undefined, now: Date): void {
    if (bundle === undefined) return this.fail('no-keys', `the source has no bundle for ${this.#td.name}`);
    if (bundle.jwtAuthorities.size === 0) return this.fail('no-keys', `the bundle of ${this.#td.name} holds no JWT keys`);
    const changed = this.#bundle === undefined || !this.#bundle.sameAuthorities(bundle);
    const wasHealthy = this.#problem === undefined;
    this.#bundle = bundle;
    this.#updatedAt = now;
    this.#problem = undefined;
    this.#detail = undefined;
    if (changed) {
      this.#log.info({ trustDomain: this.#td.name, kids: [...bundle.jwtAuthorities.keys()] }, 'JWT keys updated');
      this.emit('keys', bundle);
    }
    if (!wasHealthy) this.emit('state', this.state());
  }

  /** The source failed (`detail` is for the log only); the last good keys stay. */
  fail(problem: FeedProblem, detail: string): void {
    if (this.#problem === problem && this.#detail === detail) return;
    const changed = this.#problem !== problem;
    this.#problem = problem;
    this.#detail = detail;
    this.#log.warn({ trustDomain: this.#td.name, problem, detail, servingKeys: this.#bundle?.jwtAuthorities.size ?? 0 }, 'JWT key source unhealthy');
    if (changed) this.emit('state', this.state());
  }
}

/** Feeds `feed` from the agent's FetchJWTBundles stream until `signal` aborts (reconnecting with the client's backoff). */
export async function feedFromAgent(client: WorkloadApiClient, feed: KeyFeed, trustDomain: TrustDomain, clock: Clock, signal: AbortSignal): Promise<void> {
  await client.watchJwtBundles(
    {
      onUpdate: (set) => feed.update(set.getBundleForTrustDomain(trustDomain), clock.now()),
      onError: (err) => feed.fail('source-unavailable', `the agent is unreachable: ${err.message}`),
      onPermissionDenied: () => feed.fail('source-unavailable', 'the agent gives this process no identity: register an entry for it'),
    },
    signal,
  );
}

/**
 * Feeds `feed` by asking the server's admin API (through `getBundleDocument`, which returns
 * the SPIFFE bundle document) every `intervalMs` until `signal` aborts.
 */
export async function feedFromAdmin(
  getBundleDocument: (signal: AbortSignal) => Promise<Uint8Array>,
  feed: KeyFeed,
  trustDomain: TrustDomain,
  clock: Clock,
  intervalMs: number,
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    try {
      const doc = await getBundleDocument(signal);
      feed.update(Bundle.parseJwks(trustDomain, doc), clock.now());
    } catch (err) {
      if (signal.aborted) return;
      feed.fail('source-unavailable', `the server admin socket is unreachable: ${err instanceof Error ? err.message : String(err)}`);
    }
    try {
      await clock.sleep(intervalMs, signal);
    } catch {
      return;
    }
  }
}
