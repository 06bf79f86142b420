/** The server's CaJournalStore: the CA journal kept in the datastore, one per trust domain. */
import type { CaJournalStore } from '../ca/ca-journal.js';
import type { Datastore } from '../datastore/datastore.js';
import type { TrustDomain } from '../spiffe/spiffe-id.js';

/** The CA journal of `trustDomain` in `ds` (getCaJournal / setCaJournal). */
export function datastoreCaJournal(ds: Pick<Datastore, 'getCaJournal' | 'setCaJournal'>, trustDomain: TrustDomain): CaJournalStore {
  const id = trustDomain.idString;
  return {
    load: () => ds.getCaJournal(id),
    save: (data: Uint8Array) => ds.setCaJournal(id, data),
  };
}
