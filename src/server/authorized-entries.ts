/**
 * The authorisation rule of the agent API: which registration entries an agent may
 * obtain SVIDs for. An agent is authorised for entries parented to its own SPIFFE ID;
 * for entries parented to the SPIFFE ID of a node-alias entry (an entry whose parent is
 * the server ID) whose selectors its node selectors satisfy; and, as SPIRE does, for
 * every descendant: entries parented to the SPIFFE ID of an entry already authorised.
 * Node-alias entries themselves are never handed to agents. Expired entries grant nothing,
 * and neither do entries claiming a reserved ID (one an older version let in): they are not
 * served and reach nothing, so such an entry cannot borrow another agent's entries.
 *
 * Two ways to ask: the whole set (a BFS down from the agent, for a full sync), and one
 * entry (a walk up its parent chain, for issuance), whose cost is the depth of the chain
 * rather than the number of entries the agent has.
 */
import type { Datastore, EntryFilter, RegistrationEntry } from '../datastore/datastore.js';
import { selectorKey, selectorsSatisfiedBy, type Selector } from '../spiffe/selector.js';
import { isReservedIdText } from '../spiffe/reserved-id.js';
import type { SpiffeId, TrustDomain } from '../spiffe/spiffe-id.js';

/** The server's own SPIFFE ID: `spiffe://<td>/sigil/server` (also the parent of node-alias entries). */
export function serverSpiffeId(trustDomain: TrustDomain): SpiffeId {
  return trustDomain.id('sigil', 'server');
}

const PAGE = 1000;
/** Parent IDs per listEntriesByParentIds call. */
const PARENTS_PER_CALL = 5000;
/** Longest parent chain followed when authorising one entry (cycles and absurd depths end here). */
const MAX_CHAIN_STEPS = 256;

/** Every entry matching the filter, page by page. */
export async function listAllEntries(ds: Datastore, filter: EntryFilter): Promise<RegistrationEntry[]> {
  const out: RegistrationEntry[] = [];
  let pageToken = '';
  do {
    const page = await ds.listEntries(filter, { pageSize: PAGE, pageToken });
    out.push(...page.items);
    pageToken = page.nextPageToken;
  } while (pageToken !== '');
  return out;
}

/** What the rule needs to know about an agent. */
export interface AgentFacts {
  readonly agentId: string;
  readonly nodeSelectors: readonly Selector[];
}

/** True when the entry is in force at `nowMs` (0 = never expires). */
export function entryLive(e: RegistrationEntry, nowMs: number): boolean {
  return e.entryExpiresAt === 0 || e.entryExpiresAt > nowMs;
}

/** True when the entry's SPIFFE ID is reserved (src/spiffe/reserved-id.ts): it grants nothing. */
export function entryClaimsReservedId(e: RegistrationEntry, trustDomain: TrustDomain): boolean {
  return isReservedIdText(e.spiffeId, trustDomain);
}

/** True when the entry grants anything: in force at `nowMs` and not claiming a reserved ID. */
export function entryUsable(e: RegistrationEntry, trustDomain: TrustDomain, nowMs: number): boolean {
  return entryLive(e, nowMs) && !entryClaimsReservedId(e, trustDomain);
}

/** The entries an agent is authorised for, and the node-alias entries that matched it. */
export interface AuthorizedSet {
  /** Authorised entries by entry ID. */
  readonly entries: Map<string, RegistrationEntry>;
  /** Matching node-alias entries by entry ID (never sent to the agent). */
  readonly aliases: Map<string, RegistrationEntry>;
}

/**
 * Every entry parented to one of `parentIds`. One datastore call per slice, each a probe of
 * the parent index per parent, so a level of the walk costs its parents and children only.
 */
export async function listChildren(ds: Datastore, parentIds: readonly string[]): Promise<RegistrationEntry[]> {
  const out: RegistrationEntry[] = [];
  // Sliced, with I/O let through between slices: over a synchronous driver a level of 100k
  // parents would otherwise hold the datastore and the event loop throughout.
  for (let i = 0; i < parentIds.length; i += PARENTS_PER_CALL) {
    if (i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    for (const e of await ds.listEntriesByParentIds(parentIds.slice(i, i + PARENTS_PER_CALL))) out.push(e);
  }
  return out;
}

/** The full authorised set of an agent. */
export async function authorizedSet(ds: Datastore, trustDomain: TrustDomain, agent: AgentFacts, nowMs: number): Promise<AuthorizedSet> {
  const server = serverSpiffeId(trustDomain).toString();
  const have = new Set(agent.nodeSelectors.map(selectorKey));
  const aliases = new Map<string, RegistrationEntry>();
  for (const a of await listAllEntries(ds, { parentId: server })) {
    if (entryUsable(a, trustDomain, nowMs) && selectorsSatisfiedBy(a.selectors, have)) aliases.set(a.id, a);
  }
  const visited = new Set<string>([server]);
  const roots = [agent.agentId, ...[...aliases.values()].map((a) => a.spiffeId)].filter((id) => {
    if (visited.has(id)) return false;
    visited.add(id);
    return true;
  });
  const entries = new Map<string, RegistrationEntry>();
  // breadth first: each level is the children of the SPIFFE IDs first reached one level up
  for (let level = roots; level.length > 0; ) {
    const next: string[] = [];
    for (const e of await listChildren(ds, level)) {
      if (!entryUsable(e, trustDomain, nowMs) || entries.has(e.id)) continue;
      entries.set(e.id, e);
      if (!visited.has(e.spiffeId)) {
        visited.add(e.spiffeId);
        next.push(e.spiffeId);
      }
    }
    level = next;
  }
  return { entries, aliases };
}

/** The entries the agent is authorised for, keyed by entry ID (expired entries excluded). */
export async function authorizedEntries(
  ds: Datastore,
  trustDomain: TrustDomain,
  agent: AgentFacts,
  nowMs: number,
): Promise<Map<string, RegistrationEntry>> {
  return (await authorizedSet(ds, trustDomain, agent, nowMs)).entries;
}

/**
 * Decides entries one at a time by walking up their parent chains, remembering what it
 * learnt about each SPIFFE ID, so a batch of CSRs costs the chains' depth, not the agent's
 * whole set.
 */
export class EntryAuthorizer {
  readonly #ds: Datastore;
  readonly #td: TrustDomain;
  readonly #server: string;
  readonly #agent: AgentFacts;
  readonly #have: Set<string>;
  readonly #nowMs: number;
  /** SPIFFE ID → whether entries parented to it are authorised. */
  readonly #reach = new Map<string, boolean>();

  constructor(ds: Datastore, trustDomain: TrustDomain, agent: AgentFacts, nowMs: number) {
    this.#ds = ds;
    this.#td = trustDomain;
    this.#server = serverSpiffeId(trustDomain).toString();
    this.#agent = agent;
    this.#have = new Set(agent.nodeSelectors.map(selectorKey));
    this.#nowMs = nowMs;
  }

  /** The entry when the agent is authorised for it, else undefined (unknown, expired, reserved, a node alias, or not the agent's). */
  async entry(entryId: string): Promise<RegistrationEntry | undefined> {
    return this.#decide(await this.#ds.getEntry(entryId));
  }

  /** `entry` for several IDs, read in one datastore call: the authorised ones by ID (the others are absent). */
  async entries(entryIds: readonly string[]): Promise<Map<string, RegistrationEntry>> {
    const out = new Map<string, RegistrationEntry>();
    for (const e of (await this.#ds.getEntries(entryIds)).values()) {
      if ((await this.#decide(e)) !== undefined) out.set(e.id, e);
    }
    return out;
  }

  async #decide(e: RegistrationEntry | undefined): Promise<RegistrationEntry | undefined> {
    if (e === undefined || !entryUsable(e, this.#td, this.#nowMs) || e.parentId === this.#server) return undefined;
    return (await this.#reachable(e.parentId, new Set())) ? e : undefined;
  }

  async #reachable(id: string, onPath: Set<string>): Promise<boolean> {
    if (id === this.#agent.agentId) return true;
    if (id === this.#server) return false;
    const known = this.#reach.get(id);
    if (known !== undefined) return known;
    // a cycle (or an absurd depth) grants nothing along this path; not memoised, since another path may
    if (onPath.has(id) || onPath.size >= MAX_CHAIN_STEPS) return false;
    onPath.add(id);
    let ok = false;
    for (const p of await listAllEntries(this.#ds, { spiffeId: id })) {
      if (!entryUsable(p, this.#td, this.#nowMs)) continue;
      if (p.parentId === this.#server) ok = selectorsSatisfiedBy(p.selectors, this.#have);
      else ok = await this.#reachable(p.parentId, onPath);
      if (ok) break;
    }
    onPath.delete(id);
    if (ok || onPath.size === 0) this.#reach.set(id, ok);
    return ok;
  }
}
