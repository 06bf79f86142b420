/**
 * The agent's SVID cache: the authorised entries and bundles from entry sync, an in-memory
 * key pair and X.509-SVID per entry it decides to hold, their successors minted at half of
 * their life (±10%), and the subscriptions of connected workloads, each pushed its full
 * state on every change. It implements the Workload API's WorkloadIdentitySource.
 *
 * This module holds the policy (which SVIDs to hold, what each workload is told, entry sync
 * and outage semantics, which entries a JWT-SVID is for and which bundles validate one); its
 * parts live beside it: the entry data model and selector index in entry-index.ts, the
 * minting, holding and rotation of X.509-SVIDs in svid-minter.ts, the minting and caching of
 * JWT-SVIDs in jwt-svid-minter.ts (over jwt-cache.ts), the served trust bundles in
 * workload-bundles.ts.
 *
 * Memory policy (docs/agent.md): entries matched by a connected workload are always minted
 * (at once when the workload or the entry appears) and kept rotated; up to `maxSize` other
 * entries are minted eagerly too, so a workload that connects while the server is down
 * still gets its SVID. Beyond that, an entry no connected workload matches is minted only
 * when one does, and its SVID is dropped `idleGraceMs` after the last such workload left.
 *
 * Cost: entries and subscribers are indexed by selector key (entry-index.ts), so a batch
 * touches only the changed entries and the subscribers they concern, and a new subscriber is
 * matched by counting its selectors' postings, never by scanning every entry.
 */
import type { Clock, TimerHandle } from '../common/clock.js';
import { SigilError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { Bundle } from '../spiffe/bundle.js';
import { BundleSet } from '../spiffe/bundle-set.js';
import { parseAndValidateJwtSvid } from '../spiffe/jwt-svid.js';
import { selectorKey, type Selector } from '../spiffe/selector.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';
import type {
  IssuedJwtSvid,
  SubscribeOptions,
  TrustDomainBundle,
  Unsubscribe,
  ValidatedJwtSvid,
  WorkloadIdentitySource,
  WorkloadUpdate,
  WorkloadX509Svid,
} from './workload-api/identity-source.js';
import type { SyncBatch } from './entry-sync.js';
import { JwtSvidMinter, type JwtSvidIssuer } from './jwt-svid-minter.js';
import { taintJitterMs, taintedIdsOf } from './tainted-authorities.js';
import type { WireEntry } from './server-client.js';
import { WorkloadBundles } from './workload-bundles.js';
import { sameMintForm, SvidMinter, type X509SvidIssuer } from './svid-minter.js';
import { EntryIndex, groupOf, NONE, sortedMatches, toEntryState, type EntryState, type Subscriber } from './entry-index.js';

/** What the cache needs from the server. */
export interface SvidIssuer extends X509SvidIssuer, JwtSvidIssuer {}

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
  /**
   * Called once minting has been quiet for a second after a burst, at most every 10 s: the
   * moment to hand the temporaries' freed native memory back (see trimNativeHeap).
   */
  readonly afterMinting?: () => void;
  /** The bundle named a new set of tainted X.509 authorities (hex SKIs); `delayMs` is the jitter the cache's own re-mints wait. */
  readonly onTaintedAuthorities?: (tainted: ReadonlySet<string>, delayMs: number) => void;
  /**
   * The own trust domain's bundle the agent stored at its last run (read from its data dir):
   * served to bundle streams, and used to validate JWT-SVIDs, until the first entry sync
   * brings the server's current one. Lets an agent restarted while the server is down answer
   * bundle requests at once.
   */
  readonly storedBundle?: Bundle;
  /** The own trust domain's bundle changed (its SPIFFE bundle document): the moment to store it for the next start. */
  readonly onOwnBundle?: (bundle: Bundle) => void;
  /**
   * Longest a workload that asks for X509-SVIDs waits for the first entry sync before it is
   * answered UNAVAILABLE (and retries); counted from the first such request. 5 s by default.
   * A sync failure answers it at once.
   */
  readonly firstSyncWaitMs?: number;
}

/** A subscriber's full state, or why it cannot have one now, and the signature that tells whether it changed. */
type SubscriberState =
  | { readonly update: WorkloadUpdate; readonly unavailable?: undefined; readonly signature: string }
  | { readonly update?: undefined; readonly unavailable: SigilError; readonly signature: string };

/**
 * States computed during one notification pass, by subscriber group: every subscriber of a
 * group gets the same WorkloadUpdate object, so the Workload API renders and encodes it once.
 */
type StateMemo = Map<string, SubscriberState | undefined>;

/** Default of SvidCacheOptions.firstSyncWaitMs. */
export const DEFAULT_FIRST_SYNC_WAIT_MS = 5000;

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
  /**
   * Entries and subscribers indexed by selector key, so a batch costs (changed entries ×
   * subscribers they concern) rather than (all entries × all subscribers).
   */
  readonly #index = new EntryIndex();
  readonly #entries = this.#index.entries;
  /** The entries that carry an expiry. */
  readonly #expiring = new Set<string>();
  /** Whether the last reconcile held every entry (fewer than maxSize): then only changed entries need a look. */
  #allWanted = false;
  /** The SVIDs held, their minting and rotation. */
  readonly #svids: SvidMinter<EntryState>;
  readonly #subscribers = new Set<Subscriber>();
  /** The JWT-SVIDs minted for workloads and their cache. */
  readonly #jwt: JwtSvidMinter;
  /** The own and federated bundles workloads are served. */
  readonly #bundles: WorkloadBundles;
  /** The tainted authority IDs last acted on, sorted and joined: a repeat of the same set costs nothing. */
  #tainted = '';
  #synced = false;
  /** Why the first entry sync has not come yet, once it failed (cleared by the first batch). */
  #syncFailure: SigilError | undefined;
  /** The first sync took longer than firstSyncWaitMs after a workload asked: waiting workloads are told UNAVAILABLE. */
  #syncOverdue = false;
  #syncWaitTimer: TimerHandle | undefined;
  #sweepTimer: TimerHandle | undefined;
  #expiryTimer: TimerHandle | undefined;
  #stopped = false;

  constructor(options: SvidCacheOptions) {
    this.#o = options;
    this.#maxSize = options.maxSize ?? 1000;
    this.#idleGraceMs = options.idleGraceMs ?? 5 * 60_000;
    this.#svids = new SvidMinter<EntryState>({
      issuer: options.issuer,
      clock: options.clock,
      logger: options.logger,
      ...(options.random ? { random: options.random } : {}),
      ...(options.retryInitialMs !== undefined ? { retryInitialMs: options.retryInitialMs } : {}),
      ...(options.retryMaxMs !== undefined ? { retryMaxMs: options.retryMaxMs } : {}),
      ...(options.onRejected ? { onRejected: options.onRejected } : {}),
      ...(options.afterMinting ? { afterMinting: options.afterMinting } : {}),
      entryOf: (id) => this.#entries.get(id),
      onChanged: (ids) => this.#notifyEntries(ids),
    });
    this.#jwt = new JwtSvidMinter({
      issuer: options.issuer,
      clock: options.clock,
      logger: options.logger,
      ...(options.onRejected ? { onRejected: options.onRejected } : {}),
    });
    this.#bundles = new WorkloadBundles(options);
  }

  /**
   * Entry sync failed before its first batch: the agent cannot say which SVIDs anyone gets,
   * so workloads waiting for SVIDs are told UNAVAILABLE now rather than left hanging.
   */
  syncFailed(err: SigilError): void {
    if (this.#stopped || this.#synced) return;
    const first = this.#syncFailure === undefined;
    this.#syncFailure = err;
    if (first) this.#notifyAll();
  }

  /** Counts for status output and tests. */
  stats(): SvidCacheStats {
    return { entries: this.#entries.size, svids: this.#svids.size, subscribers: this.#subscribers.size, jwtSvids: this.#jwt.size, synced: this.#synced };
  }

  /** The entry IDs whose SVIDs are held now. */
  cachedEntryIds(): string[] {
    return this.#svids.ids();
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
    const wasSynced = this.#synced;
    const touched = new Set<string>();
    const affected = new Set<Subscriber>();
    if (batch.kind === 'FULL') {
      const incoming = new Set(batch.entries.map((e) => e.id));
      for (const id of [...this.#entries.keys()]) if (!incoming.has(id)) this.#removeEntry(id, affected);
    }
    for (const id of batch.deletedEntryIds) this.#removeEntry(id, affected);
    for (const e of batch.entries) {
      const expires = Number(e.expires_at);
      const expiresAtMs = expires > 0 ? expires * 1000 : 0;
      if (expiresAtMs !== 0 && expiresAtMs <= now) this.#removeEntry(e.id, affected);
      else if (this.#upsertEntry(e, expiresAtMs, now, affected)) touched.add(e.id);
    }
    const bundlesChanged = batch.bundles !== undefined && this.#bundles.apply(batch.bundles.own, batch.bundles.federated);
    this.#synced = true;
    this.#syncFailure = undefined;
    this.#syncWaitTimer?.cancel();
    this.#syncWaitTimer = undefined;
    if (!wasSynced) for (const sub of this.#subscribers) this.#index.matchSubscriber(sub, now);
    this.#reconcile(touched);
    if (!wasSynced || bundlesChanged) this.#notifyAll();
    else {
      const memo: StateMemo = new Map();
      for (const sub of affected) this.#notify(sub, memo);
    }
    this.#scheduleExpiry();
    if (batch.bundles !== undefined) {
      this.#applyTainted(taintedIdsOf(batch.bundles.own.tainted_x509_subject_key_ids), now);
      this.#jwt.applyTainted(new Set(batch.bundles.own.tainted_jwt_key_ids ?? []));
    }
  }

  /**
   * Moves the rotation of every held SVID that chains to a tainted authority to one jittered
   * moment a few seconds away, so they are re-minted together (one batch call) by the active
   * authority before the operator revokes the tainted one.
   */
  #applyTainted(tainted: ReadonlySet<string>, now: number): void {
    const key = [...tainted].sort().join(',');
    if (key === this.#tainted) return;
    this.#tainted = key;
    if (tainted.size === 0) return;
    const delayMs = taintJitterMs(this.#o.random);
    const count = this.#svids.rotateTainted(tainted, now + delayMs);
    this.#o.logger.warn({ taintedAuthorities: [...tainted], svids: count, inMs: delayMs }, 'authority tainted; re-minting the X509-SVIDs it signed');
    this.#o.onTaintedAuthorities?.(tainted, delayMs);
  }

  /** Adds or replaces an entry, re-linking the subscribers it concerns; true when it needs a look by #reconcile. */
  #upsertEntry(e: WireEntry, expiresAtMs: number, now: number, affected: Set<Subscriber>): boolean {
    const old = this.#entries.get(e.id);
    const keys = [...new Set(e.selectors.map((sel) => selectorKey({ type: sel.type, value: sel.value })))].sort();
    const sameKeys = old !== undefined && old.keys.length === keys.length && old.keys.every((k, i) => k === keys[i]);
    if (old !== undefined && old.revision !== e.revision) this.#jwt.dropEntry(e.id);
    if (old !== undefined && !sameKeys) this.#index.unlink(old, now, affected);
    const state = toEntryState(e, sameKeys ? old.keys : keys, expiresAtMs, sameKeys ? old.subs : undefined, old?.lastActiveMs ?? 0);
    // Map.set on an existing key keeps its place: the idle order ("sync order") stays as it was.
    this.#entries.set(e.id, state);
    if (expiresAtMs !== 0) this.#expiring.add(e.id);
    else this.#expiring.delete(e.id);
    if (!sameKeys) this.#index.link(state, this.#synced);
    else if (old.spiffeId !== state.spiffeId) {
      // A new SPIFFE ID can move the entry in the identity order of its subscribers.
      for (const sub of state.subs ?? []) {
        sub.sorted = undefined;
        sub.group = undefined;
      }
    }
    // Its subscribers' state may change (federates_with, a new SVID to come): they get a look.
    for (const sub of state.subs ?? []) affected.add(sub);
    const svid = this.#svids.get(e.id);
    // An SVID minted for an older form of the entry is replaced (it is served until then).
    if (svid !== undefined) {
      if (sameMintForm(svid.from, state)) svid.from = state;
      else this.#svids.queue(e.id);
    }
    return old === undefined || !sameKeys || !sameMintForm(old, state);
  }

  /** Removes an entry with its SVID, tokens and subscriber links. */
  #removeEntry(id: string, affected: Set<Subscriber>): void {
    const state = this.#entries.get(id);
    if (state === undefined) return;
    this.#index.unlink(state, this.#o.clock.nowMs(), affected);
    this.#entries.delete(id);
    this.#expiring.delete(id);
    this.#jwt.dropEntry(id);
    this.#svids.forget(id);
  }

  /** Arms one timer for the earliest entry `expiresAt`, so an expiring entry goes when it expires, not at the next batch. */
  #scheduleExpiry(): void {
    this.#expiryTimer?.cancel();
    this.#expiryTimer = undefined;
    if (this.#stopped) return;
    let next = Infinity;
    for (const id of this.#expiring) {
      const at = this.#entries.get(id)?.expiresAtMs ?? 0;
      if (at > 0 && at < next) next = at;
    }
    if (next === Infinity) return;
    this.#expiryTimer = this.#o.clock.setTimer(() => {
      this.#expiryTimer = undefined;
      const now = this.#o.clock.nowMs();
      const expired = [...this.#expiring].filter((id) => {
        const at = this.#entries.get(id)?.expiresAtMs ?? 0;
        return at > 0 && at <= now;
      });
      if (expired.length === 0) {
        this.#scheduleExpiry();
        return;
      }
      this.#o.logger.info({ entryIds: expired }, 'registration entries expired; no longer served');
      // The same path as a deletion from the server: SVIDs dropped, open streams told at once.
      this.applyBatch({ kind: 'DELTA', entries: [], deletedEntryIds: expired });
    }, Math.max(0, next - this.#o.clock.nowMs()));
  }

  // ---- workload subscriptions ----

  subscribe(selectors: readonly Selector[], onUpdate: (update: WorkloadUpdate) => void, options: SubscribeOptions = {}): Unsubscribe {
    const keys = new Set(selectors.map(selectorKey));
    const sub: Subscriber = {
      keys,
      onUpdate,
      matched: new Set(),
      sorted: undefined,
      group: undefined,
      lastSignature: undefined,
      bundlesOnly: options.bundlesOnly === true,
      onUnavailable: options.onUnavailable,
    };
    if (!this.#synced) this.#armSyncWait();
    this.#subscribers.add(sub);
    this.#index.addSubscriber(sub);
    const newlyActive = this.#synced ? this.#index.matchSubscriber(sub, this.#o.clock.nowMs()) : [];
    if (newlyActive.length > 0) this.#reconcile(new Set(newlyActive));
    this.#notify(sub);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#subscribers.delete(sub);
      this.#index.removeSubscriber(sub);
      const now = this.#o.clock.nowMs();
      let idle = false;
      for (const id of sub.matched) {
        const e = this.#entries.get(id);
        if (e?.subs !== undefined && e.subs.delete(sub) && e.subs.size === 0) {
          e.subs = undefined;
          e.lastActiveMs = now;
          idle = true;
        }
      }
      sub.matched.clear();
      if (idle) this.#scheduleSweep();
    };
  }

  /** Starts the first-sync wait of waiting workloads (once): past it they are told UNAVAILABLE. */
  #armSyncWait(): void {
    if (this.#syncWaitTimer !== undefined || this.#syncOverdue || this.#stopped) return;
    this.#syncWaitTimer = this.#o.clock.setTimer(() => {
      this.#syncWaitTimer = undefined;
      if (this.#synced || this.#stopped) return;
      this.#syncOverdue = true;
      this.#notifyAll();
    }, this.#o.firstSyncWaitMs ?? DEFAULT_FIRST_SYNC_WAIT_MS);
  }

  /** Why a workload cannot be told its SVIDs before the first sync, once that is known; undefined while still waiting. */
  #notSynced(): SigilError | undefined {
    if (this.#syncFailure === undefined && !this.#syncOverdue) return undefined;
    return new SigilError(
      'ERR_UNAVAILABLE',
      this.#syncFailure !== undefined
        ? 'the agent cannot reach the server to sync its registration entries; retry later'
        : 'the agent has not synced its registration entries from the server yet; retry later',
      { reason: 'not-synced' },
    );
  }

  /**
   * Full state for one subscriber; or why it cannot have one now (unavailable); or undefined
   * while it should wait (the first sync or a first mint of one of its SVIDs is under way).
   */
  #stateFor(sub: Subscriber): SubscriberState | undefined {
    if (!this.#synced) {
      // Bundles need no entries: the stored bundle answers them at once.
      if (sub.bundlesOnly && this.#bundles.ownWire !== undefined) {
        return { update: { svids: [], bundle: this.#bundles.ownWire, federatedBundles: [], entitled: true }, signature: `b|${this.#bundles.version}||stored` };
      }
      const why = this.#notSynced();
      return why === undefined ? undefined : { unavailable: why, signature: `u|${why.reason ?? ''}` };
    }
    if (this.#bundles.ownWire === undefined) return undefined;
    const svids: WorkloadX509Svid[] = [];
    const serials: string[] = [];
    const federates = new Set<string>();
    let failed = 0;
    const matched = sortedMatches(sub, this.#entries);
    for (const id of matched) {
      if (sub.bundlesOnly) {
        for (const td of this.#entries.get(id)?.federates ?? NONE) federates.add(td);
        continue;
      }
      const s = this.#svids.get(id);
      if (s === undefined) {
        if (this.#svids.pending(id) && !this.#svids.failed(id)) return undefined;
        if (this.#svids.failed(id)) failed++;
        continue;
      }
      svids.push(s.svid);
      serials.push(s.serial);
      for (const td of this.#entries.get(id)?.federates ?? NONE) federates.add(td);
    }
    if (svids.length === 0 && failed > 0) {
      // Entitled, but nothing could be minted (the server is unreachable or refused): not a
      // denial, which would make clients drop what they hold, but a fault they retry.
      return {
        unavailable: new SigilError('ERR_UNAVAILABLE', 'the agent cannot mint the X509-SVIDs of this workload now; retry later', { reason: 'svid-mint-failed' }),
        signature: 'u|svid-mint-failed',
      };
    }
    const federatedBundles: TrustDomainBundle[] = [];
    for (const td of [...federates].sort()) {
      const f = this.#bundles.federated(td);
      if (f !== undefined) federatedBundles.push(f.wire);
    }
    const fed = federatedBundles.map((b) => b.trustDomainId).join(',');
    if (sub.bundlesOnly) {
      const entitled = matched.length > 0;
      return { update: { svids: [], bundle: this.#bundles.ownWire, federatedBundles, entitled }, signature: `b|${this.#bundles.version}|${fed}|${entitled}` };
    }
    return {
      update: { svids, bundle: this.#bundles.ownWire, federatedBundles },
      signature: `${serials.join(',')}|${this.#bundles.version}|${fed}`,
    };
  }

  /** Pushes a subscriber its state when it changed; `memo` shares states within one pass. */
  #notify(sub: Subscriber, memo?: StateMemo): void {
    let state: SubscriberState | undefined;
    if (memo === undefined) state = this.#stateFor(sub);
    else {
      const group = `${sub.bundlesOnly ? 'b' : 'x'}${groupOf(sub, this.#entries)}`;
      if (memo.has(group)) state = memo.get(group);
      else memo.set(group, (state = this.#stateFor(sub)));
    }
    if (state === undefined || state.signature === sub.lastSignature) return;
    sub.lastSignature = state.signature;
    try {
      if (state.update !== undefined) sub.onUpdate(state.update);
      else sub.onUnavailable?.(state.unavailable);
    } catch (err) {
      this.#o.logger.error({ err }, 'workload update listener failed');
    }
  }

  #notifyAll(): void {
    const memo: StateMemo = new Map();
    for (const sub of [...this.#subscribers]) this.#notify(sub, memo);
  }

  /** Notifies the subscribers of these entries only (a mint, a failure, an expiry concerns no one else). */
  #notifyEntries(ids: Iterable<string>): void {
    const subs = new Set<Subscriber>();
    for (const id of ids) for (const sub of this.#entries.get(id)?.subs ?? []) subs.add(sub);
    const memo: StateMemo = new Map();
    for (const sub of subs) this.#notify(sub, memo);
  }

  // ---- which SVIDs to hold ----

  /**
   * Mints what should be held and drops what should not (see the policy at the top). While
   * every entry fits in maxSize every entry is held, so only `touched` entries (new, changed,
   * newly matched) need a look; otherwise the whole policy runs.
   */
  #reconcile(touched?: ReadonlySet<string>): void {
    if (this.#stopped || !this.#synced) return;
    if (this.#entries.size <= this.#maxSize) {
      const wasAllWanted = this.#allWanted;
      this.#allWanted = true;
      if (wasAllWanted && touched !== undefined) {
        for (const id of touched) this.#svids.queueIfMissing(id);
        return;
      }
      for (const id of this.#entries.keys()) this.#svids.queueIfMissing(id);
      this.#scheduleSweep();
      return;
    }
    this.#allWanted = false;
    const now = this.#o.clock.nowMs();
    const wanted = new Set<string>();
    const rest: string[] = [];
    for (const [id, e] of this.#entries) {
      if (e.subs !== undefined) wanted.add(id);
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
    for (const id of this.#svids.ids()) {
      if (!wanted.has(id)) {
        this.#o.logger.debug({ entryId: id }, 'dropping idle SVID');
        this.#svids.drop(id);
      }
    }
    for (const id of wanted) this.#svids.queueIfMissing(id);
    this.#scheduleSweep();
  }

  #scheduleSweep(): void {
    if (this.#stopped) return;
    this.#sweepTimer?.cancel();
    this.#sweepTimer = undefined;
    // While every entry fits in maxSize nothing idle is ever dropped: no sweep to plan.
    if (this.#entries.size <= this.#maxSize) return;
    const now = this.#o.clock.nowMs();
    let next = Infinity;
    for (const e of this.#entries.values()) {
      if (e.subs === undefined && e.lastActiveMs > 0 && this.#svids.has(e.id)) next = Math.min(next, e.lastActiveMs + this.#idleGraceMs);
    }
    if (next === Infinity) return;
    this.#sweepTimer = this.#o.clock.setTimer(() => {
      this.#sweepTimer = undefined;
      this.#reconcile();
    }, Math.max(0, next - now) + 1);
  }

  // ---- JWT-SVIDs ----

  async fetchJwtSvids(selectors: readonly Selector[], audience: readonly string[], spiffeId: string | undefined, signal?: AbortSignal): Promise<IssuedJwtSvid[]> {
    if (!this.#synced) throw new SigilError('ERR_UNAVAILABLE', 'agent has not synced its entries yet', { reason: 'not-synced' });
    const now = this.#o.clock.nowMs();
    const seen = new Set<string>();
    const picked: EntryState[] = [];
    for (const id of this.#index.matchKeys(new Set(selectors.map(selectorKey)))) {
      const e = this.#entries.get(id) as EntryState;
      if (e.expiresAtMs !== 0 && e.expiresAtMs <= now) continue;
      if (spiffeId !== undefined && e.spiffeId !== spiffeId) continue;
      if (seen.has(e.spiffeId)) continue;
      seen.add(e.spiffeId);
      picked.push(e);
    }
    return Promise.all(picked.map((e) => this.#jwt.fetch(e, audience, signal)));
  }

  async validateJwtSvid(selectors: readonly Selector[], token: string, audience: string): Promise<ValidatedJwtSvid> {
    // Only the trust domains this caller's entries federate with: a workload that does not
    // federate with a domain must not accept that domain's tokens (as SPIRE's agent does).
    const federates = new Set<string>();
    for (const id of this.#index.matchKeys(new Set(selectors.map(selectorKey)))) {
      for (const td of this.#entries.get(id)?.federates ?? NONE) federates.add(td);
    }
    const foreign = [...federates].flatMap((td) => {
      const f = this.#bundles.federated(td);
      return f === undefined ? [] : [f.bundle];
    });
    const set = new BundleSet([...(this.#bundles.own ? [this.#bundles.own] : []), ...foreign]);
    const jwt = await parseAndValidateJwtSvid(token, set, audience, { now: this.#o.clock.now() });
    return { spiffeId: jwt.id.toString(), claims: jwt.claims };
  }

  /** Cancels every timer; subscriptions get nothing more. */
  stop(): void {
    this.#stopped = true;
    this.#svids.stop();
    this.#sweepTimer?.cancel();
    this.#expiryTimer?.cancel();
    this.#syncWaitTimer?.cancel();
    this.#subscribers.clear();
  }
}

