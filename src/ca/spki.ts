/** SubjectPublicKeyInfo helpers: DER of a KeyObject and the RFC 5280 key identifier. */
import { createHash, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { NULL, Tag, bitString, bytesOf, children, contentOf, expectTag, oid, readWhole, sequence, unsignedInteger } from './der.js';

const EC_PUBLIC_KEY = oid('1.2.840.10045.2.1');
const CURVES: Record<string, { oid: Buffer; size: number }> = {
  'P-256': { oid: oid('1.2.840.10045.3.1.7'), size: 32 },
  'P-384': { oid: oid('1.3.132.0.34'), size: 48 },
  'P-521': { oid: oid('1.3.132.0.35'), size: 66 },
};
const RSA_OID = oid('1.2.840.113549.1.1.1');
const RSA_ALG = sequence(RSA_OID, NULL);
const ED25519_OID = oid('1.3.101.112');
const ED25519_ALG = sequence(ED25519_OID);

function coord(b64url: string | undefined, size: number): Buffer | undefined {
  if (b64url === undefined) return undefined;
  const b = Buffer.from(b64url, 'base64url');
  if (b.length > size) return undefined;
  return b.length === size ? b : Buffer.concat([Buffer.alloc(size - b.length), b]);
}

/** SPKI DER built from a public JWK (EC, RSA, Ed25519), or undefined for anything else. */
function spkiFromJwk(jwk: JsonWebKey): Buffer | undefined {
  if (jwk.kty === 'EC' && typeof jwk.crv === 'string') {
    const curve = CURVES[jwk.crv];
    if (curve === undefined) return undefined;
    const x = coord(jwk.x, curve.size);
    const y = coord(jwk.y, curve.size);
    if (x === undefined || y === undefined) return undefined;
    return sequence(sequence(EC_PUBLIC_KEY, curve.oid), bitString(Buffer.concat([Buffer.from([4]), x, y])));
  }
  if (jwk.kty === 'RSA' && typeof jwk.n === 'string' && typeof jwk.e === 'string') {
    const key = sequence(unsignedInteger(Buffer.from(jwk.n, 'base64url')), unsignedInteger(Buffer.from(jwk.e, 'base64url')));
    return sequence(RSA_ALG, bitString(key));
  }
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519' && typeof jwk.x === 'string') {
    return sequence(ED25519_ALG, bitString(Buffer.from(jwk.x, 'base64url')));
  }
  return undefined;
}

/**
 * The DER SubjectPublicKeyInfo of a public (or private) key. Built from the JWK export,
 * which costs a few microseconds, where OpenSSL 3's DER encoder costs ~100 µs (more than
 * the signature of the certificate it goes into). Falls back to the DER export.
 */
export function spkiOf(key: KeyObject): Buffer {
  const kind = key.asymmetricKeyType;
  if (kind === 'ec' || kind === 'rsa' || kind === 'ed25519') {
    const spki = spkiFromJwk(key.export({ format: 'jwk' }));
    if (spki !== undefined) return spki;
  }
  return key.export({ format: 'der', type: 'spki' });
}

/** RFC 5280 section 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's value (without the unused-bits octet). */
export function subjectKeyIdentifier(spki: Uint8Array): Buffer {
  const root = expectTag(readWhole(spki), Tag.sequence, 'SubjectPublicKeyInfo');
  const [alg, bits] = children(spki, root);
  expectTag(alg, Tag.sequence, 'AlgorithmIdentifier');
  const bs = expectTag(bits, Tag.bitString, 'subjectPublicKey');
  return createHash('sha1')
    .update(spki.subarray(bs.contentStart + 1, bs.end))
    .digest();
}

function stripZeros(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  return b.subarray(i);
}

/** A public JWK for an SPKI, when it is an uncompressed EC point, RSA or Ed25519 key; else undefined. */
function jwkFromSpki(spki: Uint8Array): JsonWebKey | undefined {
  const root = expectTag(readWhole(spki), Tag.sequence, 'SubjectPublicKeyInfo');
  const [alg, bits, extra] = children(spki, root);
  if (extra !== undefined) return undefined;
  const algParts = children(spki, expectTag(alg, Tag.sequence, 'AlgorithmIdentifier'));
  const bs = expectTag(bits, Tag.bitString, 'subjectPublicKey');
  if (spki[bs.contentStart] !== 0) return undefined;
  const key = Buffer.from(spki.buffer, spki.byteOffset + bs.contentStart + 1, bs.end - bs.contentStart - 1);
  const algOid = algParts[0] === undefined ? undefined : bytesOf(spki, algParts[0]);
  if (algOid === undefined) return undefined;
  if (algOid.equals(EC_PUBLIC_KEY) && algParts.length === 2) {
    const curveOid = bytesOf(spki, algParts[1] as (typeof algParts)[number]);
    for (const [crv, c] of Object.entries(CURVES)) {
      if (!c.oid.equals(curveOid)) continue;
      if (key.length !== 1 + 2 * c.size || key[0] !== 4) return undefined;
      return {
        kty: 'EC',
        crv,
        x: key.subarray(1, 1 + c.size).toString('base64url'),
        y: key.subarray(1 + c.size).toString('base64url'),
      };
    }
    return undefined;
  }
  if (algOid.equals(RSA_OID) && (algParts.length === 1 || (algParts.length === 2 && algParts[1]?.tag === Tag.null))) {
    const seq = expectTag(readWhole(key), Tag.sequence, 'RSAPublicKey');
    const [n, e, more] = children(key, seq);
    if (more !== undefined) return undefined;
    return {
      kty: 'RSA',
      n: stripZeros(contentOf(key, expectTag(n, Tag.integer, 'modulus'))).toString('base64url'),
      e: stripZeros(contentOf(key, expectTag(e, Tag.integer, 'publicExponent'))).toString('base64url'),
    };
  }
  if (algOid.equals(ED25519_OID) && algParts.length === 1 && key.length === 32) {
    return { kty: 'OKP', crv: 'Ed25519', x: key.toString('base64url') };
  }
  return undefined;
}

/**
 * A KeyObject for SPKI DER. Imports through JWK where it can: OpenSSL 3 decodes a JWK
 * faster than the same key as DER, and the CSR path imports one per request. Measured again
 * for issue 20 (Node 20, OpenSSL 3, P-256 CSRs, this DER walk and base64url included):
 * 71-76 µs through JWK, 96-106 µs from DER, 124-307 µs as a raw point through WebCrypto; the
 * key is imported once per CSR (checkSvidPublicKey reads the same KeyObject). The import is the
 * signing thread's largest cost after the signature, but DER would make it larger.
 * Throws what createPublicKey throws on a bad key.
 */
export function publicKeyFromSpki(spki: Uint8Array): KeyObject {
  const jwk = jwkFromSpki(spki);
  if (jwk !== undefined) return createPublicKey({ key: jwk, format: 'jwk' });
  return createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
}
