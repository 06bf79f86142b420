/**
 * Key pairs and PKCS#10 requests for the agent's own SVID and for workload SVIDs. Keys are
 * made in memory (never written anywhere by this module) and the request is built directly
 * in DER: an empty subject and no attributes, since the server decides every name itself.
 */
import { generateKeyPair, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { Secret } from '../common/secret.js';

/** A fresh EC P-256 key pair with its CSR. */
export interface KeyAndCsr {
  /** The private key as unencrypted PKCS#8 DER; wrapped so it is never logged. */
  readonly keyPkcs8Der: Secret<Buffer>;
  /** The public key as SubjectPublicKeyInfo DER (to match the issued certificate). */
  readonly spkiDer: Buffer;
  /** The PKCS#10 request, DER. */
  readonly csrDer: Buffer;
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

/** ecdsa-with-SHA256 (1.2.840.10045.4.3.2) with absent parameters, as RFC 5758 requires. */
const ECDSA_WITH_SHA256 = tlv(0x30, Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));

/** Builds a CSR for `privateKey` whose public half is `spkiDer`. */
export function buildCsr(privateKey: KeyObject, spkiDer: Buffer): Buffer {
  const info = tlv(
    0x30,
    tlv(0x02, Buffer.from([0x00])), // version 1
    tlv(0x30), // empty subject
    spkiDer,
    tlv(0xa0), // no attributes
  );
  const signature = sign('sha256', info, { key: privateKey, dsaEncoding: 'der' });
  return tlv(0x30, info, ECDSA_WITH_SHA256, tlv(0x03, Buffer.from([0x00]), signature));
}

/** Generates an EC P-256 key pair off the main thread and a CSR for it. */
export async function generateKeyAndCsr(): Promise<KeyAndCsr> {
  const { privateKey, publicKey } = await new Promise<{ privateKey: KeyObject; publicKey: KeyObject }>((resolve, reject) =>
    generateKeyPair('ec', { namedCurve: 'prime256v1' }, (err, pub, priv) => (err ? reject(err) : resolve({ publicKey: pub, privateKey: priv }))),
  );
  const spkiDer = publicKey.export({ type: 'spki', format: 'der' });
  return {
    keyPkcs8Der: new Secret(privateKey.export({ type: 'pkcs8', format: 'der' })),
    spkiDer,
    csrDer: buildCsr(privateKey, spkiDer),
  };
}

/**
 * Generates an EC P-256 key pair on the calling thread and a CSR for it (~0.1-0.2 ms). The
 * agent's SVID cache uses this one: key generation on libuv's thread pool leaves each pool
 * thread's malloc arena holding freed OpenSSL memory it never returns, which cost more RSS
 * than the cached SVIDs themselves; callers generating many keys should yield between a few.
 */
export function generateKeyAndCsrSync(): KeyAndCsr {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const spkiDer = publicKey.export({ type: 'spki', format: 'der' });
  return {
    keyPkcs8Der: new Secret(privateKey.export({ type: 'pkcs8', format: 'der' })),
    spkiDer,
    csrDer: buildCsr(privateKey, spkiDer),
  };
}
