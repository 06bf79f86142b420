/**
 * When to mint an SVID's successor: at half of its lifetime, moved by up to ±10% so that a
 * fleet of agents started together does not renew in lock-step. The lifetime counts from
 * the later of notBefore and the moment the SVID arrived, since the CA backdates notBefore
 * and a clock that disagrees with the CA's must not make the agent renew in a loop.
 */

/** Fraction of the lifetime after which a successor is minted. */
export const ROTATION_FRACTION = 0.5;
/** Relative jitter applied to the rotation point (±). */
export const ROTATION_JITTER = 0.1;
/** Never rotate sooner than this after receiving an SVID. */
export const MIN_ROTATION_DELAY_MS = 500;

/** Facts about one SVID's validity, in ms since the epoch. */
export interface Validity {
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  /** When the agent received it (its own clock). */
  readonly receivedAtMs: number;
}

/** Milliseconds from `nowMs` until the successor should be minted (≥ MIN_ROTATION_DELAY_MS unless already expired). */
export function rotationDelayMs(validity: Validity, nowMs: number, random: () => number = Math.random): number {
  const start = Math.max(validity.notBeforeMs, Math.min(validity.receivedAtMs, validity.notAfterMs));
  const life = Math.max(0, validity.notAfterMs - start);
  const factor = ROTATION_FRACTION * (1 + ROTATION_JITTER * (2 * random() - 1));
  const at = start + life * factor;
  if (validity.notAfterMs <= nowMs) return 0;
  return Math.max(MIN_ROTATION_DELAY_MS, Math.round(at - nowMs));
}
