/** The server's CaJournalStore: the CA journal kept in the datastore, one per trust domain. */
import type { CaJournalStore } from '../ca/ca-journal.js';
import type { AuditFor, Datastore } from '../datastore/datastore.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';

/**
 * The CA journal of `trustDomain` in `ds` (getCaJournal / setCaJournal). `auditFor`, when
 * given, supplies the audit record the save commits with (the admin call's, see journal-audit.ts).
 */
export function datastoreCaJournal(
  ds: Pick<Datastore, 'getCaJournal' | 'setCaJournal'>,
  trustDomain: TrustDomain,
  auditFor?: () => AuditFor<string> | undefined,
): CaJournalStore {
  const id = trustDomain.idString;
  return {
    load: () => ds.getCaJournal(id),
    save: (data: Uint8Array) => ds.setCaJournal(id, data, auditFor?.()),
  };
}
