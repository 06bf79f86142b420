/**
 * A small DER encoder and reader: just what X.509 leaves, CA certificates and CSRs need.
 * The hot path builds leaf certificates from these pieces instead of a general ASN.1
 * library, whose object model costs ~100x the signature itself.
 */
import { SigilError } from '../common/errors.js';
import { DerError, oidContent, oidToString } from '../spiffe/der.js';

/** Universal and context tags used by Sigil. */
export const Tag = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** The DER length octets for a content length. */
export function encodeLength(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`bad DER length ${n}`);
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** Length of the header (tag + length octets) for a content length. */
export function headerLength(n: number): number {
  if (n < 0x80) return 2;
  let k = 0;
  for (let v = n; v > 0; v = Math.floor(v / 256)) k++;
  return 2 + k;
}

/** One TLV with a single-byte tag whose content is the concatenation of `parts`. */
export function tlv(tag: number, ...parts: Uint8Array[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const hl = headerLength(len);
  const out = Buffer.allocUnsafe(hl + len);
  out[0] = tag;
  writeLength(out, 1, len);
  let off = hl;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function writeLength(out: Buffer, at: number, n: number): void {
  if (n < 0x80) {
    out[at] = n;
    return;
  }
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  out[at] = 0x80 | bytes.length;
  for (let i = 0; i < bytes.length; i++) out[at + 1 + i] = bytes[i] as number;
}

/** SEQUENCE of the given encoded elements. */
export function sequence(...parts: Uint8Array[]): Buffer {
  return tlv(Tag.sequence, ...parts);
}

/** SET of the given encoded elements (callers pass them already in DER order). */
export function set(...parts: Uint8Array[]): Buffer {
  return tlv(Tag.set, ...parts);
}

/** INTEGER for a non-negative magnitude given as big-endian bytes (leading zeros are dropped, a 0x00 is added when the top bit is set). */
export function unsignedInteger(magnitude: Uint8Array): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  if (m.length === 0) return Buffer.from([Tag.integer, 1, 0]);
  if ((m[0] as number) & 0x80) return tlv(Tag.integer, Buffer.from([0]), m);
  return tlv(Tag.integer, m);
}

/** INTEGER for a small non-negative number. */
export function smallInteger(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`bad DER integer ${n}`);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return unsignedInteger(Buffer.from(bytes.length === 0 ? [0] : bytes));
}

/** OBJECT IDENTIFIER from dotted form; arcs of any size (UUID arcs under 2.25 are 128-bit). Throws RangeError for a malformed OID. */
export function oid(dotted: string): Buffer {
  return tlv(Tag.oid, oidContent(dotted));
}

/** Dotted form of an OBJECT IDENTIFIER's content octets, arcs of any size exact (src/spiffe/der.ts reads them). */
export function decodeOid(content: Uint8Array): string {
  try {
    return oidToString(content);
  } catch (err) {
    if (err instanceof DerError) throw derError(err.message);
    throw err;
  }
}

/** BOOLEAN (DER: TRUE is 0xff). */
export function boolean(value: boolean): Buffer {
  return Buffer.from([Tag.boolean, 1, value ? 0xff : 0]);
}

/** NULL. */
export const NULL = Buffer.from([Tag.null, 0]);

/** OCTET STRING. */
export function octetString(...parts: Uint8Array[]): Buffer {
  return tlv(Tag.octetString, ...parts);
}

/** BIT STRING with the given number of unused bits in the last octet. */
export function bitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  return tlv(Tag.bitString, Buffer.from([unusedBits]), bytes);
}

/** UTF8String. */
export function utf8String(text: string): Buffer {
  return tlv(Tag.utf8String, Buffer.from(text, 'utf8'));
}

/** PrintableString; throws on characters outside its alphabet. */
export function printableString(text: string): Buffer {
  if (!/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(text)) throw new RangeError('not a PrintableString');
  return tlv(Tag.printableString, Buffer.from(text, 'latin1'));
}

/** IA5String (7-bit ASCII); throws on anything else. */
export function ia5String(text: string): Buffer {
  // eslint-disable-next-line no-control-regex
  if (!/^[\x00-\x7f]*$/.test(text)) throw new RangeError('not an IA5String');
  return tlv(Tag.ia5String, Buffer.from(text, 'latin1'));
}

/** Context-specific constructed tag `[n]` (EXPLICIT wrapping, or IMPLICIT of a constructed type). */
export function contextConstructed(n: number, ...parts: Uint8Array[]): Buffer {
  return tlv(0xa0 | n, ...parts);
}

/** Context-specific primitive tag `[n]` (IMPLICIT of a primitive type such as a GeneralName's IA5String). */
export function contextPrimitive(n: number, content: Uint8Array): Buffer {
  return tlv(0x80 | n, content);
}

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/**
 * X.509 Time for a moment (whole seconds, UTC): UTCTime through 2049, GeneralizedTime from
 * 2050 on, as RFC 5280 section 4.1.2.5 requires.
 */
export function x509Time(ms: number): Buffer {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  const y = d.getUTCFullYear();
  const rest = two(d.getUTCMonth() + 1) + two(d.getUTCDate()) + two(d.getUTCHours()) + two(d.getUTCMinutes()) + two(d.getUTCSeconds()) + 'Z';
  if (y >= 1950 && y < 2050) return tlv(Tag.utcTime, Buffer.from(two(y % 100) + rest, 'latin1'));
  if (y < 0 || y > 9999) throw new RangeError(`year ${y} cannot be encoded`);
  return tlv(Tag.generalizedTime, Buffer.from(String(y).padStart(4, '0') + rest, 'latin1'));
}

/** Parses a UTCTime or GeneralizedTime node's content to milliseconds since the epoch. */
export function decodeTime(tag: number, content: Uint8Array): number {
  const s = Buffer.from(content).toString('latin1');
  let m: RegExpExecArray | null;
  let year: number;
  if (tag === Tag.utcTime && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s)) !== null) {
    const yy = Number(m[1]);
    year = yy < 50 ? 2000 + yy : 1900 + yy;
  } else if (tag === Tag.generalizedTime && (m = /^(\d\d\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s)) !== null) {
    year = Number(m[1]);
  } else {
    throw derError('bad time');
  }
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

function derError(what: string): SigilError {
  return new SigilError('ERR_INVALID_ARGUMENT', `malformed DER: ${what}`, { reason: 'bad-der' });
}

/** A TLV located in a buffer: `start` is the tag octet, content is `[contentStart, end)`. */
export interface DerNode {
  readonly tag: number;
  readonly start: number;
  readonly contentStart: number;
  readonly end: number;
}

/** Reads the TLV at `offset`, strictly (definite, minimal lengths; low tag numbers only; within `limit`). */
export function readNode(buf: Uint8Array, offset: number, limit: number = buf.length): DerNode {
  if (offset + 2 > limit) throw derError('truncated header');
  const tag = buf[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw derError('high tag number');
  const first = buf[offset + 1] as number;
  let len: number;
  let contentStart: number;
  if (first < 0x80) {
    len = first;
    contentStart = offset + 2;
  } else {
    const k = first & 0x7f;
    if (k === 0) throw derError('indefinite length');
    if (k > 4) throw derError('length too large');
    if (offset + 2 + k > limit) throw derError('truncated length');
    len = 0;
    for (let i = 0; i < k; i++) len = len * 256 + (buf[offset + 2 + i] as number);
    if (len < 0x80 || (buf[offset + 2] as number) === 0) throw derError('non-minimal length');
    contentStart = offset + 2 + k;
  }
  const end = contentStart + len;
  if (end > limit) throw derError('content past end');
  return { tag, start: offset, contentStart, end };
}

/** Reads a TLV that must span the whole buffer. */
export function readWhole(buf: Uint8Array): DerNode {
  const node = readNode(buf, 0);
  if (node.end !== buf.length) throw derError('trailing bytes');
  return node;
}

/** The child TLVs of a constructed node. */
export function children(buf: Uint8Array, node: DerNode): DerNode[] {
  const out: DerNode[] = [];
  for (let off = node.contentStart; off < node.end; ) {
    const c = readNode(buf, off, node.end);
    out.push(c);
    off = c.end;
  }
  return out;
}

/** The node's content octets (a view, not a copy). */
export function contentOf(buf: Uint8Array, node: DerNode): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + node.contentStart, node.end - node.contentStart);
}

/** The node's whole encoding (a view, not a copy). */
export function bytesOf(buf: Uint8Array, node: DerNode): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + node.start, node.end - node.start);
}

/** Throws ERR_INVALID_ARGUMENT (reason `bad-der`) unless the node has the expected tag. */
export function expectTag(node: DerNode | undefined, tag: number, what: string): DerNode {
  if (node === undefined || node.tag !== tag) throw derError(`expected ${what}`);
  return node;
}
