/**
 * Fetches each federation relationship's bundle endpoint at the peer's refresh hint (clamped,
 * with jitter; exponential backoff after failures), validates what it got, stores it and
 * pushes it to agents. A datastore lease makes one server at a time fetch a given peer when
 * several share PostgreSQL. A failed fetch, garbage, a sequence that goes back, an empty
 * bundle, or an endpoint with the wrong identity keeps the last good bundle and is recorded
 * (`federation show` reports it).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Clock, TimerHandle } from '../../common/clock.js';
import { SigilError, toSigilError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { logRetry } from '../../common/retry-log.js';
import type { AuditFor, Datastore, FederationRelationship, FederationRelationshipFields } from '../../datastore/datastore.js';
import { Bundle } from '../../spiffe/bundle.js';
import { SpiffeId, TrustDomain } from '../../spiffe/spiffe-id.js';
import { bundleDocument, type BundleManager } from '../bundle-manager.js';
import type { ChangeHub } from '../change-hub.js';
import { fetchBundle } from './bundle-fetch.js';
import type { ConfiguredRelationship } from './federation-config.js';

/** Shortest and longest wait between two successful fetches, whatever the peer's hint says. */
export const REFRESH_CLAMP_MS = { min: 5_000, max: 3_600_000 } as const;
/** Wait when the peer's bundle carries no hint (the standard's suggestion, 5 minutes). */
export const DEFAULT_REFRESH_MS = 300_000;
/** First retry after a failure, doubled per failure up to the clamp's maximum or the hint. */
const FIRST_RETRY_MS = 2_000;
/** How long a fetch lease lasts: longer than a fetch's own timeout. */
const LEASE_MS = 30_000;
/** How often due relationships are looked for. */
const TICK_MS = 1_000;

/** Options of a FederationRefresher. */
export interface FederationRefresherOptions {
  readonly ds: Datastore;
  readonly bundles: BundleManager;
  readonly hub: ChangeHub;
  readonly trustDomain: TrustDomain;
  readonly clock: Clock;
  readonly logger: Logger;
  /** PEM CAs for https_web endpoints (system CAs when absent). */
  readonly httpsWebCaPem?: string;
  /** Shortest wait between fetches (tests lower it; never below 1s). */
  readonly minRefreshMs?: number;
  readonly fetchTimeoutMs?: number;
}

function jitter(ms: number): number {
  // ±10%: peers that started together drift apart
  return Math.round(ms * (0.9 + Math.random() * 0.2));
}

/** Loads a bootstrap bundle file (`spiffe` JWKS or `pem` certificates) for `td`; throws ERR_INVALID_BUNDLE / ERR_CONFIG_INVALID. */
export function readBootstrapBundle(td: TrustDomain, text: string, format: 'pem' | 'spiffe'): Bundle {
  if (format === 'pem') {
    if (text.includes('PRIVATE KEY-----')) throw new SigilError('ERR_INVALID_BUNDLE', 'the PEM bundle holds a private key; send certificates only', { reason: 'private-key-in-bundle' });
    const b = Bundle.fromX509Pem(td, text);
    if (b.x509Authorities.length === 0) throw new SigilError('ERR_INVALID_BUNDLE', 'no PEM certificate in the bundle', { reason: 'bundle-pem' });
    return b.with({ sequenceNumber: 0 });
  }
  return Bundle.parseJwks(td, text);
}

/** The refresher of one server. */
export class FederationRefresher {
  readonly #o: FederationRefresherOptions;
  readonly #holder = `server-${randomUUID()}`;
  #timer: TimerHandle | undefined;
  #stopped = true;
  #running: Promise<void> = Promise.resolve();
  /** Fetches this server is running, by trust domain ID: `refresh` waits for one rather than failing busy. */
  readonly #inFlight = new Map<string, Promise<boolean>>();
  /** The federated bundles' versions last seen (undefined before the first tick). */
  #seen: string | undefined;

  constructor(options: FederationRefresherOptions) {
    this.#o = options;
  }

  /** Writes the relationships declared in the config (and their bootstrap bundles when none is stored yet). */
  async applyConfigured(relationships: readonly ConfiguredRelationship[], audit?: (action: string, td: string) => AuditFor<FederationRelationship>): Promise<void> {
    const { ds, logger } = this.#o;
    for (const r of relationships) {
      const fields: FederationRelationshipFields = { trustDomainId: r.trustDomainId, bundleEndpointUrl: r.bundleEndpointUrl, profile: r.profile, endpointSpiffeId: r.endpointSpiffeId };
      const old = await ds.getFederationRelationship(r.trustDomainId);
      if (old === undefined) await ds.createFederationRelationship(fields, audit?.('federation.create', r.trustDomainId));
      else if (old.bundleEndpointUrl !== fields.bundleEndpointUrl || old.profile !== fields.profile || old.endpointSpiffeId !== fields.endpointSpiffeId) {
        await ds.updateFederationRelationship(fields, audit?.('federation.update', r.trustDomainId));
      }
      if (r.bootstrapBundle !== undefined && (await ds.getBundle(r.trustDomainId)) === undefined) {
        let text: string;
        try {
          text = readFileSync(r.bootstrapBundle.path, 'utf8');
        } catch (err) {
          throw new SigilError('ERR_CONFIG_INVALID', `cannot read federation.federatesWith trustDomainBundlePath ${r.bootstrapBundle.path}`, { reason: 'federation-bootstrap', cause: err });
        }
        await this.#o.bundles.setFederated(r.trustDomainId, readBootstrapBundle(TrustDomain.parse(r.trustDomainId), text, r.bootstrapBundle.format));
      }
      logger.info({ trustDomain: r.trustDomainId, profile: r.profile }, 'federation relationship from the config applied');
    }
  }

  /** Starts looking for due relationships. */
  start(): void {
    this.#stopped = false;
    this.#schedule(0);
  }

  /** Stops; waits for a fetch in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    await this.#running;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = this.#o.clock.setTimer(() => {
      this.#running = this.#tick()
        .catch((err: unknown) => this.#o.logger.warn({ err }, 'federation refresh round failed'))
        .finally(() => this.#schedule(TICK_MS));
    }, ms);
  }

  async #tick(): Promise<void> {
    await this.#noticeForeignWrites();
    const now = this.#o.clock.nowMs();
    const all = await this.#o.ds.listFederationRelationships();
    for (const r of all) {
      if (this.#stopped) return;
      if (r.nextRefreshAt > now) continue;
      await this.#refresh(r.trustDomainId, false);
    }
  }

  /**
   * Federated bundles written by another server on the same datastore (its refresher, or a
   * `bundle set` there) reach this server's agents too: the stored versions are compared
   * every tick and a difference is pushed.
   */
  async #noticeForeignWrites(): Promise<void> {
    const own = this.#o.trustDomain.idString;
    const all = await this.#o.ds.listBundles();
    const key = all
      .filter((b) => b.trustDomainId !== own)
      .map((b) => `${b.trustDomainId}@${b.updatedAt}:${b.document.length}`)
      .join(',');
    if (this.#seen !== undefined && key !== this.#seen) this.#o.hub.notify('bundles');
    this.#seen = key;
  }

  /**
   * Fetches one relationship now (`sigil federation refresh`) and returns its state after.
   * ERR_NOT_FOUND when there is none; ERR_UNAVAILABLE (reason `federation-busy`) when another
   * fetch of it holds the lease.
   */
  async refreshNow(trustDomainId: string): Promise<FederationRelationship> {
    if ((await this.#o.ds.getFederationRelationship(trustDomainId)) === undefined) {
      throw new SigilError('ERR_NOT_FOUND', `no federation relationship with ${trustDomainId}`, { reason: 'federation-not-found' });
    }
    await this.#inFlight.get(trustDomainId)?.catch(() => false);
    if (!(await this.#refresh(trustDomainId, true))) {
      throw new SigilError('ERR_UNAVAILABLE', `a fetch of ${trustDomainId} is already running`, { reason: 'federation-busy' });
    }
    const after = await this.#o.ds.getFederationRelationship(trustDomainId);
    if (after === undefined) throw new SigilError('ERR_NOT_FOUND', `no federation relationship with ${trustDomainId}`, { reason: 'federation-not-found' });
    return after;
  }

  /** One claimed fetch; false when the lease was not ours to take. */
  #refresh(trustDomainId: string, force: boolean): Promise<boolean> {
    const run = this.#refreshOnce(trustDomainId, force).finally(() => {
      if (this.#inFlight.get(trustDomainId) === run) this.#inFlight.delete(trustDomainId);
    });
    this.#inFlight.set(trustDomainId, run);
    return run;
  }

  async #refreshOnce(trustDomainId: string, force: boolean): Promise<boolean> {
    const { ds, clock, logger } = this.#o;
    const now = clock.nowMs();
    if (!(await ds.claimFederationRefresh(trustDomainId, this.#holder, now, now + LEASE_MS, force))) return false;
    const rel = await ds.getFederationRelationship(trustDomainId);
    if (rel === undefined) return false;
    const td = TrustDomain.parse(trustDomainId);
    const storedRecord = await ds.getBundle(trustDomainId);
    let stored: Bundle | undefined;
    try {
      stored = storedRecord === undefined ? undefined : this.#o.bundles.parse(storedRecord);
    } catch {
      stored = undefined;
    }
    try {
      const fetched = await fetchBundle({
        url: rel.bundleEndpointUrl,
        trustDomain: td,
        auth:
          rel.profile === 'https_spiffe'
            ? { profile: 'https_spiffe', endpointSpiffeId: SpiffeId.parse(rel.endpointSpiffeId), bundle: stored }
            : { profile: 'https_web', ...(this.#o.httpsWebCaPem === undefined ? {} : { caPem: this.#o.httpsWebCaPem }) },
        now: () => clock.now(),
        timeoutMs: this.#o.fetchTimeoutMs ?? 10_000,
      });
      if (fetched.x509Authorities.length === 0 && fetched.jwtAuthorities.size === 0) {
        throw new SigilError('ERR_INVALID_BUNDLE', `the bundle endpoint of ${td.name} served a bundle without keys`, { reason: 'federation-empty-bundle' });
      }
      const seq = fetched.sequenceNumber ?? 0;
      const storedSeq = Math.max(rel.lastSequence, stored?.sequenceNumber ?? 0);
      if (fetched.sequenceNumber !== undefined && seq < storedSeq) {
        throw new SigilError('ERR_INVALID_BUNDLE', `the bundle endpoint of ${td.name} served sequence ${seq}, older than the stored ${storedSeq}`, { reason: 'federation-sequence-back' });
      }
      const hintMs = fetched.refreshHintSeconds === undefined ? DEFAULT_REFRESH_MS : fetched.refreshHintSeconds * 1000;
      const min = Math.max(1000, this.#o.minRefreshMs ?? REFRESH_CLAMP_MS.min);
      const waitMs = jitter(Math.min(REFRESH_CLAMP_MS.max, Math.max(min, hintMs)));
      const document = bundleDocument(fetched);
      const changed = storedRecord?.document !== document;
      const at = clock.nowMs();
      if (await ds.recordFederationRefresh(trustDomainId, this.#holder, { at, nextRefreshAt: at + waitMs, accepted: { document, sequence: seq } })) {
        if (changed) {
          logger.info({ trustDomain: td.name, sequence: seq, x509Authorities: fetched.x509Authorities.length, jwtAuthorities: fetched.jwtAuthorities.size }, 'federated bundle refreshed');
          this.#o.hub.notify('bundles');
        } else logger.debug({ trustDomain: td.name, sequence: seq }, 'federated bundle unchanged');
      }
    } catch (err) {
      const se = toSigilError(err);
      const failures = rel.consecutiveFailures + 1;
      const waitMs = jitter(Math.min(REFRESH_CLAMP_MS.max, FIRST_RETRY_MS * 2 ** Math.min(failures - 1, 20)));
      const at = clock.nowMs();
      const cause = se.cause instanceof Error ? `: ${se.cause.message}` : '';
      await ds.recordFederationRefresh(trustDomainId, this.#holder, { at, nextRefreshAt: at + waitMs, error: `${se.message}${cause}` });
      logRetry(logger, se, { trustDomain: td.name, failures, retryInMs: waitMs }, 'federated bundle refresh failed; keeping the last good bundle');
    }
    return true;
  }
}
