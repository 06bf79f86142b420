/**
 * The server's own trust bundle as a SPIFFE bundle document (JWKS): X.509 authorities as
 * `use: x509-svid` keys with one certificate in `x5c` and no `kid`; JWT keys as
 * `use: jwt-svid` keys with `kid`; `spiffe_sequence` and `spiffe_refresh_hint`.
 */
import { createPublicKey, X509Certificate, type JsonWebKey, type KeyObject } from 'node:crypto';
import { SigilError } from '../common/errors.js';

/** The facts of a bundle document the server uses. */
export interface BundleFacts {
  readonly x509Authorities: Buffer[];
  readonly sequence: number;
  readonly refreshHintSeconds: number;
  readonly jwtKeyIds: string[];
}

/** Builds the document; keys are sorted so the same authorities give the same text. */
export function buildBundleDocument(options: {
  readonly x509Authorities: readonly Uint8Array[];
  readonly jwtAuthorities: readonly { readonly kid: string; readonly publicKey: KeyObject }[];
  readonly sequence: number;
  readonly refreshHintSeconds: number;
}): string {
  const keys: JsonWebKey[] = [];
  for (const der of options.x509Authorities) {
    const cert = new X509Certificate(Buffer.from(der));
    const jwk = cert.publicKey.export({ format: 'jwk' });
    keys.push({ use: 'x509-svid', ...jwk, x5c: [Buffer.from(der).toString('base64')] });
  }
  for (const a of [...options.jwtAuthorities].sort((x, y) => (x.kid < y.kid ? -1 : 1))) {
    keys.push({ use: 'jwt-svid', kid: a.kid, ...a.publicKey.export({ format: 'jwk' }) });
  }
  return JSON.stringify({ keys, spiffe_sequence: options.sequence, spiffe_refresh_hint: options.refreshHintSeconds });
}

/** Reads a SPIFFE bundle document; throws ERR_INVALID_BUNDLE on a malformed one. */
export function readBundleDocument(document: string | Uint8Array): BundleFacts {
  const text = typeof document === 'string' ? document : Buffer.from(document).toString('utf8');
  let doc: { keys?: unknown; spiffe_sequence?: unknown; spiffe_refresh_hint?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (err) {
    throw new SigilError('ERR_INVALID_BUNDLE', 'bundle document is not valid JSON', { reason: 'bundle-json', cause: err });
  }
  if (doc === null || typeof doc !== 'object' || !Array.isArray(doc.keys)) {
    throw new SigilError('ERR_INVALID_BUNDLE', 'bundle document has no keys array', { reason: 'bundle-keys' });
  }
  const x509Authorities: Buffer[] = [];
  const jwtKeyIds: string[] = [];
  for (const [i, key] of (doc.keys as unknown[]).entries()) {
    const k = key as { use?: unknown; x5c?: unknown; kid?: unknown };
    if (k === null || typeof k !== 'object') throw new SigilError('ERR_INVALID_BUNDLE', `bundle key ${i} is not an object`, { reason: 'bundle-key' });
    if (k.use === 'x509-svid') {
      if (!Array.isArray(k.x5c) || k.x5c.length !== 1 || typeof k.x5c[0] !== 'string') {
        throw new SigilError('ERR_INVALID_BUNDLE', `bundle key ${i} must hold exactly one x5c certificate`, { reason: 'bundle-x5c' });
      }
      const der = Buffer.from(k.x5c[0], 'base64');
      try {
        new X509Certificate(der);
      } catch (err) {
        throw new SigilError('ERR_INVALID_BUNDLE', `bundle key ${i} holds a malformed certificate`, { reason: 'bundle-x5c', cause: err });
      }
      x509Authorities.push(der);
    } else if (k.use === 'jwt-svid') {
      if (typeof k.kid !== 'string' || k.kid.length === 0) {
        throw new SigilError('ERR_INVALID_BUNDLE', `bundle key ${i} of use jwt-svid has no kid`, { reason: 'bundle-kid' });
      }
      try {
        createPublicKey({ key: key as JsonWebKey, format: 'jwk' });
      } catch (err) {
        throw new SigilError('ERR_INVALID_BUNDLE', `bundle key ${k.kid} is not a valid public key`, { reason: 'bundle-jwk', cause: err });
      }
      jwtKeyIds.push(k.kid);
    }
  }
  const sequence = typeof doc.spiffe_sequence === 'number' ? doc.spiffe_sequence : 0;
  const refreshHintSeconds = typeof doc.spiffe_refresh_hint === 'number' ? doc.spiffe_refresh_hint : 0;
  return { x509Authorities, sequence, refreshHintSeconds, jwtKeyIds };
}

/** Builds a bundle document holding only X.509 authorities (from PEM input, for `bundle set --format pem`). */
export function bundleDocumentFromCertificates(ders: readonly Uint8Array[], sequence = 1): string {
  return buildBundleDocument({ x509Authorities: ders, jwtAuthorities: [], sequence, refreshHintSeconds: 0 });
}
