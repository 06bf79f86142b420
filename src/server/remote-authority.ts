/**
 * Taint and revoke of another server's authority (several servers on one database): the
 * request is recorded in the owner's CA journal in the datastore, in one transaction under the
 * write lock with the admin call's audit record. Every server's bundle manager reads every
 * journal, so the taint (or the revoked authority leaving the bundle) reaches every server's
 * agents at once; the owner takes it in on its next look at its journal (CaManager.reconcile,
 * or its next save), deleting a revoked authority's key, even after a restart.
 */
import { SigilError } from '../common/errors.js';
import { decodeCaJournal } from '../ca/ca-journal.js';
import { editJournal } from '../ca/journal-adoption.js';
import type { AuditFor, Datastore } from '../datastore/datastore.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';

/** The server whose journal holds `kind` authority `id`, other than `self`; undefined when none does. */
export async function authorityOwner(ds: Datastore, trustDomain: TrustDomain, kind: 'x509' | 'jwt', id: string, self: string): Promise<string | undefined> {
  for (const j of await ds.listCaJournals(trustDomain.idString)) {
    if (j.serverId === self) continue;
    let journal;
    try {
      journal = decodeCaJournal(j.journal);
    } catch {
      continue; // the bundle manager logs unreadable journals
    }
    if ((kind === 'x509' ? journal.x509 : journal.jwt).some((r) => r.id === id)) return j.serverId;
  }
  return undefined;
}

/** Records `op` of server `owner`'s `kind` authority `id` in its journal, with `audit`; the CA manager's rules and errors. */
export async function remoteAuthorityStep(
  ds: Datastore,
  trustDomain: TrustDomain,
  owner: string,
  op: 'taint' | 'revoke',
  kind: 'x509' | 'jwt',
  id: string,
  audit: AuditFor<string> | undefined,
): Promise<void> {
  await ds.updateCaJournal(
    trustDomain.idString,
    owner,
    (bytes) => {
      const next = bytes === undefined ? undefined : editJournal(bytes, op, kind, id);
      if (next === undefined) throw new SigilError('ERR_NOT_FOUND', `no ${kind} authority ${JSON.stringify(id)}`, { reason: 'authority-not-found' });
      return next;
    },
    audit,
  );
}
