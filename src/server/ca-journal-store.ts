/**
 * The server's CaJournalStore: each server's CA journal kept in the datastore, keyed by trust
 * domain and server ID, with the other servers' journals readable (several servers on one
 * database publish one merged bundle).
 */
import { decodeCaJournal, type CaJournalStore } from '../ca/ca-journal.js';
import type { Logger } from '../common/logger.js';
import type { AuditFor, Datastore } from '../datastore/datastore.js';
import type { KeyManager } from '../plugin/key-manager.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';

/**
 * The CA journal of server `serverId` in `trustDomain` in `ds`. `auditFor`, when given,
 * supplies the audit record the save commits with (the admin call's, see journal-audit.ts).
 */
export function datastoreCaJournal(
  ds: Pick<Datastore, 'getCaJournal' | 'setCaJournal' | 'listCaJournals'> & Partial<Pick<Datastore, 'updateCaJournal'>>,
  trustDomain: TrustDomain,
  serverId: string,
  auditFor?: () => AuditFor<string> | undefined,
): CaJournalStore {
  const td = trustDomain.idString;
  return {
    load: () => ds.getCaJournal(td, serverId),
    save: (data: Uint8Array) => ds.setCaJournal(td, serverId, data, auditFor?.()),
    others: async () => (await ds.listCaJournals(td)).filter((j) => j.serverId !== serverId).map((j) => j.journal),
    ...(ds.updateCaJournal === undefined ? {} : { update: (fn: (stored: Uint8Array | undefined) => Uint8Array | undefined) => ds.updateCaJournal!(td, serverId, fn, auditFor?.()) }),
  };
}

/**
 * A journal written before servers had IDs (owner `''`) becomes this server's when this
 * server's key manager holds one of its keys; another server without those keys leaves it.
 */
export async function adoptLegacyCaJournal(ds: Datastore, trustDomain: TrustDomain, serverId: string, km: KeyManager, logger: Logger): Promise<void> {
  const td = trustDomain.idString;
  if ((await ds.getCaJournal(td, serverId)) !== undefined) return;
  const legacy = await ds.getCaJournal(td, '');
  if (legacy === undefined) return;
  const j = decodeCaJournal(legacy);
  let mine = false;
  for (const r of [...j.x509, ...j.jwt]) if ((await km.getKey(r.keyId)) !== undefined) mine = true;
  if (!mine) return;
  await ds.setCaJournal(td, serverId, legacy);
  await ds.deleteCaJournal(td, '');
  logger.info({ serverId }, 'CA journal written before servers had IDs adopted by this server');
}
