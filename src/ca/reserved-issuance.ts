/**
 * The capabilities without which the CA signs no reserved ID (src/spiffe/reserved-id.ts).
 * A CaManager mints exactly one per kind, once, through `takeReservedIssuance()`: the
 * server's wiring takes them and hands the server one to the server SVID provider and the
 * agent one to attestation and renewal, so no other code path (the admin mint API, workload
 * issuance, anything added later) can hold one. The CA recognises only the objects it
 * minted itself, so a look-alike object grants nothing.
 */

/** What an issuance capability lets its holder have signed. */
export type ReservedIssuanceKind = 'server' | 'agent';

/** A right to have one CA sign X.509-SVIDs for one kind of reserved ID (never JWT-SVIDs). */
export interface ReservedIssuance {
  /** `server`: exactly the server's ID, with the server marker; `agent`: IDs under `/sigil/agent/`. */
  readonly kind: ReservedIssuanceKind;
}

/** Both capabilities of one CA. */
export interface ReservedIssuanceSet {
  readonly server: ReservedIssuance;
  readonly agent: ReservedIssuance;
}
