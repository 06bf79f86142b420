/**
 * The CA journal: everything the CA must remember across restarts except private keys
 * (key IDs, certificates, phases, times). Stored as opaque bytes through CaJournalStore,
 * which the server backs with the datastore's getCaJournal/setCaJournal
 * (src/server/ca-journal-store.ts).
 */
import { z } from 'zod';
import { SigilError } from '../common/errors.js';

/** Where the CA journal is kept. */
export interface CaJournalStore {
  /** The last saved journal, or undefined before the first save. */
  load(): Promise<Uint8Array | undefined>;
  /** Replaces the journal. */
  save(data: Uint8Array): Promise<void>;
  /** The journals of the other servers of the trust domain (several servers on one database); none when absent. */
  others?(): Promise<Uint8Array[]>;
  /**
   * Reads the stored journal and writes what `update` makes of it in one transaction under the
   * datastore's write lock (undefined: no write), so a change another server recorded in this
   * journal (a taint or revoke from its admin socket) is seen, never overwritten. Synchronous
   * `update`; it may run again when the transaction is retried.
   */
  update?(update: (stored: Uint8Array | undefined) => Uint8Array | undefined): Promise<boolean>;
}

/** Lifecycle phase of a CA or JWT signing key. */
export type AuthorityPhase = 'prepared' | 'active' | 'old';

const keyType = z.enum(['ec-p256', 'ec-p384', 'rsa-2048', 'rsa-4096']);
const phase = z.enum(['prepared', 'active', 'old']);
const base = {
  id: z.string().min(1),
  keyId: z.string().min(1),
  keyType,
  phase,
  notBefore: z.number().int(),
  notAfter: z.number().int(),
  tainted: z.boolean(),
  /** Upper bound of the expiry of everything this key signed (ms); 0 when nothing yet. */
  signedUntil: z.number().int(),
  /**
   * When the authority entered the trust bundle (ms): it signs nothing before this plus the
   * propagation margin. null while not yet published; absent in journals older than the field
   * (then notBefore counts).
   */
  publishedAt: z.number().int().nullable().optional(),
};

const x509Record = z.object({
  ...base,
  /** Sigil's CA certificate, DER base64. */
  cert: z.string(),
  /** Certificates that follow the CA certificate in SVID chains (upstream intermediates), DER base64. */
  intermediates: z.array(z.string()),
  /** Trust anchors this authority needs in the bundle, DER base64. */
  anchors: z.array(z.string()),
  /** SHA-256 hex of the upstream signing certificate, or null when self-signed. */
  upstream: z.string().nullable(),
});

const jwtRecord = z.object({
  ...base,
  /** SPKI DER base64, kept so the bundle can still publish the key if the key manager lost it. */
  publicKey: z.string(),
});

const journalSchema = z.object({
  version: z.literal(1),
  trustDomain: z.string(),
  x509: z.array(x509Record),
  jwt: z.array(jwtRecord),
  /**
   * Set by `sigil server remove` on another server (ms): the owner is gone for good. Its
   * authorities leave the bundle once what they signed has expired (signedUntil), then the
   * journal is deleted; the owner refuses to start on it.
   */
  removedAt: z.number().int().optional(),
});

/** One X.509 CA as journaled. */
export type X509AuthorityRecord = z.infer<typeof x509Record>;
/** One JWT signing key as journaled. */
export type JwtAuthorityRecord = z.infer<typeof jwtRecord>;
/** The whole journal. */
export type CaJournal = z.infer<typeof journalSchema>;

/** Parses journal bytes; throws ERR_FAILED_PRECONDITION (reason `bad-ca-journal`) when they are not a journal. */
export function decodeCaJournal(bytes: Uint8Array): CaJournal {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new SigilError('ERR_FAILED_PRECONDITION', 'CA journal is not valid JSON', { reason: 'bad-ca-journal', cause: err });
  }
  const parsed = journalSchema.safeParse(value);
  if (!parsed.success) {
    throw new SigilError('ERR_FAILED_PRECONDITION', 'CA journal has an unexpected shape', { reason: 'bad-ca-journal', cause: parsed.error });
  }
  return parsed.data;
}

/**
 * When every authority of a removed server's journal can leave the bundle (ms): the latest
 * signedUntil of those not yet expired (what they signed has expired by then), or now.
 */
export function drainedAt(journal: CaJournal): number {
  let at = 0;
  for (const r of [...journal.x509, ...journal.jwt]) at = Math.max(at, Math.min(r.signedUntil, r.notAfter));
  return at;
}

/** Serialises a journal. */
export function encodeCaJournal(journal: CaJournal): Uint8Array {
  return Buffer.from(JSON.stringify(journal), 'utf8');
}
