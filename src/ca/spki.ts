/** SubjectPublicKeyInfo helpers: DER export of a KeyObject and the RFC 5280 key identifier. */
import { createHash, type KeyObject } from 'node:crypto';
import { Tag, children, expectTag, readWhole } from './der.js';

/** The DER SubjectPublicKeyInfo of a public (or private) key. */
export function spkiOf(key: KeyObject): Buffer {
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
