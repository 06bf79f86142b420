/**
 * The authorisation rule of the agent API: which registration entries an agent may
 * obtain SVIDs for. An agent is authorised for entries parented to its own SPIFFE ID;
 * for entries parented to the SPIFFE ID of a node-alias entry (an entry whose parent is
 * the server ID) whose selectors its node selectors satisfy; and, as SPIRE does, for
 * every descendant: entries parented to the SPIFFE ID of an entry already authorised.
 * Node-alias entries themselves are never handed to agents.
 */
import type { Datastore, EntryFilter, RegistrationEntry } from '../datastore/datastore.js';
import { selectorKey, selectorsSatisfiedBy, type Selector } from '../spiffe/selector.js';
import type { SpiffeId, TrustDomain } from '../spiffe/spiffe-id.js';

/** The server's own SPIFFE ID: `spiffe://<td>/sigil/server` (also the parent of node-alias entries). */
export function serverSpiffeId(trustDomain: TrustDomain): SpiffeId {
  return trustDomain.id('sigil', 'server');
}

const PAGE = 1000;
/** Parent IDs per query, so one IN (...) list stays small. */
const PARENTS_PER_QUERY = 200;

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

/** The entries the agent is authorised for, keyed by entry ID (expired entries excluded). */
export async function authorizedEntries(
  ds: Datastore,
  trustDomain: TrustDomain,
  agent: AgentFacts,
  nowMs: number,
): Promise<Map<string, RegistrationEntry>> {
  const server = serverSpiffeId(trustDomain).toString();
  const live = (e: RegistrationEntry): boolean => e.entryExpiresAt === 0 || e.entryExpiresAt > nowMs;
  const have = new Set(agent.nodeSelectors.map(selectorKey));
  const aliases = (await listAllEntries(ds, { parentId: server })).filter(
    (e) => live(e) && selectorsSatisfiedBy(e.selectors, have),
  );
  const out = new Map<string, RegistrationEntry>();
  const visited = new Set<string>([server]);
  let frontier = [agent.agentId, ...aliases.map((a) => a.spiffeId)].filter((id) => {
    if (visited.has(id)) return false;
    visited.add(id);
    return true;
  });
  while (frontier.length > 0) {
    const next: string[] = [];
    for (let i = 0; i < frontier.length; i += PARENTS_PER_QUERY) {
      const entries = await listAllEntries(ds, { parentIds: frontier.slice(i, i + PARENTS_PER_QUERY) });
      for (const e of entries) {
        if (!live(e) || out.has(e.id)) continue;
        out.set(e.id, e);
        if (!visited.has(e.spiffeId)) {
          visited.add(e.spiffeId);
          next.push(e.spiffeId);
        }
      }
    }
    frontier = next;
  }
  return out;
}
