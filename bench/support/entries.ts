/** Registration entries for the server benchmarks, inserted in bulk through the datastore. */
import type { NewRegistrationEntry } from '../../src/datastore/datastore.js';
import { makeSelector } from '../../src/spiffe/selector.js';

/** An entry with server defaults for everything but ID, parent and selectors. */
export function benchEntry(spiffeId: string, parentId: string, selectors: readonly string[]): NewRegistrationEntry {
  return {
    spiffeId,
    parentId,
    selectors: selectors.map((s) => {
      const i = s.indexOf(':');
      return makeSelector(s.slice(0, i), s.slice(i + 1));
    }),
    x509SvidTtlSeconds: 0,
    jwtSvidTtlSeconds: 0,
    dnsNames: [],
    federatesWith: [],
    admin: false,
    downstream: false,
    hint: '',
    entryExpiresAt: 0,
  };
}
