/**
 * What a server takes in from its own stored CA journal that another server's admin socket
 * wrote there (several servers on one database, src/server/remote-authority.ts): an old
 * authority missing from the stored journal was revoked (the owner's own removals leave its
 * memory first), an old one tainted there was tainted. Pure: the CA manager applies the answer.
 * Also the edit itself, made by the other server in the owner's journal (editJournal).
 */
import { precondition } from './authority.js';
import { decodeCaJournal, encodeCaJournal, type CaJournal } from './ca-journal.js';

/** The facts of one authority in memory that adoption looks at. */
export interface HeldAuthority {
  readonly id: string;
  readonly phase: string;
  readonly tainted: boolean;
}

/** Authority IDs per kind to drop from memory and to mark tainted. */
export interface Adoption {
  readonly revoked: { readonly x509: string[]; readonly jwt: string[] };
  readonly tainted: { readonly x509: string[]; readonly jwt: string[] };
}

/** The removal time of the stored journal `bytes` (sigil server remove), if any. */
export function removedAtOf(bytes: Uint8Array | undefined): number | undefined {
  if (bytes === undefined) return undefined;
  try {
    return decodeCaJournal(bytes).removedAt;
  } catch {
    return undefined;
  }
}

/** True when `a` asks for nothing. */
export function isEmptyAdoption(a: Adoption): boolean {
  return a.revoked.x509.length + a.revoked.jwt.length + a.tainted.x509.length + a.tainted.jwt.length === 0;
}

/** Compares what memory holds with the stored journal `bytes` (nothing to adopt when absent or unreadable). */
export function adoptionFrom(bytes: Uint8Array | undefined, held: { readonly x509: readonly HeldAuthority[]; readonly jwt: readonly HeldAuthority[] }): Adoption {
  const out: Adoption = { revoked: { x509: [], jwt: [] }, tainted: { x509: [], jwt: [] } };
  if (bytes === undefined) return out;
  let j: CaJournal;
  try {
    j = decodeCaJournal(bytes);
  } catch {
    return out; // unreadable: the owner's next save replaces it with the journal in memory
  }
  for (const kind of ['x509', 'jwt'] as const) {
    const stored = new Map<string, { tainted: boolean }>((kind === 'x509' ? j.x509 : j.jwt).map((r) => [r.id, r]));
    for (const a of held[kind]) {
      if (a.phase !== 'old') continue;
      const r = stored.get(a.id);
      if (r === undefined) out.revoked[kind].push(a.id);
      else if (r.tainted && !a.tainted) out.tainted[kind].push(a.id);
    }
  }
  return out;
}

/**
 * Another server's taint or revoke of authority `id` in journal `bytes` (its owner's), with
 * the CA manager's own rules: only an old authority; taint once; revoke only a tainted one,
 * never an upstream-signed X.509 authority (the bundle trusts the upstream root, not it).
 * Returns the new journal, or undefined when `id` is not in it.
 */
export function editJournal(bytes: Uint8Array, op: 'taint' | 'revoke', kind: 'x509' | 'jwt', id: string): Uint8Array | undefined {
  const j = decodeCaJournal(bytes);
  const list: Array<CaJournal['x509'][number] | CaJournal['jwt'][number]> = kind === 'x509' ? j.x509 : j.jwt;
  const rec = list.find((r) => r.id === id);
  if (rec === undefined) return undefined;
  if (op === 'taint') {
    if (rec.phase !== 'old') throw precondition(`authority-${rec.phase}`, `only an old ${kind} authority can be tainted; ${id} is ${rec.phase}`);
    if (rec.tainted) throw precondition('already-tainted', `${kind} authority ${id} is already tainted`);
    rec.tainted = true;
    return encodeCaJournal(j);
  }
  if (rec.phase !== 'old') throw precondition(`authority-${rec.phase}`, `only an old, tainted ${kind} authority can be revoked; ${id} is ${rec.phase}`);
  if (!rec.tainted) throw precondition('authority-not-tainted', `${kind} authority ${id} must be tainted before it is revoked`);
  if ('upstream' in rec && rec.upstream !== null) {
    throw precondition('upstream-signed', `${kind} authority ${id} is signed by the upstream authority and cannot be revoked from the bundle`);
  }
  const next = kind === 'x509' ? { ...j, x509: j.x509.filter((r) => r.id !== id) } : { ...j, jwt: j.jwt.filter((r) => r.id !== id) };
  return encodeCaJournal(next);
}
