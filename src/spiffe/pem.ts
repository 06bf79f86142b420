/**
 * PEM encoding and decoding (RFC 7468), for svid.pem / key.pem / bundle.pem files and
 * operator-supplied bundles. Blocks of other labels are returned too, so callers pick.
 */

/** One decoded PEM block. */
export interface PemBlock {
  /** The label, e.g. `CERTIFICATE` or `PRIVATE KEY`. */
  readonly label: string;
  /** The decoded body. */
  readonly der: Uint8Array;
}

/** Raised on malformed PEM; callers turn it into their own coded error. */
export class PemError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PemError';
  }
}

const BLOCK_RE = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/** Decodes every PEM block in `text`, in order; throws PemError on a malformed block. */
export function decodePem(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(BLOCK_RE)) {
    const label = m[1]!;
    if (m[3] !== label) throw new PemError(`PEM block ${label} ends with ${m[3]!}`);
    const body = m[2]!.replace(/\s+/g, '');
    // Encapsulated headers (RFC 1421 "Proc-Type:") mean an encrypted legacy key: not supported.
    if (body.includes(':') || !BASE64_RE.test(body) || body.length % 4 !== 0) {
      throw new PemError(`PEM block ${label} has a malformed body`);
    }
    out.push({ label, der: new Uint8Array(Buffer.from(body, 'base64')) });
  }
  return out;
}

/** Decodes the blocks with the given label only. */
export function decodePemBlocks(text: string, label: string): Uint8Array[] {
  return decodePem(text)
    .filter((b) => b.label === label)
    .map((b) => b.der);
}

/** Encodes one DER body as a PEM block with 64-column lines. */
export function encodePem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += `${b64.slice(i, i + 64)}\n`;
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/** Encodes a list of certificates as concatenated CERTIFICATE blocks. */
export function encodeCertificatesPem(ders: readonly Uint8Array[]): string {
  return ders.map((d) => encodePem('CERTIFICATE', d)).join('');
}
