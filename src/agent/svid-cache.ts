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
 *
 * Cost: entries and subscribers are indexed by selector key, so a batch touches only the
 * changed entries and the subscribers they concern, and a new subscriber is matched by
 * counting its selectors' postings, never by scanning every entry.
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
import { selectorKey, type Selector } from '../spiffe/selector.js';
import { TrustDomain } from '../spiffe/spiffe-id.js';
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
import { isAgentRejected } from './agent-identity.js';
import { generateKeyAndCsrSync, type KeyAndCsr } from './csr.js';
import { DeadlineQueue, type Deadline } from './deadline-queue.js';
import type { SyncBatch } from './entry-sync.js';
import { audienceKey, JwtSvidCache } from './jwt-cache.js';
import { rotationDelayMs } from './rotation.js';
import { chainUsesTainted, taintJitterMs, taintedIdsOf } from './tainted-authorities.js';
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

/**
 * What the cache keeps of an entry: only the fields it matches, mints and serves with (the
 * wire form carries more, and at 10k entries every field counts).
 */
interface EntryState {
  readonly id: string;
  readonly spiffeId: string;
  readonly hint: string;
  readonly revision: string;
  /** With spiffeId, what the SVID depends on: a change means minting again. */
  readonly ttlSeconds: number;
  /** Sorted; the shared empty array when none. */
  readonly dnsNames: readonly string[];
  /** `federates_with` as trust domain IDs; the shared empty array when none. */
  readonly federates: readonly string[];
  /** The entry's distinct selector keys (selectorKey form); empty never matches. */
  readonly keys: readonly string[];
  readonly expiresAtMs: number;
  /** The subscribers whose selectors satisfy this entry (its "active count" is the size); undefined while none. */
  subs: Set<Subscriber> | undefined;
  lastActiveMs: number;
}

/** An SVID held for an entry; it waits in the deadline queue for its rotation, then its expiry. */
interface SvidState extends Deadline {
  /** The form of the entry it was minted for. */
  from: EntryState;
  readonly svid: WorkloadX509Svid;
  readonly serial: string;
  /** Moved earlier when a taint concerns it. */
  rotateAtMs: number;
  readonly notAfterMs: number;
  /** Its successor was asked for; next deadline is expiry. */
  rotating: boolean;
}

interface Subscriber {
  readonly keys: ReadonlySet<string>;
  readonly onUpdate: (u: WorkloadUpdate) => void;
  /** IDs of the entries this subscriber matches. */
  readonly matched: Set<string>;
  /** `matched` sorted (svids[0], the default identity, must not flip between pushes); rebuilt when it changes. */
  sorted: string[] | undefined;
  /** `sorted` joined: subscribers with the same one share one state per notification pass. */
  group: string | undefined;
  lastSignature: string | undefined;
  /** Bundle streams: no SVIDs, no wait for minting, the stored bundle before the first sync. */
  readonly bundlesOnly: boolean;
  readonly onUnavailable: ((error: SigilError) => void) | undefined;
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

/**
 * Entry IDs in Workload API order: by SPIFFE ID, then entry ID (code-unit order, no locale),
 * so svids[0], the default identity of clients, is the same on every agent and every push.
 */
function identityOrder(entries: ReadonlyMap<string, EntryState>, ids: string[]): string[] {
  const key = (id: string): string => entries.get(id)?.spiffeId ?? '';
  return ids.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    if (ka !== kb) return ka < kb ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  });
}

function sortedMatches(sub: Subscriber, entries: ReadonlyMap<string, EntryState>): string[] {
  sub.sorted ??= identityOrder(entries, [...sub.matched]);
  return sub.sorted;
}

function groupOf(sub: Subscriber, entries: ReadonlyMap<string, EntryState>): string {
  sub.group ??= sortedMatches(sub, entries).join(' ');
  return sub.group;
}

const NONE: readonly string[] = Object.freeze([]);

/** Default of SvidCacheOptions.firstSyncWaitMs. */
export const DEFAULT_FIRST_SYNC_WAIT_MS = 5000;

/** Trust domain IDs of an entry's federates_with, parsed once per entry form (the server checked them; one it did not is skipped). */
function federatesOf(e: WireEntry): readonly string[] {
  if (e.federates_with.length === 0) return NONE;
  const out: string[] = [];
  for (const td of e.federates_with) {
    try {
      out.push(TrustDomain.parse(td).idString);
    } catch {
      // Matches nothing in #federated either way.
    }
  }
  return out;
}

/** Quiet time after the last mint, and shortest time between two afterMinting calls. */
const AFTER_MINTING_QUIET_MS = 1000;
const AFTER_MINTING_EVERY_MS = 10_000;

/** Keys generated between two yields to the event loop while a batch of mints is prepared. */
const KEYS_PER_TURN = 16;

/**
 * The served SVID with its key and chain copied into one small pooled Buffer: the exported
 * key is a malloc'd block of its own, and keeping it would pin heap pages among the freed
 * temporaries of key generation.
 */
function svidMaterial(entry: EntryState, keyDer: Buffer, chain: readonly Buffer[]): WorkloadX509Svid {
  const material = Buffer.concat([keyDer, ...chain]);
  return {
    spiffeId: entry.spiffeId,
    chainDer: material.subarray(keyDer.length),
    keyPkcs8Der: new Secret(material.subarray(0, keyDer.length)),
    hint: entry.hint,
  };
}

/** True when an SVID minted for entry form `a` is still right for form `b`. */
function sameMintForm(a: EntryState, b: EntryState): boolean {
  return a === b || (a.spiffeId === b.spiffeId && a.ttlSeconds === b.ttlSeconds && a.dnsNames.length === b.dnsNames.length && a.dnsNames.every((d, i) => d === b.dnsNames[i]));
}

/** The cache's form of a wire entry. */
function toEntryState(e: WireEntry, keys: readonly string[], expiresAtMs: number, subs: Set<Subscriber> | undefined, lastActiveMs: number): EntryState {
  return {
    id: e.id,
    spiffeId: e.spiffe_id,
    hint: e.hint,
    revision: e.revision,
    ttlSeconds: e.x509_svid_ttl_seconds,
    dnsNames: e.dns_names.length === 0 ? NONE : [...e.dns_names].sort(),
    federates: federatesOf(e),
    keys,
    expiresAtMs,
    subs,
    lastActiveMs,
  };
}

/** The entry IDs under one selector key: a lone ID as itself (the usual case), a Set beyond. */
type IdsByKey = Map<string, string | Set<string>>;

function* idsUnder(index: IdsByKey, key: string): Iterable<string> {
  const v = index.get(key);
  if (v === undefined) return;
  if (typeof v === 'string') yield v;
  else yield* v;
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
  /**
   * Indexes that keep a batch's cost at (changed entries × subscribers they concern) rather
   * than (all entries × all subscribers): entries and subscribers by selector key, and the
   * entries that carry an expiry.
   */
  readonly #entriesByKey: IdsByKey = new Map();
  readonly #subsByKey = new Map<string, Set<Subscriber>>();
  readonly #expiring = new Set<string>();
  /** Whether the last reconcile held every entry (fewer than maxSize): then only changed entries need a look. */
  #allWanted = false;
  readonly #svids = new Map<string, SvidState>();
  /** Rotation and expiry of every held SVID, behind one timer. */
  readonly #deadlines: DeadlineQueue<SvidState>;
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
  /** The tainted authority IDs last acted on, sorted and joined: a repeat of the same set costs nothing. */
  #tainted = '';
  #taintedJwt = '';
  #synced = false;
  /** Why the first entry sync has not come yet, once it failed (cleared by the first batch). */
  #syncFailure: SigilError | undefined;
  /** The first sync took longer than firstSyncWaitMs after a workload asked: waiting workloads are told UNAVAILABLE. */
  #syncOverdue = false;
  #syncWaitTimer: TimerHandle | undefined;
  /** Whether #ownBundle came from the server (not only from the data dir). */
  #ownFromServer = false;
  #flushScheduled = false;
  #retryTimer: TimerHandle | undefined;
  #sweepTimer: TimerHandle | undefined;
  #expiryTimer: TimerHandle | undefined;
  #afterMintingTimer: TimerHandle | undefined;
  #afterMintingAtMs = -Infinity;
  #stopped = false;
  readonly #stop = new AbortController();

  constructor(options: SvidCacheOptions) {
    this.#o = options;
    this.#maxSize = options.maxSize ?? 1000;
    this.#idleGraceMs = options.idleGraceMs ?? 5 * 60_000;
    this.#backoff = new Backoff({ initialMs: options.retryInitialMs ?? 1000, maxMs: options.retryMaxMs ?? 30_000, ...(options.random ? { random: options.random } : {}) });
    this.#deadlines = new DeadlineQueue(options.clock, (s) => this.#svidDue(s));
    const stored = options.storedBundle;
    if (stored !== undefined && stored.trustDomain.equals(options.trustDomain)) {
      this.#ownBundle = stored;
      this.#ownWire = toTrustDomainBundle(stored);
      this.#bundleVersion++;
    }
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
    const bundlesChanged = batch.bundles !== undefined && this.#applyBundles(batch.bundles.own, batch.bundles.federated);
    this.#synced = true;
    this.#syncFailure = undefined;
    this.#syncWaitTimer?.cancel();
    this.#syncWaitTimer = undefined;
    if (!wasSynced) for (const sub of this.#subscribers) this.#matchSubscriber(sub, now);
    this.#reconcile(touched);
    if (!wasSynced || bundlesChanged) this.#notifyAll();
    else {
      const memo: StateMemo = new Map();
      for (const sub of affected) this.#notify(sub, memo);
    }
    this.#scheduleExpiry();
    if (batch.bundles !== undefined) {
      this.#applyTainted(taintedIdsOf(batch.bundles.own.tainted_x509_subject_key_ids), now);
      this.#applyTaintedJwt(new Set(batch.bundles.own.tainted_jwt_key_ids ?? []));
    }
  }

  /** Drops cached JWT-SVIDs signed by a newly tainted key: the next fetch gets one from the active key. */
  #applyTaintedJwt(kids: ReadonlySet<string>): void {
    const key = [...kids].sort().join(',');
    if (key === this.#taintedJwt) return;
    this.#taintedJwt = key;
    if (kids.size === 0) return;
    const dropped = this.#jwt.dropSignedBy(kids);
    this.#o.logger.warn({ taintedJwtKeys: [...kids], jwtSvids: dropped }, 'JWT signing key tainted; dropped the cached JWT-SVIDs it signed');
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
    let count = 0;
    for (const state of this.#svids.values()) {
      if (state.rotating || !chainUsesTainted(state.svid.chainDer, tainted)) continue;
      state.rotateAtMs = Math.min(state.rotateAtMs, now + delayMs);
      this.#deadlines.schedule(state, Math.min(state.rotateAtMs, state.notAfterMs));
      count++;
    }
    this.#o.logger.warn({ taintedAuthorities: [...tainted], svids: count, inMs: delayMs }, 'authority tainted; re-minting the X509-SVIDs it signed');
    this.#o.onTaintedAuthorities?.(tainted, delayMs);
  }

  /** Adds or replaces an entry, re-linking the subscribers it concerns; true when it needs a look by #reconcile. */
  #upsertEntry(e: WireEntry, expiresAtMs: number, now: number, affected: Set<Subscriber>): boolean {
    const old = this.#entries.get(e.id);
    const keys = [...new Set(e.selectors.map((sel) => selectorKey({ type: sel.type, value: sel.value })))].sort();
    const sameKeys = old !== undefined && old.keys.length === keys.length && old.keys.every((k, i) => k === keys[i]);
    if (old !== undefined && old.revision !== e.revision) this.#jwt.dropEntry(e.id);
    if (old !== undefined && !sameKeys) this.#unlinkEntry(old, now, affected);
    const state = toEntryState(e, sameKeys ? old.keys : keys, expiresAtMs, sameKeys ? old.subs : undefined, old?.lastActiveMs ?? 0);
    // Map.set on an existing key keeps its place: the idle order ("sync order") stays as it was.
    this.#entries.set(e.id, state);
    if (expiresAtMs !== 0) this.#expiring.add(e.id);
    else this.#expiring.delete(e.id);
    if (!sameKeys) this.#linkEntry(state);
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
      else this.#queue(e.id);
    }
    return old === undefined || !sameKeys || !sameMintForm(old, state);
  }

  /** Removes an entry with its SVID, tokens and subscriber links. */
  #removeEntry(id: string, affected: Set<Subscriber>): void {
    const state = this.#entries.get(id);
    if (state === undefined) return;
    this.#unlinkEntry(state, this.#o.clock.nowMs(), affected);
    this.#entries.delete(id);
    this.#expiring.delete(id);
    this.#jwt.dropEntry(id);
    this.#dropSvid(id);
    this.#failed.delete(id);
  }

  /** Indexes an entry by its selector keys and links it to every subscriber that satisfies it. */
  #linkEntry(state: EntryState): void {
    const id = state.id;
    if (state.keys.length === 0) return;
    let candidates: Set<Subscriber> | undefined;
    for (const k of state.keys) {
      const ids = this.#entriesByKey.get(k);
      if (ids === undefined) this.#entriesByKey.set(k, id);
      else if (typeof ids !== 'string') ids.add(id);
      else if (ids !== id) this.#entriesByKey.set(k, new Set([ids, id]));
      const subs = this.#subsByKey.get(k);
      if (candidates === undefined || (subs?.size ?? 0) < candidates.size) candidates = subs ?? new Set();
    }
    // Before the first batch is in, subscribers are linked all at once when it is.
    if (!this.#synced) return;
    for (const sub of candidates ?? []) {
      if (state.keys.every((k) => sub.keys.has(k))) this.#link(sub, state);
    }
  }

  /** Takes an entry out of the selector index and off every subscriber it was linked to. */
  #unlinkEntry(state: EntryState, now: number, affected: Set<Subscriber>): void {
    const id = state.id;
    for (const k of state.keys) {
      const ids = this.#entriesByKey.get(k);
      if (ids === id) this.#entriesByKey.delete(k);
      else if (ids !== undefined && typeof ids !== 'string') {
        ids.delete(id);
        if (ids.size === 1) this.#entriesByKey.set(k, ids.values().next().value as string);
      }
    }
    if (state.subs === undefined) return;
    for (const sub of state.subs) {
      sub.matched.delete(id);
      sub.sorted = undefined;
      sub.group = undefined;
      affected.add(sub);
    }
    if (state.subs.size > 0) state.lastActiveMs = now;
    state.subs = undefined;
  }

  #link(sub: Subscriber, state: EntryState): void {
    (state.subs ??= new Set()).add(sub);
    sub.matched.add(state.id);
    sub.sorted = undefined;
    sub.group = undefined;
  }

  /** The IDs of the entries whose selectors are all among `keys`: counted through the index, in identity order. */
  #matchKeys(keys: ReadonlySet<string>): string[] {
    const counts = new Map<string, number>();
    for (const k of keys) for (const id of idsUnder(this.#entriesByKey, k)) counts.set(id, (counts.get(id) ?? 0) + 1);
    const out: string[] = [];
    for (const [id, n] of counts) if (this.#entries.get(id)?.keys.length === n) out.push(id);
    return identityOrder(this.#entries, out);
  }

  /** Links a subscriber to every entry it satisfies; returns the entries that had no subscriber before. */
  #matchSubscriber(sub: Subscriber, now: number): string[] {
    const newlyActive: string[] = [];
    for (const id of this.#matchKeys(sub.keys)) {
      const e = this.#entries.get(id) as EntryState;
      if (e.expiresAtMs !== 0 && e.expiresAtMs <= now) continue;
      if ((e.subs?.size ?? 0) === 0) newlyActive.push(id);
      this.#link(sub, e);
    }
    return newlyActive;
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

  /** Replaces the bundles; true when anything a workload sees changed. */
  #applyBundles(own: WireBundle, federated: readonly WireBundle[]): boolean {
    const parse = (w: WireBundle): Bundle => Bundle.parseJwks(TrustDomain.parse(w.trust_domain_id), w.document);
    let changed = false;
    try {
      const b = parse(own);
      const fromServer = this.#ownFromServer;
      this.#ownFromServer = true;
      if (this.#ownBundle === undefined || !this.#ownBundle.equals(b)) {
        const rootsChanged = !fromServer || this.#ownBundle === undefined || !this.#ownBundle.sameAuthorities(b);
        this.#ownBundle = b;
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
    return changed;
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
    for (const k of keys) {
      let subs = this.#subsByKey.get(k);
      if (subs === undefined) this.#subsByKey.set(k, (subs = new Set()));
      subs.add(sub);
    }
    const newlyActive = this.#synced ? this.#matchSubscriber(sub, this.#o.clock.nowMs()) : [];
    if (newlyActive.length > 0) this.#reconcile(new Set(newlyActive));
    this.#notify(sub);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#subscribers.delete(sub);
      for (const k of keys) {
        const subs = this.#subsByKey.get(k);
        subs?.delete(sub);
        if (subs?.size === 0) this.#subsByKey.delete(k);
      }
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
      if (sub.bundlesOnly && this.#ownWire !== undefined) {
        return { update: { svids: [], bundle: this.#ownWire, federatedBundles: [], entitled: true }, signature: `b|${this.#bundleVersion}||stored` };
      }
      const why = this.#notSynced();
      return why === undefined ? undefined : { unavailable: why, signature: `u|${why.reason ?? ''}` };
    }
    if (this.#ownWire === undefined) return undefined;
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
        if ((this.#queued.has(id) || this.#inFlight.has(id)) && !this.#failed.has(id)) return undefined;
        if (this.#failed.has(id)) failed++;
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
      const f = this.#federated.get(td);
      if (f !== undefined) federatedBundles.push(f.wire);
    }
    const fed = federatedBundles.map((b) => b.trustDomainId).join(',');
    if (sub.bundlesOnly) {
      const entitled = matched.length > 0;
      return { update: { svids: [], bundle: this.#ownWire, federatedBundles, entitled }, signature: `b|${this.#bundleVersion}|${fed}|${entitled}` };
    }
    return {
      update: { svids, bundle: this.#ownWire, federatedBundles },
      signature: `${serials.join(',')}|${this.#bundleVersion}|${fed}`,
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
        for (const id of touched) this.#queueIfMissing(id);
        return;
      }
      for (const id of this.#entries.keys()) this.#queueIfMissing(id);
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
    for (const id of [...this.#svids.keys()]) {
      if (!wanted.has(id)) {
        this.#o.logger.debug({ entryId: id }, 'dropping idle SVID');
        this.#dropSvid(id);
      }
    }
    for (const id of wanted) this.#queueIfMissing(id);
    this.#scheduleSweep();
  }

  /** Queues a mint when the entry has no SVID for its current form and its last mint did not fail. */
  #queueIfMissing(id: string): void {
    const s = this.#svids.get(id);
    const e = this.#entries.get(id);
    if ((s === undefined || (e !== undefined && !sameMintForm(s.from, e))) && !this.#failed.has(id)) this.#queue(id);
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

  #dropSvid(id: string): void {
    const s = this.#svids.get(id);
    if (s === undefined) return;
    this.#deadlines.remove(s);
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
    const requests: (KeyAndCsr & { id: string; from: EntryState | undefined })[] = [];
    for (const id of ids) {
      // Keys are made on this thread (see generateKeyAndCsrSync), a few at a time between turns
      // so that workloads are still answered while a large batch is prepared.
      if (requests.length > 0 && requests.length % KEYS_PER_TURN === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      requests.push({ id, from: this.#entries.get(id), ...generateKeyAndCsrSync() });
    }
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
      this.#notifyEntries(ids);
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
      if (entry === undefined || req.from === undefined || !sameMintForm(req.from, entry)) {
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
    this.#notifyEntries(ids);
    if (this.#queued.size > 0) {
      const pending = [...this.#queued];
      this.#queued.clear();
      for (const id of pending) if (this.#entries.has(id)) this.#queue(id);
    }
    this.#scheduleAfterMinting();
  }

  /** (Re)arms the afterMinting call for when minting has been quiet for a while. */
  #scheduleAfterMinting(): void {
    const callback = this.#o.afterMinting;
    if (callback === undefined || this.#stopped) return;
    this.#afterMintingTimer?.cancel();
    const now = this.#o.clock.nowMs();
    const delay = Math.max(AFTER_MINTING_QUIET_MS, this.#afterMintingAtMs + AFTER_MINTING_EVERY_MS - now);
    this.#afterMintingTimer = this.#o.clock.setTimer(() => {
      this.#afterMintingTimer = undefined;
      if (this.#queued.size > 0 || this.#inFlight.size > 0) return; // the next flush re-arms it
      this.#afterMintingAtMs = this.#o.clock.nowMs();
      callback();
    }, delay);
  }

  /** An SVID's deadline came: first its rotation (a successor is asked for), then its expiry. */
  #svidDue(state: SvidState): void {
    const id = state.from.id;
    if (this.#svids.get(id) !== state) return;
    if (!state.rotating && state.rotateAtMs < state.notAfterMs) {
      state.rotating = true;
      this.#o.logger.debug({ entryId: id, serial: state.serial }, 'rotating X509-SVID');
      this.#deadlines.schedule(state, state.notAfterMs);
      this.#queue(id);
      return;
    }
    this.#o.logger.warn({ entryId: id, serial: state.serial }, 'X509-SVID expired before a successor arrived');
    this.#dropSvid(id);
    this.#notifyEntries([id]);
  }

  #install(entry: EntryState, chain: readonly Buffer[], key: Secret<Buffer>, spkiDer: Buffer, nowMs: number): void {
    const leafDer = chain[0];
    if (leafDer === undefined) throw new SigilError('ERR_INTERNAL', 'empty SVID chain', { reason: 'empty-chain' });
    const leaf = ParsedCertificate.fromDer(leafDer);
    if (!Buffer.from(leaf.facts.spki).equals(spkiDer)) throw new SigilError('ERR_INTERNAL', 'SVID does not carry the requested key', { reason: 'key-mismatch' });
    const uris = leaf.facts.subjectAltName?.uris ?? [];
    if (uris.length !== 1 || uris[0] !== entry.spiffeId) throw new SigilError('ERR_INTERNAL', 'SVID names another SPIFFE ID', { reason: 'id-mismatch' });
    const id = entry.id;
    this.#dropSvid(id);
    const notBeforeMs = leaf.facts.notBefore.getTime();
    const notAfterMs = leaf.facts.notAfter.getTime();
    const rotateAtMs = nowMs + rotationDelayMs({ notBeforeMs, notAfterMs, receivedAtMs: nowMs }, nowMs, this.#o.random);
    const state: SvidState = {
      from: entry,
      svid: svidMaterial(entry, key.reveal(), chain),
      serial: leaf.serial,
      rotateAtMs,
      notAfterMs,
      rotating: false,
      dueMs: 0,
      queueIndex: -1,
    };
    this.#svids.set(id, state);
    this.#deadlines.schedule(state, Math.min(rotateAtMs, notAfterMs));
    this.#o.logger.info({ entryId: id, spiffeId: entry.spiffeId, serial: state.serial, notAfter: leaf.facts.notAfter.toISOString() }, 'X509-SVID cached');
  }

  // ---- JWT-SVIDs ----

  async fetchJwtSvids(selectors: readonly Selector[], audience: readonly string[], spiffeId: string | undefined, signal?: AbortSignal): Promise<IssuedJwtSvid[]> {
    if (!this.#synced) throw new SigilError('ERR_UNAVAILABLE', 'agent has not synced its entries yet', { reason: 'not-synced' });
    const now = this.#o.clock.nowMs();
    const seen = new Set<string>();
    const picked: EntryState[] = [];
    for (const id of this.#matchKeys(new Set(selectors.map(selectorKey)))) {
      const e = this.#entries.get(id) as EntryState;
      if (e.expiresAtMs !== 0 && e.expiresAtMs <= now) continue;
      if (spiffeId !== undefined && e.spiffeId !== spiffeId) continue;
      if (seen.has(e.spiffeId)) continue;
      seen.add(e.spiffeId);
      picked.push(e);
    }
    return Promise.all(picked.map((e) => this.#jwtFor(e, audience, signal)));
  }

  #jwtFor(e: EntryState, audience: readonly string[], signal?: AbortSignal): Promise<IssuedJwtSvid> {
    const key = audienceKey(e.id, audience);
    const cached = this.#jwt.get(key, this.#o.clock.nowMs());
    if (cached !== undefined) return Promise.resolve({ spiffeId: cached.spiffeId, token: cached.token, hint: e.hint });
    let pending = this.#jwtInFlight.get(key);
    if (pending === undefined) {
      pending = (async () => {
        try {
          const wire = await this.#o.issuer.newJwtSvid(e.id, audience, signal);
          const token = new Secret(wire.token);
          const issuedAtMs = Number(wire.issued_at) * 1000 || this.#o.clock.nowMs();
          this.#jwt.put(key, { token, spiffeId: wire.spiffe_id, issuedAtMs, expiresAtMs: Number(wire.expires_at) * 1000, receivedAtMs: this.#o.clock.nowMs() });
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
    for (const id of this.#matchKeys(new Set(selectors.map(selectorKey)))) {
      for (const td of this.#entries.get(id)?.federates ?? NONE) federates.add(td);
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
    this.#afterMintingTimer?.cancel();
    this.#syncWaitTimer?.cancel();
    for (const id of [...this.#svids.keys()]) this.#dropSvid(id);
    this.#deadlines.stop();
    this.#subscribers.clear();
  }
}

