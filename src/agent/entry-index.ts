/**
 * The SVID cache's data model and selector matching: what it keeps of each registration entry,
 * the subscriptions of connected workloads, and the indexes by selector key that link each
 * entry to the subscribers whose selectors satisfy it. A batch touches only the changed
 * entries and the subscribers they concern, and a new subscriber is matched by counting its
 * selectors' postings, never by scanning every entry.
 */
import type { SigilError } from '../common/errors.js';
import { TrustDomain } from '../spiffe/spiffe-id.js';
import type { WorkloadUpdate } from './workload-api/identity-source.js';
import type { WireEntry } from './server-client.js';
import type { MintForm } from './svid-minter.js';

/**
 * What the cache keeps of an entry: only the fields it matches, mints and serves with (the
 * wire form carries more, and at 10k entries every field counts).
 */
export interface EntryState extends MintForm {
  readonly revision: string;
  /** `federates_with` as trust domain IDs; the shared empty array when none. */
  readonly federates: readonly string[];
  /** The entry's distinct selector keys (selectorKey form); empty never matches. */
  readonly keys: readonly string[];
  readonly expiresAtMs: number;
  /** The subscribers whose selectors satisfy this entry (its "active count" is the size); undefined while none. */
  subs: Set<Subscriber> | undefined;
  lastActiveMs: number;
}

/** A workload's subscription, as the index and the cache keep it. */
export interface Subscriber {
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

/**
 * Entry IDs in Workload API order: by SPIFFE ID, then entry ID (code-unit order, no locale),
 * so svids[0], the default identity of clients, is the same on every agent and every push.
 */
export function identityOrder(entries: ReadonlyMap<string, EntryState>, ids: string[]): string[] {
  const key = (id: string): string => entries.get(id)?.spiffeId ?? '';
  return ids.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    if (ka !== kb) return ka < kb ? -1 : 1;
    return a < b ? -1 : a > b ? 1 : 0;
  });
}

/** The subscriber's matched entry IDs in identity order (kept until they change). */
export function sortedMatches(sub: Subscriber, entries: ReadonlyMap<string, EntryState>): string[] {
  sub.sorted ??= identityOrder(entries, [...sub.matched]);
  return sub.sorted;
}

/** The subscriber's group: subscribers with the same matches share one state per notification pass. */
export function groupOf(sub: Subscriber, entries: ReadonlyMap<string, EntryState>): string {
  sub.group ??= sortedMatches(sub, entries).join(' ');
  return sub.group;
}

/** The shared empty list. */
export const NONE: readonly string[] = Object.freeze([]);

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

/** The cache's form of a wire entry. */
export function toEntryState(e: WireEntry, keys: readonly string[], expiresAtMs: number, subs: Set<Subscriber> | undefined, lastActiveMs: number): EntryState {
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

/** The cache's entries, indexed with its subscribers by selector key. */
export class EntryIndex {
  /** Every entry by ID, in sync order. */
  readonly entries = new Map<string, EntryState>();
  readonly #entriesByKey: IdsByKey = new Map();
  readonly #subsByKey = new Map<string, Set<Subscriber>>();

  /** Indexes a subscriber by its selector keys. */
  addSubscriber(sub: Subscriber): void {
    for (const k of sub.keys) {
      let subs = this.#subsByKey.get(k);
      if (subs === undefined) this.#subsByKey.set(k, (subs = new Set()));
      subs.add(sub);
    }
  }

  /** Takes a subscriber out of the selector index. */
  removeSubscriber(sub: Subscriber): void {
    for (const k of sub.keys) {
      const subs = this.#subsByKey.get(k);
      subs?.delete(sub);
      if (subs?.size === 0) this.#subsByKey.delete(k);
    }
  }

  /** Indexes an entry by its selector keys and links it to every subscriber that satisfies it. */
  link(state: EntryState, linkSubscribers: boolean): void {
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
    if (!linkSubscribers) return;
    for (const sub of candidates ?? []) {
      if (state.keys.every((k) => sub.keys.has(k))) this.#link(sub, state);
    }
  }

  /** Takes an entry out of the selector index and off every subscriber it was linked to. */
  unlink(state: EntryState, now: number, affected: Set<Subscriber>): void {
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
  matchKeys(keys: ReadonlySet<string>): string[] {
    const counts = new Map<string, number>();
    for (const k of keys) for (const id of idsUnder(this.#entriesByKey, k)) counts.set(id, (counts.get(id) ?? 0) + 1);
    const out: string[] = [];
    for (const [id, n] of counts) if (this.entries.get(id)?.keys.length === n) out.push(id);
    return identityOrder(this.entries, out);
  }

  /** Links a subscriber to every entry it satisfies; returns the entries that had no subscriber before. */
  matchSubscriber(sub: Subscriber, now: number): string[] {
    const newlyActive: string[] = [];
    for (const id of this.matchKeys(sub.keys)) {
      const e = this.entries.get(id) as EntryState;
      if (e.expiresAtMs !== 0 && e.expiresAtMs <= now) continue;
      if ((e.subs?.size ?? 0) === 0) newlyActive.push(id);
      this.#link(sub, e);
    }
    return newlyActive;
  }
}
