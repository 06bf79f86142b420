/**
 * `sigil server remove --server-id ID` (several servers on one database): marks another
 * server's CA journal removed, in one transaction under the write lock with the audit record.
 * From then on every server's bundle merge (bundle-manager.ts) leaves out each of its
 * authorities once what it signed has expired (its journaled signedUntil, raised before every
 * signature), and the first server to see all of them gone deletes the journal. The removed
 * server refuses to start on its journal; one still running halts once it reads the mark (or
 * finds its journal gone): it signs nothing, writes its journal no more and exits (ca-manager.ts,
 * server.ts `failure`). The server answering cannot remove itself.
 */
import { SigilError } from '../common/errors.js';
import { decodeCaJournal, drainedAt, encodeCaJournal } from '../ca/ca-journal.js';
import type { AuditFor, Datastore } from '../datastore/datastore.js';
import { SERVER_ID_PATTERN } from '../datastore/validation.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';

/** What a removal found. */
export interface ServerRemoval {
  readonly serverId: string;
  readonly removedAt: number;
  readonly authorities: number;
  /** When its last authority leaves the bundle (ms). */
  readonly drainedAt: number;
  readonly alreadyRemoved: boolean;
}

/** Removes server `serverId` of `trustDomain`; `self` is the server asked (refused). */
export async function removeServer(ds: Datastore, trustDomain: TrustDomain, serverId: string, self: string, nowMs: number, audit: AuditFor<string>): Promise<ServerRemoval> {
  if (typeof serverId !== 'string' || !SERVER_ID_PATTERN.test(serverId)) {
    throw new SigilError('ERR_INVALID_ARGUMENT', `server id ${JSON.stringify(String(serverId))} must be 1-64 of [a-z0-9._-] starting with a letter or digit`, { reason: 'invalid-server-id' });
  }
  if (serverId === self) {
    throw new SigilError('ERR_FAILED_PRECONDITION', `server ${serverId} is the server answering: remove it through another server's admin socket, after stopping it for good`, { reason: 'own-server' });
  }
  let found: ServerRemoval | undefined;
  await ds.updateCaJournal(
    trustDomain.idString,
    serverId,
    (bytes) => {
      if (bytes === undefined) throw new SigilError('ERR_NOT_FOUND', `no server ${serverId} in ${trustDomain.name} (sigil localauthority show lists the servers)`, { reason: 'server-not-found' });
      const j = decodeCaJournal(bytes);
      const removedAt = j.removedAt ?? nowMs;
      found = { serverId, removedAt, authorities: j.x509.length + j.jwt.length, drainedAt: Math.max(nowMs, drainedAt(j)), alreadyRemoved: j.removedAt !== undefined };
      return j.removedAt !== undefined ? undefined : encodeCaJournal({ ...j, removedAt });
    },
    audit,
  );
  if (found === undefined) throw new SigilError('ERR_INTERNAL', 'server removal found no journal', { reason: 'internal' });
  return found;
}
