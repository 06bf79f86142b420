/**
 * Fast P-256 CSRs for the benchmarks: keys from node:crypto and a minimal PKCS#10 DER built
 * with the CA's own DER encoder, so preparing thousands of requests costs milliseconds, not
 * the seconds @peculiar/x509 would take. The pieces are kept for the raw-crypto floor.
 */
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { bitString, contextConstructed, oid, sequence, smallInteger } from '../../src/ca/der.js';

/** One request with what the floor needs to redo its crypto by hand. */
export interface BenchCsr {
  /** The DER CertificationRequest. */
  readonly der: Buffer;
  /** The DER SubjectPublicKeyInfo inside it. */
  readonly spki: Buffer;
  /** The signed CertificationRequestInfo. */
  readonly info: Buffer;
  /** The DER ECDSA signature over `info`. */
  readonly signature: Buffer;
  /** The request's private key (PKCS#8 DER). */
  readonly pkcs8: Buffer;
  readonly privateKey: KeyObject;
}

const ECDSA_SHA256 = sequence(oid('1.2.840.10045.4.3.2'));

/** Makes `n` CSRs, each with a fresh P-256 key, empty subject and no attributes. */
export function makeCsrs(n: number): BenchCsr[] {
  const out: BenchCsr[] = [];
  for (let i = 0; i < n; i++) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const spki = publicKey.export({ format: 'der', type: 'spki' });
    const info = sequence(smallInteger(0), sequence(), spki, contextConstructed(0));
    const signature = sign('sha256', info, { key: privateKey, dsaEncoding: 'der' });
    const der = sequence(info, ECDSA_SHA256, bitString(signature));
    out.push({ der, spki, info, signature, pkcs8: privateKey.export({ format: 'der', type: 'pkcs8' }), privateKey });
  }
  return out;
}
