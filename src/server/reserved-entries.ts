/**
 * Registration entries that claim a reserved ID (src/spiffe/reserved-id.ts). The admin API
 * refuses them since issue 10, but a datastore written by an older version may still hold
 * some: they are reported at start, never handed to agents (authorized-entries.ts), never
 * signed (the CA refuses the ID), marked in `sigil entry list`, and can be deleted.
 */
import type { Logger } from '../common/logger.js';
import type { Datastore, RegistrationEntry } from '../datastore/datastore.js';
import { reservedIdReason } from '../spiffe/reserved-id.js';
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

/** Logs every stored entry with a reserved SPIFFE ID as an error (entry ID, SPIFFE ID, the rule); returns how many. */
export async function reportReservedEntries(ds: Datastore, trustDomain: TrustDomain, logger: Logger): Promise<number> {
  let found = 0;
  for (const e of await listAllEntries(ds, {})) {
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
