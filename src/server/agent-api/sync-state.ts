/**
 * What one SyncEntries stream has told its agent, and the authorisation graph behind it,
 * kept up to date change by change. A changed entry touches the stream only when its
 * parent is one of the SPIFFE IDs the agent reaches (itself, its node aliases, its
 * authorised entries) or the stream already holds it; additions grow the graph with a
 * query for the new subtree only. A removal that may strand descendants (a node alias, or
 * an entry other entries hang from) falls back to recomputing this agent's set, which is
 * exact and, being rare, cheap enough. Deltas carry only the entries that changed.
 */
import type { Clock } from '../../common/clock.js';
import type { Datastore, RegistrationEntry } from '../../datastore/datastore.js';
import { selectorKey, selectorsSatisfiedBy } from '../../spiffe/selector.js';
import type { TrustDomain } from '../../spiffe/spiffe-id.js';
import { authorizedSet, entryLive, entryUsable, listChildren, serverSpiffeId, type AgentFacts } from '../authorized-entries.js';
import type { EntryChange } from '../change-hub.js';

/** Entries to send and entry IDs to revoke. */
export interface SyncDelta {
  readonly upserts: RegistrationEntry[];
  readonly deleted: string[];
}

function bump(map: Map<string, number>, key: string, by: number): number {
  const n = (map.get(key) ?? 0) + by;
  if (n === 0) map.delete(key);
  else map.set(key, n);
  return n;
}

/** The authorised set of one agent as its stream knows it. */
export class AgentSyncState {
  readonly #ds: Datastore;
  readonly #server: string;
  readonly #td: TrustDomain;
  readonly #clock: Clock;
  #agent: AgentFacts;
  #have: Set<string>;
  #entries = new Map<string, RegistrationEntry>();
  #aliases = new Map<string, RegistrationEntry>();
  /** SPIFFE ID → how many sources make it a parent the agent reaches (itself, aliases, entries). */
  #reach = new Map<string, number>();
  /** Parent SPIFFE ID → how many held entries hang from it. */
  #children = new Map<string, number>();
  /** Entry ID → revision the agent was last sent. */
  readonly #sent = new Map<string, number>();
  readonly #dirty = new Set<string>();
  /** SPIFFE IDs that became reachable and whose subtrees are not loaded yet. */
  #frontier: string[] = [];
  #minExpiry: number | undefined;

  constructor(options: { ds: Datastore; trustDomain: TrustDomain; clock: Clock; agent: AgentFacts }) {
    this.#ds = options.ds;
    this.#td = options.trustDomain;
    this.#server = serverSpiffeId(options.trustDomain).toString();
    this.#clock = options.clock;
    this.#agent = options.agent;
    this.#have = new Set(options.agent.nodeSelectors.map(selectorKey));
  }

  /** The agent's node selectors differ from the ones this state was computed with. */
  selectorsChanged(agent: AgentFacts): boolean {
    const next = new Set(agent.nodeSelectors.map(selectorKey));
    return next.size !== this.#have.size || [...next].some((k) => !this.#have.has(k));
  }

  /** The agent this state belongs to. */
  get agentId(): string {
    return this.#agent.agentId;
  }

  /** The SPIFFE IDs whose children can join the set (the change hub routes by them). */
  reachedParents(): Iterable<string> {
    return this.#reach.keys();
  }

  /** The IDs of the entries and node aliases held (a change to one always concerns this state). */
  heldEntryIds(): string[] {
    return [...this.#entries.keys(), ...this.#aliases.keys()];
  }

  /** Number of entries held. */
  get size(): number {
    return this.#entries.size;
  }

  /** Recomputes the whole set (first sync, removals that may strand descendants, new node selectors, expiry). */
  async recompute(agent: AgentFacts = this.#agent): Promise<void> {
    this.#agent = agent;
    this.#have = new Set(agent.nodeSelectors.map(selectorKey));
    const set = await authorizedSet(this.#ds, this.#td, agent, this.#clock.nowMs());
    for (const id of this.#entries.keys()) this.#dirty.add(id);
    for (const id of set.entries.keys()) this.#dirty.add(id);
    this.#entries = new Map();
    this.#aliases = new Map();
    this.#reach = new Map([[agent.agentId, 1]]);
    this.#children = new Map();
    this.#frontier = [];
    this.#minExpiry = undefined;
    for (const a of set.aliases.values()) this.#addAlias(a);
    for (const e of set.entries.values()) this.#addEntry(e);
    this.#frontier = [];
  }

  /**
   * Applies changed entries (their state when read, undefined once deleted); returns true
   * when a removal may have stranded descendants and the caller must `recompute()`.
   */
  apply(changes: Iterable<EntryChange>): boolean {
    const now = this.#clock.nowMs();
    let stranded = false;
    for (const { id, entry: cur } of changes) {
      const live = cur !== undefined && entryUsable(cur, this.#td, now);
      const isAlias = live && cur.parentId === this.#server;
      const oldAlias = this.#aliases.get(id);
      if (oldAlias !== undefined) {
        if (isAlias && cur.spiffeId === oldAlias.spiffeId && selectorsSatisfiedBy(cur.selectors, this.#have)) {
          this.#aliases.set(id, cur);
          this.#noteExpiry(cur);
          continue;
        }
        this.#aliases.delete(id);
        if (this.#release(oldAlias.spiffeId)) stranded = true;
      }
      const old = this.#entries.get(id);
      if (old !== undefined) {
        if (live && !isAlias && cur.parentId === old.parentId && cur.spiffeId === old.spiffeId) {
          // an older read than what we hold (a recompute overtook the event): keep ours
          if (cur.revision > old.revision) {
            this.#entries.set(id, cur);
            this.#noteExpiry(cur);
            this.#dirty.add(id);
          }
          continue;
        }
        this.#removeEntry(old);
        if (this.#release(old.spiffeId)) stranded = true;
      }
      if (!live) continue;
      if (isAlias) {
        if (selectorsSatisfiedBy(cur.selectors, this.#have)) this.#addAlias(cur);
      } else if (this.#reach.has(cur.parentId)) {
        this.#addEntry(cur);
      }
    }
    return stranded;
  }

  /** Loads the subtrees of SPIFFE IDs that became reachable since the last call, level by level. */
  async expand(): Promise<void> {
    const now = this.#clock.nowMs();
    while (this.#frontier.length > 0) {
      const level = this.#frontier;
      this.#frontier = [];
      for (const e of await listChildren(this.#ds, level)) {
        // adding holds the entry's SPIFFE ID, which queues the next level when it is new
        if (entryUsable(e, this.#td, now) && !this.#entries.has(e.id) && this.#reach.has(e.parentId)) this.#addEntry(e);
      }
    }
  }

  /** Treats entries and aliases whose expiry has passed as removed; true when the caller must `recompute()`. */
  expire(): boolean {
    const now = this.#clock.nowMs();
    const gone: EntryChange[] = [];
    let min: number | undefined;
    for (const [id, e] of [...this.#entries, ...this.#aliases]) {
      if (!entryLive(e, now)) gone.push({ id, entry: undefined });
      else if (e.entryExpiresAt > 0 && (min === undefined || e.entryExpiresAt < min)) min = e.entryExpiresAt;
    }
    this.#minExpiry = min;
    return this.apply(gone);
  }

  /** The earliest expiry among held entries and aliases (epoch ms), if any; may be early after removals, never late. */
  nextExpiry(): number | undefined {
    return this.#minExpiry;
  }

  /** What changed for the agent since the last call, recorded as sent. */
  takeDelta(): SyncDelta {
    const upserts: RegistrationEntry[] = [];
    const deleted: string[] = [];
    for (const id of this.#dirty) {
      const cur = this.#entries.get(id);
      const sent = this.#sent.get(id);
      if (cur !== undefined) {
        if (sent !== cur.revision) {
          upserts.push(cur);
          this.#sent.set(id, cur.revision);
        }
      } else if (sent !== undefined) {
        deleted.push(id);
        this.#sent.delete(id);
      }
    }
    this.#dirty.clear();
    return { upserts, deleted };
  }

  #hold(spiffeId: string): void {
    if (bump(this.#reach, spiffeId, 1) === 1 && spiffeId !== this.#server) this.#frontier.push(spiffeId);
  }

  /**
   * Drops one source of `spiffeId`; true when held entries hang from it. The count alone
   * cannot tell: the remaining sources may sit below those very entries (a cycle), so any
   * removal above held entries is settled by a recompute. Leaves, the common case, never are.
   */
  #release(spiffeId: string): boolean {
    bump(this.#reach, spiffeId, -1);
    return this.#children.has(spiffeId);
  }

  #noteExpiry(e: RegistrationEntry): void {
    if (e.entryExpiresAt > 0 && (this.#minExpiry === undefined || e.entryExpiresAt < this.#minExpiry)) this.#minExpiry = e.entryExpiresAt;
  }

  #addAlias(a: RegistrationEntry): void {
    this.#aliases.set(a.id, a);
    this.#noteExpiry(a);
    this.#hold(a.spiffeId);
  }

  #addEntry(e: RegistrationEntry): void {
    this.#entries.set(e.id, e);
    this.#noteExpiry(e);
    this.#dirty.add(e.id);
    bump(this.#children, e.parentId, 1);
    this.#hold(e.spiffeId);
  }

  #removeEntry(e: RegistrationEntry): void {
    this.#entries.delete(e.id);
    this.#dirty.add(e.id);
    bump(this.#children, e.parentId, -1);
  }
}
