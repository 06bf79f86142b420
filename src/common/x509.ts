/**
 * The one wrapper around @peculiar/x509. Everything in Sigil that needs the library imports
 * it from here, so `reflect-metadata` loads first and the crypto provider is Node's native
 * `crypto.webcrypto` (the @peculiar/webcrypto polyfill signs ~17x slower). Hot paths (leaf
 * signing, CSR verification) use src/ca/der.ts instead: this library is for cold paths.
 */
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { SigilError } from './errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** Splits PEM text into the DER bodies of its blocks with the given label (e.g. `CERTIFICATE`). */
export function pemBlocks(pem: string, label: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of pem.matchAll(PEM_BLOCK)) {
    if (m[1] === label) out.push(Buffer.from((m[2] ?? '').replace(/\s+/g, ''), 'base64'));
  }
  return out;
}

/** Encodes DER bytes as one PEM block with 64-character lines. */
export function toPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Parses one DER certificate; throws ERR_INVALID_ARGUMENT (reason `bad-certificate`) on garbage. */
export function parseCertificate(der: Uint8Array): x509.X509Certificate {
  try {
    return new x509.X509Certificate(der);
  } catch (err) {
    throw new SigilError('ERR_INVALID_ARGUMENT', 'malformed X.509 certificate', { reason: 'bad-certificate', cause: err });
  }
}
