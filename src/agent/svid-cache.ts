/**
 * The agent's SVID cache: the authorised entries and bundles from entry sync, an in-memory
 * key pair and X.509-SVID per entry it decides to hold, their successors minted at half of
 * their life (±10%), and the subscriptions of connected workloads, each pushed its full
 * state on every change. It implements the Workload API's WorkloadIdentitySource.
 *
 * Memory policy (docs/agent.md): entries matched by a connected workload are always minted
 * (at once when the workload or the entry appears) and kept rotated; up to `maxSize` other
 * entries are minted eagerly too, so a workload that connects while the server is down
 * still gets its SVID. Beyond that, an entry no connected workload matches is minted only
 * when one does, and its SVID is dropped `idleGraceMs` after the last such workload left.
 */
import { Backoff } from '../common/backoff.js';
import type { Clock, TimerHandle } from '../common/clock.js';
import { SigilError, toSigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { Secret } from '../common/secret.js';
import { Bundle } from '../spiffe/bundle.js';
import { BundleSet } from '../spiffe/bundle-set.js';
import { ParsedCertificate } from '../spiffe/certificate.js';
import { parseAndValidateJwtSvid } from '../spiffe/jwt-svid.js';
import { selectorKey, selectorsSatisfiedBy, type Selector } from '../spiffe/selector.js';
import { TrustDomain } from '../spiffe/spiffe-id.js';
import type {
  IssuedJwtSvid,
  TrustDomainBundle,
  Unsubscribe,
  ValidatedJwtSvid,
  WorkloadIdentitySource,
  WorkloadUpdate,
  WorkloadX509Svid,
} from './workload-api/identity-source.js';
import { isAgentRejected } from './agent-identity.js';
import { generateKeyAndCsr } from './csr.js';
import type { SyncBatch } from './entry-sync.js';
import { audienceKey, JwtSvidCache } from './jwt-cache.js';
import { rotationDelayMs } from './rotation.js';
import { MAX_CSRS_PER_CALL, type WireBundle, type WireEntry, type WireJwtSvid, type X509SvidItemResult } from './server-client.js';

/** What the cache needs from the server. */
export interface SvidIssuer {
  batchNewX509Svid(items: readonly { entryId: string; csrDer: Buffer }[], signal?: AbortSignal): Promise<X509SvidItemResult[]>;
  newJwtSvid(entryId: string, audience: readonly string[], signal?: AbortSignal): Promise<WireJwtSvid>;
}

/** Options of an SvidCache. */
export interface SvidCacheOptions {
  readonly trustDomain: TrustDomain;
  readonly issuer: SvidIssuer;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Entries minted eagerly without a connected workload; 1000 by default. */
  readonly maxSize?: number;
  /** How long an idle SVID beyond maxSize is kept; 5 minutes by default. */
  readonly idleGraceMs?: number;
  readonly random?: () => number;
  readonly retryInitialMs?: number;
  readonly retryMaxMs?: number;
  /** The server refused the agent SVID: attest again. */
  readonly onRejected?: () => Promise<void>;
  /** The own trust domain's X.509 authorities changed (DER). */
  readonly onRoots?: (roots: Buffer[]) => void;
}

interface EntryState {
  readonly entry: WireEntry;
  readonly selectors: readonly Selector[];
  /** What the SVID depends on: a change means minting again. */
  readonly mintKey: string;
  readonly expiresAtMs: number;
  activeCount: number;
  lastActiveMs: number;
}

interface SvidState {
  readonly entryId: string;
  readonly mintKey: string;
  readonly svid: WorkloadX509Svid;
  readonly serial: string;
  readonly notAfterMs: number;
  rotateTimer: TimerHandle | undefined;
  expireTimer: TimerHandle | undefined;
}

interface Subscriber {
  readonly keys: ReadonlySet<string>;
  readonly onUpdate: (u: WorkloadUpdate) => void;
  matched: string[];
  lastSignature: string | undefined;
}

function mintKeyOf(e: WireEntry): string {
  return JSON.stringify([e.spiffe_id, [...e.dns_names].sort(), e.x509_svid_ttl_seconds]);
}

function toTrustDomainBundle(b: Bundle): TrustDomainBundle {
  return {
    trustDomainId: b.trustDomain.idString,
    x509AuthoritiesDer: Buffer.from(b.x509ToDer()),
    jwtKeysJwks: Buffer.from(b.jwtToJwksBytes()),
  };
}

/** Summary of the cache for status output and tests. */
export interface SvidCacheStats {
  readonly entries: number;
  readonly svids: number;
  readonly subscribers: number;
  readonly jwtSvids: number;
  readonly synced: boolean;
}

/** The agent's SVID cache and the Workload API's identity source. */
export class SvidCache implements WorkloadIdentitySource {
  readonly #o: SvidCacheOptions;
  readonly #maxSize: number;
  readonly #idleGraceMs: number;
  readonly #entries = new Map<string, EntryState>();
  readonly #svids = new Map<string, SvidState>();
  readonly #subscribers = new Set<Subscriber>();
  readonly #jwt = new JwtSvidCache();
  readonly #jwtInFlight = new Map<string, Promise<IssuedJwtSvid>>();
  /** Entries waiting to be minted, and those in a call now. */
  readonly #queued = new Set<string>();
  readonly #inFlight = new Set<string>();
  /** Entries whose last mint failed (a waiting workload is answered without them). */
  readonly #failed = new Set<string>();
  readonly #backoff: Backoff;
  #ownBundle: Bundle | undefined;
  #ownWire: TrustDomainBundle | undefined;
  #federated = new Map<string, { bundle: Bundle; wire: TrustDomainBundle }>();
  #bundleVersion = 0;
  #synced = false;
  #flushScheduled = false;
  #retryTimer: TimerHandle | undefined;
  #sweepTimer: TimerHandle | undefined;
  #expiryTimer: TimerHandle | undefined;
  #stopped = false;
  readonly #stop = new AbortController();

  constructor(options: SvidCacheOptions) {
    this.#o = options;
    this.#maxSize = options.maxSize ?? 1000;
    this.#idleGraceMs = options.idleGraceMs ?? 5 * 60_000;
    this.#backoff = new Backoff({ initialMs: options.retryInitialMs ?? 1000, maxMs: options.retryMaxMs ?? 30_000, ...(options.random ? { random: options.random } : {}) });
  }

  /** Counts for status output and tests. */
  stats(): SvidCacheStats {
    return { entries: this.#entries.size, svids: this.#svids.size, subscribers: this.#subscribers.size, jwtSvids: this.#jwt.size, synced: this.#synced };
  }

  /** The entry IDs whose SVIDs are held now. */
  cachedEntryIds(): string[] {
    return [...this.#svids.keys()];
  }

  /** The serial of the SVID held for an entry, if any. */
  serialOf(entryId: string): string | undefined {
    return this.#svids.get(entryId)?.serial;
  }

  /** The serial and expiry of the SVID held for an entry, if any. */
  svidOf(entryId: string): { readonly serial: string; readonly notAfterMs: number } | undefined {
    const s = this.#svids.get(entryId);
    return s === undefined ? undefined : { serial: s.serial, notAfterMs: s.notAfterMs };
  }

  // ---- entry sync ----

  /** Applies one complete SyncEntries batch. */
  applyBatch(batch: SyncBatch): void {
    if (this.#stopped) return;
    const now = this.#o.clock.nowMs();
    const next = batch.kind === 'FULL' ? new Map<string, EntryState>() : new Map(this.#entries);
    for (const id of batch.deletedEntryIds) next.delete(id);
    for (const e of batch.entries) {
      const old = this.#entries.get(e.id);
      const expires = Number(e.expires_at);
      next.set(e.id, {
        entry: e,
        selectors: e.selectors.map((s) => ({ type: s.type, value: s.value })),
        mintKey: mintKeyOf(e),
        expiresAtMs: expires > 0 ? expires * 1000 : 0,
        activeCount: 0,
        lastActiveMs: old?.lastActiveMs ?? 0,
      });
    }
    for (const [id, s] of this.#entries) {
      const n = next.get(id);
      if (n === undefined || n.entry.revision !== s.entry.revision) this.#jwt.dropEntry(id);
    }
    this.#entries.clear();
    for (const [id, s] of next) if (s.expiresAtMs === 0 || s.expiresAtMs > now) this.#entries.set(id, s);
    // SVIDs of removed entries, or minted for an older form of the entry, go now.
    for (const [id, s] of this.#svids) {
      const e = this.#entries.get(id);
      if (e === undefined) this.#dropSvid(id);
      else if (e.mintKey !== s.mintKey) this.#queue(id);
    }
    for (const id of this.#failed) if (!this.#entries.has(id)) this.#failed.delete(id);
    if (batch.bundles !== undefined) this.#applyBundles(batch.bundles.own, batch.bundles.federated);
    this.#synced = true;
    for (const sub of this.#subscribers) sub.matched = this.#match(sub.keys, now);
    this.#recount();
    this.#reconcile();
    this.#notifyAll();
    this.#scheduleExpiry();
  }

  /** Arms one timer for the earliest entry `expiresAt`, so an expiring entry goes when it expires, not at the next batch. */
  #scheduleExpiry(): void {
    this.#expiryTimer?.cancel();
    this.#expiryTimer = undefined;
    if (this.#stopped) return;
    let next = Infinity;
    for (const e of this.#entries.values()) if (e.expiresAtMs > 0 && e.expiresAtMs < next) next = e.expiresAtMs;
    if (next === Infinity) return;
    this.#expiryTimer = this.#o.clock.setTimer(() => {
      this.#expiryTimer = undefined;
      const now = this.#o.clock.nowMs();
      const expired = [...this.#entries.values()].filter((e) => e.expiresAtMs > 0 && e.expiresAtMs <= now).map((e) => e.entry.id);
      if (expired.length === 0) {
        this.#scheduleExpiry();
        return;
      }
      this.#o.logger.info({ entryIds: expired }, 'registration entries expired; no longer served');
      // The same path as a deletion from the server: SVIDs dropped, open streams told at once.
      this.applyBatch({ kind: 'DELTA', entries: [], deletedEntryIds: expired });
    }, Math.max(0, next - this.#o.clock.nowMs()));
  }

  #applyBundles(own: WireBundle, federated: readonly WireBundle[]): void {
    const parse = (w: WireBundle): Bundle => Bundle.parseJwks(TrustDomain.parse(w.trust_domain_id), w.document);
    let changed = false;
    try {
      const b = parse(own);
      if (this.#ownBundle === undefined || !this.#ownBundle.equals(b)) {
        const rootsChanged = this.#ownBundle === undefined || !this.#ownBundle.sameAuthorities(b);
        this.#ownBundle = b;
        this.#ownWire = toTrustDomainBundle(b);
        changed = true;
        if (rootsChanged) this.#o.onRoots?.(b.x509AuthoritiesDer().map((d) => Buffer.from(d)));
        this.#o.logger.info({ bundle: b }, 'trust bundle updated');
      }
    } catch (err) {
      this.#o.logger.error({ err }, 'server sent an unusable trust bundle; keeping the previous one');
    }
    const fed = new Map<string, { bundle: Bundle; wire: TrustDomainBundle }>();
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
    if (changed) this.#bundleVersion++;
  }

  // ---- workload subscriptions ----

  subscribe(selectors: readonly Selector[], onUpdate: (update: WorkloadUpdate) => void): Unsubscribe {
    const keys = new Set(selectors.map(selectorKey));
    const sub: Subscriber = { keys, onUpdate, matched: this.#synced ? this.#match(keys, this.#o.clock.nowMs()) : [], lastSignature: undefined };
    this.#subscribers.add(sub);
    let newlyActive = false;
    for (const id of sub.matched) {
      const e = this.#entries.get(id);
      if (e !== undefined && e.activeCount++ === 0) newlyActive = true;
    }
    if (newlyActive) this.#reconcile();
    this.#notify(sub);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#subscribers.delete(sub);
      const now = this.#o.clock.nowMs();
      let idle = false;
      for (const id of sub.matched) {
        const e = this.#entries.get(id);
        if (e !== undefined && --e.activeCount <= 0) {
          e.activeCount = 0;
          e.lastActiveMs = now;
          idle = true;
        }
      }
      if (idle) this.#scheduleSweep();
    };
  }

  #match(keys: ReadonlySet<string>, nowMs: number): string[] {
    const out: string[] = [];
    for (const [id, e] of this.#entries) {
      if (e.expiresAtMs !== 0 && e.expiresAtMs <= nowMs) continue;
      if (selectorsSatisfiedBy(e.selectors, keys)) out.push(id);
    }
    // A stable order: svids[0] (the default identity) must not flip between pushes.
    return out.sort();
  }

  #recount(): void {
    for (const e of this.#entries.values()) e.activeCount = 0;
    const now = this.#o.clock.nowMs();
    for (const sub of this.#subscribers) {
      for (const id of sub.matched) {
        const e = this.#entries.get(id);
        if (e !== undefined) {
          e.activeCount++;
          e.lastActiveMs = now;
        }
      }
    }
  }

  /** Full state for one subscriber, or undefined while one of its SVIDs is still being minted for the first time. */
  #stateFor(sub: Subscriber): { update: WorkloadUpdate; signature: string } | undefined {
    if (!this.#synced || this.#ownWire === undefined) return undefined;
    const svids: WorkloadX509Svid[] = [];
    const serials: string[] = [];
    const federates = new Set<string>();
    for (const id of sub.matched) {
      const s = this.#svids.get(id);
      if (s === undefined) {
        if ((this.#queued.has(id) || this.#inFlight.has(id)) && !this.#failed.has(id)) return undefined;
        continue;
      }
      svids.push(s.svid);
      serials.push(s.serial);
      for (const td of this.#entries.get(id)?.entry.federates_with ?? []) federates.add(TrustDomain.parse(td).idString);
    }
    const federatedBundles: TrustDomainBundle[] = [];
    for (const td of [...federates].sort()) {
      const f = this.#federated.get(td);
      if (f !== undefined) federatedBundles.push(f.wire);
    }
    return {
      update: { svids, bundle: this.#ownWire, federatedBundles },
      signature: `${serials.join(',')}|${this.#bundleVersion}|${federatedBundles.map((b) => b.trustDomainId).join(',')}`,
    };
  }

  #notify(sub: Subscriber): void {
    const state = this.#stateFor(sub);
    if (state === undefined || state.signature === sub.lastSignature) return;
    sub.lastSignature = state.signature;
    try {
      sub.onUpdate(state.update);
    } catch (err) {
      this.#o.logger.error({ err }, 'workload update listener failed');
    }
  }

  #notifyAll(): void {
    for (const sub of [...this.#subscribers]) this.#notify(sub);
  }

  // ---- which SVIDs to hold ----

  /** Mints what should be held and drops what should not (see the policy at the top). */
  #reconcile(): void {
    if (this.#stopped || !this.#synced) return;
    const now = this.#o.clock.nowMs();
    const wanted = new Set<string>();
    const rest: string[] = [];
    for (const [id, e] of this.#entries) {
      if (e.activeCount > 0) wanted.add(id);
      else rest.push(id);
    }
    // Idle entries: the most recently used first, then the others in sync order.
    rest.sort((a, b) => (this.#entries.get(b)?.lastActiveMs ?? 0) - (this.#entries.get(a)?.lastActiveMs ?? 0));
    let room = Math.max(0, this.#maxSize - wanted.size);
    for (const id of rest) {
      const e = this.#entries.get(id) as EntryState;
      const inGrace = e.lastActiveMs > 0 && e.lastActiveMs + this.#idleGraceMs > now;
      if (room > 0) {
        wanted.add(id);
        room--;
      } else if (inGrace && this.#svids.has(id)) {
        wanted.add(id);
      }
    }
    for (const id of [...this.#svids.keys()]) {
      if (!wanted.has(id)) {
        this.#o.logger.debug({ entryId: id }, 'dropping idle SVID');
        this.#dropSvid(id);
      }
    }
    for (const id of wanted) {
      const s = this.#svids.get(id);
      if ((s === undefined || s.mintKey !== this.#entries.get(id)?.mintKey) && !this.#failed.has(id)) this.#queue(id);
    }
    this.#scheduleSweep();
  }

  #scheduleSweep(): void {
    if (this.#stopped) return;
    const now = this.#o.clock.nowMs();
    let next = Infinity;
    for (const e of this.#entries.values()) {
      if (e.activeCount === 0 && e.lastActiveMs > 0 && this.#svids.has(e.entry.id)) next = Math.min(next, e.lastActiveMs + this.#idleGraceMs);
    }
    this.#sweepTimer?.cancel();
    this.#sweepTimer = undefined;
    if (next === Infinity) return;
    this.#sweepTimer = this.#o.clock.setTimer(() => {
      this.#sweepTimer = undefined;
      this.#reconcile();
    }, Math.max(0, next - now) + 1);
  }

  #dropSvid(id: string): void {
    const s = this.#svids.get(id);
    if (s === undefined) return;
    s.rotateTimer?.cancel();
    s.expireTimer?.cancel();
    this.#svids.delete(id);
  }

  // ---- minting ----

  #queue(id: string): void {
    if (this.#stopped || this.#inFlight.has(id)) {
      if (this.#inFlight.has(id)) this.#queued.add(id); // minted again once the current call returns
      return;
    }
    this.#queued.add(id);
    if (this.#flushScheduled || this.#retryTimer !== undefined) return;
    this.#flushScheduled = true;
    // Coalesce the mints of one burst (a FULL batch, many workloads arriving) into few calls.
    setImmediate(() => {
      this.#flushScheduled = false;
      void this.#flush();
    });
  }

  async #flush(): Promise<void> {
    if (this.#stopped) return;
    const ids = [...this.#queued].filter((id) => !this.#inFlight.has(id)).slice(0, MAX_CSRS_PER_CALL);
    if (ids.length === 0) return;
    for (const id of ids) {
      this.#queued.delete(id);
      this.#inFlight.add(id);
    }
    const requests = await Promise.all(
      ids.map(async (id) => ({ id, mintKey: this.#entries.get(id)?.mintKey, ...(await generateKeyAndCsr()) })),
    );
    let results: X509SvidItemResult[] | undefined;
    let failure: SigilError | undefined;
    try {
      results = await this.#o.issuer.batchNewX509Svid(
        requests.map((r) => ({ entryId: r.id, csrDer: r.csrDer })),
        this.#stop.signal,
      );
    } catch (err) {
      failure = toSigilError(err);
    }
    for (const id of ids) this.#inFlight.delete(id);
    if (this.#stopped) return;
    if (failure !== undefined || results === undefined) {
      const delay = this.#backoff.next();
      this.#o.logger.warn({ err: failure, entries: ids.length, retryInMs: delay }, 'minting X509-SVIDs failed; retrying');
      for (const id of ids) {
        if (!this.#svids.has(id)) this.#failed.add(id);
        this.#queued.add(id);
      }
      // Waiting workloads are answered with what there is rather than left hanging.
      this.#notifyAll();
      if (failure !== undefined && isAgentRejected(failure)) void this.#o.onRejected?.();
      this.#retryTimer?.cancel();
      this.#retryTimer = this.#o.clock.setTimer(() => {
        this.#retryTimer = undefined;
        for (const id of [...this.#queued]) if (!this.#entries.has(id)) this.#queued.delete(id);
        this.#failed.clear();
        if (this.#queued.size > 0) {
          this.#flushScheduled = true;
          setImmediate(() => {
            this.#flushScheduled = false;
            void this.#flush();
          });
        }
      }, delay);
      return;
    }
    this.#backoff.reset();
    const now = this.#o.clock.nowMs();
    const byId = new Map(requests.map((r) => [r.id, r]));
    for (const res of results) {
      const req = byId.get(res.entryId);
      if (req === undefined) continue;
      const entry = this.#entries.get(res.entryId);
      if (res.error !== undefined || res.svid === undefined) {
        this.#o.logger.warn({ entryId: res.entryId, code: res.error?.code }, 'server refused an X509-SVID');
        if (!this.#svids.has(res.entryId)) this.#failed.add(res.entryId);
        continue;
      }
      if (entry === undefined || entry.mintKey !== req.mintKey) {
        // The entry changed or went while we were minting: this SVID is stale.
        if (entry !== undefined) this.#queued.add(res.entryId);
        continue;
      }
      try {
        this.#install(entry, res.svid.cert_chain, req.keyPkcs8Der, req.spkiDer, now);
        this.#failed.delete(res.entryId);
      } catch (err) {
        this.#o.logger.error({ err, entryId: res.entryId }, 'server sent an unusable X509-SVID');
        this.#failed.add(res.entryId);
      }
    }
    this.#notifyAll();
    if (this.#queued.size > 0) {
      const pending = [...this.#queued];
      this.#queued.clear();
      for (const id of pending) if (this.#entries.has(id)) this.#queue(id);
    }
  }

  #install(entry: EntryState, chain: readonly Buffer[], key: Secret<Buffer>, spkiDer: Buffer, nowMs: number): void {
    const leafDer = chain[0];
    if (leafDer === undefined) throw new SigilError('ERR_INTERNAL', 'empty SVID chain', { reason: 'empty-chain' });
    const leaf = ParsedCertificate.fromDer(leafDer);
    if (!Buffer.from(leaf.facts.spki).equals(spkiDer)) throw new SigilError('ERR_INTERNAL', 'SVID does not carry the requested key', { reason: 'key-mismatch' });
    const uris = leaf.facts.subjectAltName?.uris ?? [];
    if (uris.length !== 1 || uris[0] !== entry.entry.spiffe_id) throw new SigilError('ERR_INTERNAL', 'SVID names another SPIFFE ID', { reason: 'id-mismatch' });
    const id = entry.entry.id;
    this.#dropSvid(id);
    const notBeforeMs = leaf.facts.notBefore.getTime();
    const notAfterMs = leaf.facts.notAfter.getTime();
    const state: SvidState = {
      entryId: id,
      mintKey: entry.mintKey,
      svid: { spiffeId: entry.entry.spiffe_id, chainDer: Buffer.concat(chain), keyPkcs8Der: key, hint: entry.entry.hint },
      serial: leaf.serial,
      notAfterMs,
      rotateTimer: undefined,
      expireTimer: undefined,
    };
    const clock = this.#o.clock;
    state.rotateTimer = clock.setTimer(() => {
      state.rotateTimer = undefined;
      if (this.#svids.get(id) !== state) return;
      this.#o.logger.debug({ entryId: id, serial: state.serial }, 'rotating X509-SVID');
      this.#queue(id);
    }, rotationDelayMs({ notBeforeMs, notAfterMs, receivedAtMs: nowMs }, nowMs, this.#o.random));
    state.expireTimer = clock.setTimer(() => {
      if (this.#svids.get(id) !== state) return;
      this.#o.logger.warn({ entryId: id, serial: state.serial }, 'X509-SVID expired before a successor arrived');
      this.#dropSvid(id);
      this.#notifyAll();
    }, Math.max(0, notAfterMs - nowMs));
    this.#svids.set(id, state);
    this.#o.logger.info({ entryId: id, spiffeId: entry.entry.spiffe_id, serial: state.serial, notAfter: leaf.facts.notAfter.toISOString() }, 'X509-SVID cached');
  }

  // ---- JWT-SVIDs ----

  async fetchJwtSvids(selectors: readonly Selector[], audience: readonly string[], spiffeId: string | undefined, signal?: AbortSignal): Promise<IssuedJwtSvid[]> {
    if (!this.#synced) throw new SigilError('ERR_UNAVAILABLE', 'agent has not synced its entries yet', { reason: 'not-synced' });
    const keys = new Set(selectors.map(selectorKey));
    const seen = new Set<string>();
    const picked: EntryState[] = [];
    for (const id of this.#match(keys, this.#o.clock.nowMs())) {
      const e = this.#entries.get(id) as EntryState;
      if (spiffeId !== undefined && e.entry.spiffe_id !== spiffeId) continue;
      if (seen.has(e.entry.spiffe_id)) continue;
      seen.add(e.entry.spiffe_id);
      picked.push(e);
    }
    return Promise.all(picked.map((e) => this.#jwtFor(e, audience, signal)));
  }

  #jwtFor(e: EntryState, audience: readonly string[], signal?: AbortSignal): Promise<IssuedJwtSvid> {
    const key = audienceKey(e.entry.id, audience);
    const cached = this.#jwt.get(key, this.#o.clock.nowMs());
    if (cached !== undefined) return Promise.resolve({ spiffeId: cached.spiffeId, token: cached.token, hint: e.entry.hint });
    let pending = this.#jwtInFlight.get(key);
    if (pending === undefined) {
      pending = (async () => {
        try {
          const wire = await this.#o.issuer.newJwtSvid(e.entry.id, audience, signal);
          const token = new Secret(wire.token);
          const issuedAtMs = Number(wire.issued_at) * 1000 || this.#o.clock.nowMs();
          this.#jwt.put(key, { token, spiffeId: wire.spiffe_id, issuedAtMs, expiresAtMs: Number(wire.expires_at) * 1000, receivedAtMs: this.#o.clock.nowMs() });
          this.#o.logger.info({ entryId: e.entry.id, spiffeId: wire.spiffe_id, expiresAt: new Date(Number(wire.expires_at) * 1000).toISOString() }, 'JWT-SVID minted');
          return { spiffeId: wire.spiffe_id, token, hint: e.entry.hint };
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
          this.#jwtInFlight.delete(key);
        }
      })();
      this.#jwtInFlight.set(key, pending);
    }
    return pending;
  }

  async validateJwtSvid(selectors: readonly Selector[], token: string, audience: string): Promise<ValidatedJwtSvid> {
    // Only the trust domains this caller's entries federate with: a workload that does not
    // federate with a domain must not accept that domain's tokens (as SPIRE's agent does).
    const federates = new Set<string>();
    for (const id of this.#match(new Set(selectors.map(selectorKey)), this.#o.clock.nowMs())) {
      for (const td of this.#entries.get(id)?.entry.federates_with ?? []) federates.add(TrustDomain.parse(td).idString);
    }
    const foreign = [...federates].flatMap((td) => {
      const f = this.#federated.get(td);
      return f === undefined ? [] : [f.bundle];
    });
    const set = new BundleSet([...(this.#ownBundle ? [this.#ownBundle] : []), ...foreign]);
    const jwt = await parseAndValidateJwtSvid(token, set, audience, { now: this.#o.clock.now() });
    return { spiffeId: jwt.id.toString(), claims: jwt.claims };
  }

  /** Cancels every timer; subscriptions get nothing more. */
  stop(): void {
    this.#stopped = true;
    this.#stop.abort(new SigilError('ERR_CANCELLED', 'svid cache stopping', { reason: 'stopping' }));
    this.#retryTimer?.cancel();
    this.#sweepTimer?.cancel();
    this.#expiryTimer?.cancel();
    for (const id of [...this.#svids.keys()]) this.#dropSvid(id);
    this.#subscribers.clear();
  }
}

