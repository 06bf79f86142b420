/**
 * The JSON forms of `--output json`: one shape per noun, whichever command prints it. A
 * command about one thing prints `{ "<noun>": {…} }`, about several `{ "<nouns>": […] }`.
 * Every time is RFC 3339 in UTC (null for never), every certificate serial lowercase hex
 * without leading zeros (serialForm). docs/cli.md lists the shapes.
 */
import { rfc3339, serialForm } from './output.js';

/** A time given as epoch seconds or a Date, in the one form of the JSON output. */
export function jsonTime(t: number | string | Date): string | null {
  return t instanceof Date ? t.toISOString() : rfc3339(t);
}

/** An X509-SVID. */
export function x509SvidView(s: { spiffeId: string; serial: string; expiresAt: number | string | Date; hint?: string }): Record<string, unknown> {
  return { spiffeId: s.spiffeId, serial: serialForm(s.serial), expiresAt: jsonTime(s.expiresAt), hint: s.hint ?? '' };
}

/** A JWT-SVID; `token` only where the command's job is to hand it out. */
export function jwtSvidView(s: { spiffeId: string; expiresAt: number | string | Date; hint?: string; token?: string }): Record<string, unknown> {
  return { spiffeId: s.spiffeId, expiresAt: jsonTime(s.expiresAt), hint: s.hint ?? '', ...(s.token === undefined ? {} : { token: s.token }) };
}

/** A JWK as a bundle document holds it. */
type Jwk = Record<string, unknown> & { use?: string };

/** A trust bundle: its trust domain, X.509 authorities as PEM, JWT keys as JWKs; the admin API adds sequence and times. */
export function bundleView(b: {
  trustDomain: string;
  x509Pem: string;
  jwtKeys: readonly Jwk[];
  sequence?: number | string;
  refreshHintSeconds?: number | string;
  updatedAt?: number | string;
}): Record<string, unknown> {
  return {
    trustDomain: b.trustDomain.replace(/^spiffe:\/\//, ''),
    x509Pem: b.x509Pem,
    jwtKeys: b.jwtKeys,
    ...(b.sequence === undefined ? {} : { sequence: Number(b.sequence) }),
    ...(b.refreshHintSeconds === undefined ? {} : { refreshHintSeconds: Number(b.refreshHintSeconds) }),
    ...(b.updatedAt === undefined ? {} : { updatedAt: jsonTime(b.updatedAt) }),
  };
}

/** The JWT keys (`use: jwt-svid`) of a SPIFFE bundle document's text. */
export function jwtKeysOf(documentText: string): Jwk[] {
  const doc = JSON.parse(documentText) as { keys?: Jwk[] };
  return (doc.keys ?? []).filter((k) => k.use === 'jwt-svid');
}
