/**
 * The audit trail as the datastore keeps it: the audit record of every committed change
 * (entries, agents, join tokens, bundles, the CA journal) is written in the same transaction
 * as the change, so a change exists if and only if its record does. The server's shipper
 * (src/server/audit-shipper.ts) copies records, in sequence order, to the audit sink and
 * keeps its position in a named cursor here; shipped records are pruned after a retention.
 * The datastore never looks inside a record: it stores it as JSON and hands it back.
 */

/** One audit record: who, what, which entry, serial, expiry — by construction never a key, token or JWT. */
export interface AuditRecord {
  /** The caller: an agent's SPIFFE ID, `admin:uid:<uid>` (plain `admin` when the uid is unknown), or `anonymous`. */
  readonly who: string;
  /** Kernel credentials (SO_PEERCRED) of an admin caller's connection. */
  readonly caller?: { readonly uid: number; readonly gid: number; readonly pid: number };
  /** The action, e.g. `x509svid.issue`, `agent.attest`, `entry.create`. */
  readonly action: string;
  /** `ok`, `denied` or `error`. */
  readonly result: 'ok' | 'denied' | 'error';
  readonly entryId?: string;
  readonly spiffeId?: string;
  readonly serial?: string;
  /** Expiry, ISO 8601. */
  readonly expiresAt?: string;
  /** Sigil error code or reason of a refusal. */
  readonly reason?: string;
  /** Non-secret extra facts (attestor name, token ID, audience). */
  readonly detail?: Readonly<Record<string, string | number | boolean>>;
}

/**
 * The audit record of a change, made from what the change produced (the created entry, the
 * deleted node) inside the change's transaction; called only when the change is made.
 */
export type AuditFor<T> = (changed: T) => AuditRecord;

/** An audit record as stored: its place in the trail, its stable ID and its commit time. */
export interface StoredAuditRecord {
  /** Increasing in commit order; never reused within one database. */
  readonly seq: number;
  /** A random UUID given at insert: stays the same however often the record is shipped. */
  readonly auditId: string;
  /** Commit time, epoch ms. */
  readonly at: number;
  readonly record: AuditRecord;
}

/** The datastore's audit trail operations (part of Datastore). */
export interface AuditTrailStore {
  /** Records with seq > afterSeq, in seq order, at most `limit` (default 1000, at most 10000). */
  listAuditRecords(afterSeq: number, limit?: number): Promise<StoredAuditRecord[]>;
  /** The seq a named cursor has shipped through (0 when the cursor is new). */
  getAuditCursor(name: string): Promise<number>;
  /** Moves a named cursor forward to `seq`; a lower seq leaves it where it is. */
  setAuditCursor(name: string, seq: number): Promise<void>;
  /** Deletes records committed before `beforeMs` whose seq is at most `throughSeq` (shipped); returns how many. */
  pruneAuditRecords(beforeMs: number, throughSeq: number): Promise<number>;
}
