/**
 * Registration entries that claim a reserved ID (src/spiffe/reserved-id.ts). The admin API
 * refuses them since issue 10, but a datastore written by an older version may still hold
 * some: they are reported at start, never handed to agents (authorized-entries.ts), never
 * signed (the CA refuses the ID), marked in `sigil entry list`, and can be deleted.
 */
import type { Logger } from '../common/logger.js';
import type { Datastore, RegistrationEntry } from '../datastore/datastore.js';
import { reservedIdReason, reservedIdTexts } from '../spiffe/reserved-id.js';
import { SpiffeId, type TrustDomain } from '../spiffe/spiffe-id.js';
import { listAllEntries } from './authorized-entries.js';

/** Why the entry can never be served (its SPIFFE ID is reserved), or undefined for an ordinary entry. */
export function entryRefusalReason(e: Pick<RegistrationEntry, 'spiffeId'>, trustDomain: TrustDomain): string | undefined {
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(e.spiffeId);
  } catch {
    return `${JSON.stringify(e.spiffeId.slice(0, 80))} is not a valid SPIFFE ID`;
  }
  return reservedIdReason(id, trustDomain);
}

/**
 * Logs every stored entry with a reserved SPIFFE ID as an error (entry ID, SPIFFE ID, the rule),
 * in entry ID order; returns how many. Only the candidates are read, through the datastore's
 * SPIFFE ID index (the exact reserved IDs and the reserved prefix, reservedIdTexts), so a
 * start with a million ordinary entries reads none of them. The rule still decides on each
 * candidate. Unlike a scan of every entry, this cannot meet a stored ID that does not parse;
 * none can exist: every datastore write has validated and normalised the ID (validation.ts).
 */
export async function reportReservedEntries(ds: Datastore, trustDomain: TrustDomain, logger: Logger): Promise<number> {
  const { exact, prefixes } = reservedIdTexts(trustDomain);
  const candidates = new Map<string, RegistrationEntry>();
  for (const spiffeId of exact) for (const e of await listAllEntries(ds, { spiffeId })) candidates.set(e.id, e);
  for (const prefix of prefixes) for (const e of await ds.listEntriesBySpiffeIdPrefix(prefix)) candidates.set(e.id, e);
  // entry ID order (ASCII, so byte order), the order the full scan logged them in
  const ordered = [...candidates.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  let found = 0;
  for (const e of ordered) {
    const reason = entryRefusalReason(e, trustDomain);
    if (reason === undefined) continue;
    found++;
    logger.error(
      { entryId: e.id, spiffeId: e.spiffeId, reason },
      'registration entry claims a reserved SPIFFE ID; it is never served or signed: delete it (sigil entry delete)',
    );
  }
  return found;
}
