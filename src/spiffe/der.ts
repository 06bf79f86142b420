/**
 * A minimal DER reader: just enough ASN.1 to read the certificate fields the SPIFFE rules
 * depend on (names, validity, basic constraints, key usage, SANs, EKU). Node's
 * X509Certificate does not expose extension criticality, key usage bits or pathLen, and a
 * general ASN.1 library costs far more per certificate than these few reads.
 */

/** One DER element: tag byte, where its content starts and ends in the buffer. */
export interface Tlv {
  /** The identifier octet (only low tag numbers occur in certificates). */
  readonly tag: number;
  /** Offset of the identifier octet. */
  readonly start: number;
  /** Offset of the first content octet. */
  readonly contentStart: number;
  /** Offset just past the last content octet. */
  readonly end: number;
}

/** Raised by the reader on malformed input; callers turn it into their own coded error. */
export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

/** Reads the element at `pos`, which must end at or before `limit`. */
export function readTlv(buf: Uint8Array, pos: number, limit: number = buf.length): Tlv {
  if (pos + 2 > limit) throw new DerError('truncated element');
  const tag = buf[pos]!;
  // High tag numbers never appear in the structures read here.
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag number');
  let len = buf[pos + 1]!;
  let p = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('unsupported length encoding');
    if (p + n > limit) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i]!;
    p += n;
  }
  const end = p + len;
  if (end > limit) throw new DerError('element longer than its container');
  return { tag, start: pos, contentStart: p, end };
}

/** The child elements of a constructed element. */
export function childrenOf(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  let pos = parent.contentStart;
  while (pos < parent.end) {
    const child = readTlv(buf, pos, parent.end);
    out.push(child);
    pos = child.end;
  }
  return out;
}

/** Reads an element and checks its tag. */
export function expectTlv(buf: Uint8Array, pos: number, limit: number, tag: number, what: string): Tlv {
  const tlv = readTlv(buf, pos, limit);
  if (tlv.tag !== tag) throw new DerError(`unexpected tag for ${what}`);
  return tlv;
}

/** The content octets of an element (a view, not a copy). */
export function contentOf(buf: Uint8Array, tlv: Tlv): Uint8Array {
  return buf.subarray(tlv.contentStart, tlv.end);
}

/**
 * The content octets of an OBJECT IDENTIFIER in dotted form, arcs of any size (UUID arcs under
 * 2.25 are 128-bit). Throws RangeError for a malformed OID (a non-digit arc, fewer than two
 * arcs, a first arc above 2, a second above 39 under 0 or 1).
 */
export function oidContent(dotted: string): Uint8Array {
  const arcs = dotted.split('.').map((s) => {
    if (!/^\d+$/.test(s)) throw new RangeError(`bad OID ${dotted}`);
    return BigInt(s);
  });
  const [a, b] = arcs;
  if (a === undefined || b === undefined || a > 2n || (a < 2n && b > 39n)) throw new RangeError(`bad OID ${dotted}`);
  const out: number[] = [];
  const push = (v: bigint): void => {
    const tmp = [Number(v & 0x7fn)];
    for (let x = v >> 7n; x > 0n; x >>= 7n) tmp.unshift(0x80 | Number(x & 0x7fn));
    out.push(...tmp);
  };
  push(a * 40n + b);
  for (const arc of arcs.slice(2)) push(arc);
  return Uint8Array.from(out);
}

/** An arc is summed as a number while below this (so `* 128 + 127` stays exact), then as a bigint. */
const NUMBER_ARC_LIMIT = 2 ** 46;

/**
 * Dotted form of an OBJECT IDENTIFIER's content octets, every arc exact whatever its size
 * (the UUID arcs under 2.25 are 128-bit, past Number's 2^53). Throws DerError when the
 * content is empty or truncated or an arc is not minimally encoded.
 */
export function oidToString(content: Uint8Array): string {
  if (content.length === 0) throw new DerError('empty object identifier');
  if ((content[content.length - 1]! & 0x80) !== 0) throw new DerError('truncated object identifier');
  const parts: (number | bigint)[] = [];
  let value = 0;
  let big: bigint | undefined;
  let arcStart = true;
  for (let i = 0; i < content.length; i++) {
    const b = content[i]!;
    if (arcStart && b === 0x80) throw new DerError('object identifier arc not minimally encoded');
    arcStart = (b & 0x80) === 0;
    if (big === undefined && value < NUMBER_ARC_LIMIT) value = value * 128 + (b & 0x7f);
    else big = (big ?? BigInt(value)) * 128n + BigInt(b & 0x7f);
    if (!arcStart) continue;
    if (parts.length > 0) parts.push(big ?? value);
    else if (big === undefined && value < 80) parts.push(Math.floor(value / 40), value % 40);
    // the first subidentifier is 40 * X + Y; from 80 on X is 2 and Y takes the rest
    else parts.push(2, big === undefined ? value - 80 : big - 80n);
    value = 0;
    big = undefined;
  }
  return parts.join('.');
}

/** Decodes a small non-negative INTEGER's content (pathLenConstraint and the like). */
export function smallUint(content: Uint8Array): number {
  if (content.length === 0 || content.length > 6) throw new DerError('integer out of range');
  if ((content[0]! & 0x80) !== 0) throw new DerError('negative integer');
  let v = 0;
  for (const b of content) v = v * 256 + b;
  return v;
}

/** Decodes a UTCTime (0x17) or GeneralizedTime (0x18) into a Date. */
export function timeOf(buf: Uint8Array, tlv: Tlv): Date {
  const s = Buffer.from(contentOf(buf, tlv)).toString('latin1');
  let m: RegExpExecArray | null;
  if (tlv.tag === 0x17) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (m === null) throw new DerError('bad UTCTime');
    // RFC 5280 4.1.2.5.1: two-digit years 50..99 are 19xx.
    const yy = Number(m[1]);
    return new Date(Date.UTC(yy >= 50 ? 1900 + yy : 2000 + yy, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  }
  if (tlv.tag === 0x18) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (m === null) throw new DerError('bad GeneralizedTime');
    return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  }
  throw new DerError('unexpected time tag');
}

/** Splits concatenated DER elements (as the Workload API carries chains and bundles). */
export function splitConcatenatedDer(buf: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const tlv = readTlv(buf, pos);
    if (tlv.tag !== 0x30) throw new DerError('element is not a SEQUENCE');
    out.push(buf.subarray(pos, tlv.end));
    pos = tlv.end;
  }
  return out;
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** Byte equality of two arrays. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}
