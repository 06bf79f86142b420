/**
 * When a CaManager's rotation has something to do, as pure arithmetic over authority records:
 * the next authority is prepared at 1/2 of the active one's life and activated at 5/6, but
 * never before it has been in the trust bundle for the propagation margin; an authority
 * leaves once it expired, or, when old, once everything it signed has. The manager
 * (ca-manager.ts) acts on these moments.
 */
import type { JwtSlot, X509Slot } from './authority.js';
import type { JwtAuthorityRecord, X509AuthorityRecord } from './ca-journal.js';

/** When an active authority's successor is prepared and when it is activated. */
export function milestones(rec: X509AuthorityRecord | JwtAuthorityRecord): { prepareAt: number; activateAt: number } {
  const life = rec.notAfter - rec.notBefore;
  return { prepareAt: rec.notBefore + Math.floor(life / 2), activateAt: rec.notBefore + Math.floor((life * 5) / 6) };
}

/** When the authority may first sign: the propagation margin after it entered the bundle (never while unpublished). */
export function signableAt(rec: { publishedAt?: number | null | undefined; notBefore: number }, marginMs: number): number {
  if (rec.publishedAt === null) return Number.POSITIVE_INFINITY;
  return (rec.publishedAt ?? rec.notBefore) + marginMs;
}

/** Why the authority leaves now: expired, or old with everything it signed expired (and no bound being raised); undefined while it stays. */
export function pruneReason(slot: X509Slot | JwtSlot, now: number): 'expired' | 'no longer needed' | undefined {
  if (slot.rec.notAfter <= now) return 'expired';
  if (slot.rec.phase === 'old' && slot.rec.signedUntil <= now && slot.pending === undefined) return 'no longer needed';
  return undefined;
}

/** The next moment the lifecycle of these slot lists (one per kind) has something to do; +Infinity when none. */
export function nextEvent(kinds: ReadonlyArray<ReadonlyArray<X509Slot | JwtSlot>>, marginMs: number): number {
  let next = Number.POSITIVE_INFINITY;
  for (const slots of kinds) {
    const active = slots.find((s) => s.rec.phase === 'active');
    const prepared = slots.find((s) => s.rec.phase === 'prepared');
    if (active !== undefined) {
      const m = milestones(active.rec);
      next = Math.min(next, prepared === undefined ? m.prepareAt : Math.max(m.activateAt, signableAt(prepared.rec, marginMs)));
    } else if (prepared !== undefined) {
      next = Math.min(next, signableAt(prepared.rec, marginMs));
    }
    for (const s of slots) {
      next = Math.min(next, s.rec.notAfter);
      if (s.rec.phase === 'old') next = Math.min(next, s.rec.signedUntil);
    }
  }
  return next;
}
