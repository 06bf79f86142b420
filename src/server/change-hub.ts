/**
 * Tells open SyncEntries streams what changed. Entry changes come from one place, the
 * datastore's entry event log, whoever wrote them: in-process writers (the admin API) call
 * `notify('entries')` to have the log read at once instead of at the next poll. Each batch
 * names the changed entries with their state as read (undefined once deleted), so a stream
 * can work out whether it is touched without reading its whole set again. Bundle and agent
 * changes are told directly. Old events are pruned so the log stays small.
 *
 * The log is read a page at a time, each page told as its own batch, yielding to I/O between
 * pages: over a synchronous driver a long loop of reads is one unbroken chain of microtasks,
 * and a bulk insert of 1M entries once held every agent's sync behind 1M entry reads. Changed
 * entries are read only while some subscriber wants entry changes; a stream subscribing
 * later reads the whole set itself.
 */
import type { Clock } from '../common/clock.js';
import type { Datastore, RegistrationEntry } from '../datastore/datastore.js';
import type { Logger } from '../common/logger.js';
import { logRetry } from '../common/retry-log.js';

/** What changed. */
export type ChangeKind = 'entries' | 'bundles' | 'agents';

/** One changed entry: its state when read after the change, undefined when it no longer exists. */
export interface EntryChange {
  readonly id: string;
  readonly entry: RegistrationEntry | undefined;
}

/** A change told to subscribers. */
export type Change =
  | { readonly kind: 'entries'; readonly changes: readonly EntryChange[] }
  | { readonly kind: 'bundles' }
  /** An agent was attested again, banned, unbanned or evicted (`agentId` absent: any agent). */
  | { readonly kind: 'agents'; readonly agentId?: string };

/** A subscriber callback. */
export type ChangeListener = (change: Change) => void;

/**
 * A sync stream's subscription to entry changes, told only the changes that can touch it: those
 * of entries it holds, of entries whose parent it reaches, and of node aliases (which may match
 * any agent). While `everything` is on it is told every change: a stream turns it on while it
 * reads or changes its set and sets its interest again before turning it off, so no change
 * falls between what it read and what it registered.
 */
export interface EntryInterest {
  setEverything(on: boolean): void;
  /** The SPIFFE IDs whose children can touch the stream, and the IDs of the entries it holds. */
  setInterest(parents: Iterable<string>, entryIds: Iterable<string>): void;
  close(): void;
}

interface Routed {
  readonly listener: ChangeListener;
  everything: boolean;
  parents: Set<string>;
  entryIds: Set<string>;
}

function addTo(index: Map<string, Set<Routed>>, key: string, r: Routed): void {
  let set = index.get(key);
  if (set === undefined) {
    set = new Set();
    index.set(key, set);
  }
  set.add(r);
}

function removeFrom(index: Map<string, Set<Routed>>, key: string, r: Routed): void {
  const set = index.get(key);
  if (set === undefined) return;
  set.delete(r);
  if (set.size === 0) index.delete(key);
}

/** Events read per datastore call. */
const EVENT_PAGE = 1000;
/** Events older than this are pruned (far longer than any poll gap). */
const EVENT_RETENTION_MS = 60 * 60_000;
const PRUNE_EVERY_MS = 10 * 60_000;

const KINDS: readonly ChangeKind[] = ['entries', 'bundles', 'agents'];

/**
 * Fan-out of change notifications to sync streams. Listeners are kept by kind, and a stream
 * hears about its own agent only (`subscribeAgent`): with thousands of agents attesting, telling
 * every stream about every agent was quadratic.
 */
export class ChangeHub {
  /** Kind → the listeners that want it. */
  readonly #byKind = new Map<ChangeKind, Set<ChangeListener>>(KINDS.map((k) => [k, new Set()]));
  /** Agent ID → the listeners told about changes to that agent only. */
  readonly #byAgent = new Map<string, Set<ChangeListener>>();
  /** Routed entry subscriptions (`subscribeEntries`), and their indexes by parent and by entry ID. */
  readonly #routed = new Set<Routed>();
  readonly #everything = new Set<Routed>();
  readonly #byParent = new Map<string, Set<Routed>>();
  readonly #byEntry = new Map<string, Set<Routed>>();
  /** The parent of node-alias entries (the server's SPIFFE ID); undefined: every routed subscription is told everything. */
  readonly #aliasParent: string | undefined;

  constructor(options: { readonly nodeAliasParent?: string } = {}) {
    this.#aliasParent = options.nodeAliasParent;
  }
  #timer: NodeJS.Timeout | undefined;
  #lastEventId = 0;
  #stopped = false;
  #polling: { ds: Datastore; logger: Logger; clock: Clock | undefined } | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #lastPruneMs = 0;
  #unwatch: (() => void) | undefined;

  /** Registers a listener for every kind, or only for `kinds`; returns its unsubscribe function. */
  subscribe(listener: ChangeListener, kinds: readonly ChangeKind[] = KINDS): () => void {
    for (const k of kinds) this.#byKind.get(k)?.add(listener);
    return () => {
      for (const k of KINDS) this.#byKind.get(k)?.delete(listener);
    };
  }

  /** A routed subscription to entry changes (see EntryInterest); it starts told everything. */
  subscribeEntries(listener: ChangeListener): EntryInterest {
    const r: Routed = { listener, everything: true, parents: new Set(), entryIds: new Set() };
    this.#routed.add(r);
    this.#everything.add(r);
    const clear = (): void => {
      for (const p of r.parents) removeFrom(this.#byParent, p, r);
      for (const id of r.entryIds) removeFrom(this.#byEntry, id, r);
      r.parents = new Set();
      r.entryIds = new Set();
    };
    return {
      setEverything: (on) => {
        if (!this.#routed.has(r)) return;
        r.everything = on || this.#aliasParent === undefined;
        if (r.everything) this.#everything.add(r);
        else this.#everything.delete(r);
      },
      setInterest: (parents, entryIds) => {
        if (!this.#routed.has(r)) return;
        const nextParents = new Set(parents);
        const nextIds = new Set(entryIds);
        for (const p of r.parents) if (!nextParents.has(p)) removeFrom(this.#byParent, p, r);
        for (const p of nextParents) if (!r.parents.has(p)) addTo(this.#byParent, p, r);
        for (const id of r.entryIds) if (!nextIds.has(id)) removeFrom(this.#byEntry, id, r);
        for (const id of nextIds) if (!r.entryIds.has(id)) addTo(this.#byEntry, id, r);
        r.parents = nextParents;
        r.entryIds = nextIds;
      },
      close: () => {
        clear();
        this.#routed.delete(r);
        this.#everything.delete(r);
      },
    };
  }

  /** Registers a listener for changes to agent `agentId` (and to every agent at once); returns its unsubscribe function. */
  subscribeAgent(agentId: string, listener: ChangeListener): () => void {
    let set = this.#byAgent.get(agentId);
    if (set === undefined) {
      set = new Set();
      this.#byAgent.set(agentId, set);
    }
    set.add(listener);
    return () => {
      const s = this.#byAgent.get(agentId);
      if (s === undefined) return;
      s.delete(listener);
      if (s.size === 0) this.#byAgent.delete(agentId);
    };
  }

  /** Tells subscribers that `kind` changed; for entries, reads the event log now. */
  notify(kind: ChangeKind, agentId?: string): void {
    if (kind === 'entries') {
      void this.pollNow();
      return;
    }
    this.#emit(kind === 'bundles' ? { kind } : agentId === undefined ? { kind } : { kind, agentId });
  }

  #emit(change: Change): void {
    // copied first: a listener may unsubscribe (or subscribe) while it is told
    const told = [...(this.#byKind.get(change.kind) ?? [])];
    if (change.kind === 'agents') {
      if (change.agentId !== undefined) told.push(...(this.#byAgent.get(change.agentId) ?? []));
      else for (const set of this.#byAgent.values()) told.push(...set);
    }
    for (const l of told) l(change);
  }

  /** Tells entry changes: every `entries` listener all of them, every routed subscription those that can touch it. */
  #emitEntries(changes: readonly EntryChange[]): void {
    const general = [...(this.#byKind.get('entries') ?? [])];
    const told = new Map<Routed, EntryChange[]>();
    const add = (r: Routed, ch: EntryChange): void => {
      const list = told.get(r);
      if (list === undefined) told.set(r, [ch]);
      else if (list[list.length - 1] !== ch) list.push(ch);
    };
    for (const ch of changes) {
      for (const r of this.#everything) add(r, ch);
      for (const r of this.#byEntry.get(ch.id) ?? []) add(r, ch);
      const parent = ch.entry?.parentId;
      if (parent === undefined) continue;
      if (parent === this.#aliasParent) for (const r of this.#routed) add(r, ch);
      else for (const r of this.#byParent.get(parent) ?? []) add(r, ch);
    }
    for (const l of general) l({ kind: 'entries', changes });
    for (const [r, list] of told) if (this.#routed.has(r)) r.listener({ kind: 'entries', changes: list });
  }

  #wants(kind: ChangeKind): boolean {
    return (this.#byKind.get(kind)?.size ?? 0) > 0 || (kind === 'entries' && this.#routed.size > 0);
  }

  /** Reads new entry events and tells subscribers; concurrent calls are folded into one more read. */
  pollNow(): Promise<void> {
    if (this.#polling === undefined || this.#stopped) return Promise.resolve();
    if (this.#running !== undefined) {
      this.#again = true;
      return this.#running;
    }
    const { ds, logger } = this.#polling;
    this.#running = (async () => {
      do {
        this.#again = false;
        try {
          await this.#readEvents(ds);
        } catch (err) {
          // the same events are read again at the next poll
          logRetry(logger, err, {}, 'entry event poll failed');
        }
      } while (this.#again && !this.#stopped);
    })().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #readEvents(ds: Datastore): Promise<void> {
    while (!this.#stopped) {
      const events = await ds.listEntryEvents(this.#lastEventId, EVENT_PAGE);
      const last = events[events.length - 1];
      if (last === undefined) return;
      // Checked after the page is read: a stream subscribing from here on reads its set after these commits.
      if (this.#wants('entries')) {
        const ids = [...new Set(events.map((e) => e.entryId))];
        // one read for the page: deleted entries are absent from it
        const read = await ds.getEntries(ids);
        const changes: EntryChange[] = ids.map((id) => ({ id, entry: read.get(id) }));
        this.#lastEventId = last.eventId;
        this.#emitEntries(changes);
      } else {
        this.#lastEventId = last.eventId;
      }
      if (events.length < EVENT_PAGE) return;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Follows the event log from its newest event, every `intervalMs` (real time: it paces I/O), pruning old events. */
  async startPolling(ds: Datastore, logger: Logger, intervalMs = 1000, clock?: Clock): Promise<void> {
    this.#lastEventId = await ds.latestEntryEventId();
    this.#polling = { ds, logger, clock };
    // other servers' writes wake the poll at once (PostgreSQL); the poll stays the source of truth
    this.#unwatch = await ds.watchChanges((change) => {
      if (change === 'entries') void this.pollNow();
    });
    const tick = (): void => {
      if (this.#stopped) return;
      this.pollNow()
        .then(() => this.#prune())
        .finally(() => {
          if (!this.#stopped) this.#timer = setTimeout(tick, intervalMs).unref();
        });
    };
    this.#timer = setTimeout(tick, intervalMs).unref();
  }

  async #prune(): Promise<void> {
    const p = this.#polling;
    if (p?.clock === undefined) return;
    const now = p.clock.nowMs();
    if (now - this.#lastPruneMs < PRUNE_EVERY_MS) return;
    this.#lastPruneMs = now;
    try {
      await p.ds.pruneEntryEvents(now - EVENT_RETENTION_MS);
    } catch (err) {
      p.logger.warn({ err }, 'entry event pruning failed');
    }
  }

  /** Stops polling and drops every subscriber. */
  stop(): void {
    this.#stopped = true;
    this.#unwatch?.();
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    for (const set of this.#byKind.values()) set.clear();
    this.#byAgent.clear();
    this.#routed.clear();
    this.#everything.clear();
    this.#byParent.clear();
    this.#byEntry.clear();
  }
}
