/**
 * The X.509-SVID leaf as a precomputed template per CA: issuer, AKI, algorithm IDs and the
 * constant extensions are encoded once; each call splices serial, validity, subject, the
 * caller's SubjectPublicKeyInfo bytes (never re-encoded), SKI and SAN into a TBSCertificate.
 * The profile follows the X509-SVID standard (see the extension comments below).
 */
import { randomBytes } from 'node:crypto';
import { SigilError } from '../common/errors.js';
import type { SignatureScheme } from './algorithms.js';
import {
  bitString,
  boolean,
  contextConstructed,
  contextPrimitive,
  headerLength,
  octetString,
  oid,
  sequence,
  smallInteger,
  tlv,
  Tag,
  unsignedInteger,
  utf8String,
  x509Time,
} from './der.js';
import { encodeName } from './name.js';
import { SERVER_SVID_MARKER, SERVER_SVID_MARKER_OID } from '../spiffe/reserved-id.js';

const VERSION_V3 = contextConstructed(0, smallInteger(2));

// keyUsage, critical: digitalSignature only (bit 0) for EC/Ed25519 keys; RSA keys also get
// keyEncipherment (bit 2) so TLS 1.2 RSA key transport keeps working. The standard allows
// both; SPIRE sets digitalSignature|keyEncipherment|keyAgreement on every leaf, but
// keyAgreement means nothing for ECDSA/RSA certificates used with (EC)DHE.
const KU_EC = sequence(oid('2.5.29.15'), boolean(true), octetString(bitString(Buffer.from([0x80]), 7)));
const KU_RSA = sequence(oid('2.5.29.15'), boolean(true), octetString(bitString(Buffer.from([0xa0]), 5)));
// extKeyUsage: serverAuth + clientAuth (both MUST be present when the extension is).
const EKU = sequence(oid('2.5.29.37'), octetString(sequence(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))));
// basicConstraints, critical: cA=false (DER omits the default, leaving an empty SEQUENCE).
const BC_LEAF = sequence(oid('2.5.29.19'), boolean(true), octetString(sequence()));
const OID_SKI = oid('2.5.29.14');
const OID_AKI = oid('2.5.29.35');
const OID_SAN = oid('2.5.29.17');
// The server SVID's marker (see src/spiffe/reserved-id.ts): non-critical, so other TLS stacks
// ignore it; only a leaf built with `serverMarker` (the CA's server issuance) carries it.
const SERVER_MARKER_EXT = sequence(oid(SERVER_SVID_MARKER_OID), octetString(utf8String(SERVER_SVID_MARKER)));

/** Default subject organization of leaf SVIDs (SPIRE writes O=SPIRE, C=US). */
export const LEAF_ORGANIZATION = 'Sigil';
/** Default subject country of leaf SVIDs. */
export const LEAF_COUNTRY = 'US';
const UB_COMMON_NAME = 64;

/** What each leaf varies in. */
export interface LeafFields {
  /** Positive serial as big-endian magnitude bytes. */
  readonly serial: Uint8Array;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  /** DER SubjectPublicKeyInfo, used byte for byte. */
  readonly spki: Uint8Array;
  /** SHA-1 key identifier of `spki`. */
  readonly subjectKeyId: Uint8Array;
  /** The one URI SAN. */
  readonly spiffeId: string;
  /** Extra DNS SANs (already validated); the first also becomes the subject CN, as SPIRE does. */
  readonly dnsNames: readonly string[];
  /** True for RSA subject keys (adds keyEncipherment). */
  readonly rsa: boolean;
  /** True only for the server's own SVID: adds the marker agents require of the server. */
  readonly serverMarker?: boolean;
}

/** Settings of a LeafTemplate. */
export interface LeafTemplateOptions {
  /** DER Name of the issuing CA's subject, byte for byte. */
  readonly issuerName: Uint8Array;
  /** The issuing CA's subject key identifier. */
  readonly authorityKeyId: Uint8Array;
  /** How the CA signs. */
  readonly scheme: SignatureScheme;
}

const DNS_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/** Throws ERR_INVALID_ARGUMENT (reason `bad-dns-name`) unless `name` is a DNS name, optionally with a leading `*.` wildcard. */
export function checkDnsName(name: string): void {
  const bare = name.startsWith('*.') ? name.slice(2) : name;
  const ok = typeof name === 'string' && name.length <= 253 && bare.length > 0 && bare.split('.').every((l) => DNS_LABEL.test(l));
  if (!ok) throw new SigilError('ERR_INVALID_ARGUMENT', `invalid DNS name ${JSON.stringify(String(name).slice(0, 80))}`, { reason: 'bad-dns-name' });
}

/** Serials drawn per call to the CSPRNG: one call costs about as much as 16 bytes or 4 KiB. */
const SERIALS_PER_DRAW = 256;
let serialBytes = Buffer.alloc(0);
let serialAt = 0;

/**
 * A new random positive 128-bit serial (16 magnitude bytes, never zero). The bytes come from
 * randomBytes drawn a few KiB at a time (a serial is public, not a secret); each draw is a new
 * buffer, so a serial handed out is never overwritten.
 */
export function randomSerial(): Buffer {
  for (;;) {
    if (serialAt + 16 > serialBytes.length) {
      serialBytes = randomBytes(16 * SERIALS_PER_DRAW);
      serialAt = 0;
    }
    const b = serialBytes.subarray(serialAt, serialAt + 16);
    serialAt += 16;
    if (b.some((x) => x !== 0)) return b;
  }
}

/** Lowercase hex of a serial magnitude, without leading zeros. */
export function serialHex(serial: Uint8Array): string {
  const hex = Buffer.from(serial).toString('hex').replace(/^0+/, '');
  return hex === '' ? '0' : hex;
}

/** Builds X.509-SVID leaves for one CA. */
export class LeafTemplate {
  /** What the template was built from (handed to signing threads to build the same leaves). */
  readonly options: LeafTemplateOptions;
  readonly #scheme: SignatureScheme;
  readonly #sigAlgAndIssuer: Buffer;
  readonly #fixedExtsEc: Buffer;
  readonly #fixedExtsRsa: Buffer;
  readonly #aki: Buffer;
  readonly #plainSubject: Buffer;

  constructor(options: LeafTemplateOptions) {
    this.options = options;
    this.#scheme = options.scheme;
    this.#sigAlgAndIssuer = Buffer.concat([options.scheme.algorithmId, options.issuerName]);
    this.#fixedExtsEc = Buffer.concat([KU_EC, EKU, BC_LEAF]);
    this.#fixedExtsRsa = Buffer.concat([KU_RSA, EKU, BC_LEAF]);
    this.#aki = sequence(OID_AKI, octetString(sequence(contextPrimitive(0, options.authorityKeyId))));
    this.#plainSubject = encodeName({ country: LEAF_COUNTRY, organization: LEAF_ORGANIZATION });
  }

  /** The DER TBSCertificate for these fields. */
  tbs(f: LeafFields): Buffer {
    const cn = f.dnsNames[0];
    const subject =
      cn !== undefined && cn.length <= UB_COMMON_NAME
        ? encodeName({ country: LEAF_COUNTRY, organization: LEAF_ORGANIZATION, commonName: cn })
        : this.#plainSubject;
    const names: Buffer[] = [contextPrimitive(6, Buffer.from(f.spiffeId, 'latin1'))];
    for (const d of f.dnsNames) names.push(contextPrimitive(2, Buffer.from(d, 'latin1')));
    // The subject is never empty here, so the SAN need not be critical (X509-SVID 3.1).
    const san = sequence(OID_SAN, octetString(sequence(...names)));
    const ski = sequence(OID_SKI, octetString(tlv(Tag.octetString, f.subjectKeyId)));
    const marker = f.serverMarker === true ? SERVER_MARKER_EXT : Buffer.alloc(0);
    const exts = contextConstructed(3, sequence(f.rsa ? this.#fixedExtsRsa : this.#fixedExtsEc, ski, this.#aki, san, marker));
    const validity = sequence(x509Time(f.notBeforeMs), x509Time(f.notAfterMs));
    return sequence(VERSION_V3, unsignedInteger(f.serial), this.#sigAlgAndIssuer, validity, subject, f.spki, exts);
  }

  /** The DER Certificate from a TBSCertificate and its signature (DER ECDSA or RSA bytes). */
  certificate(tbs: Uint8Array, signature: Uint8Array): Buffer {
    const alg = this.#scheme.algorithmId;
    const sigLen = signature.length + 1;
    const bodyLen = tbs.length + alg.length + headerLength(sigLen) + sigLen;
    const out = Buffer.allocUnsafe(headerLength(bodyLen) + bodyLen);
    let off = writeHeader(out, 0, Tag.sequence, bodyLen);
    out.set(tbs, off);
    off += tbs.length;
    out.set(alg, off);
    off += alg.length;
    off = writeHeader(out, off, Tag.bitString, sigLen);
    out[off++] = 0;
    out.set(signature, off);
    return out;
  }
}

function writeHeader(out: Buffer, at: number, tag: number, len: number): number {
  out[at] = tag;
  const hl = headerLength(len);
  if (hl === 2) {
    out[at + 1] = len;
  } else {
    out[at + 1] = 0x80 | (hl - 2);
    for (let i = hl - 1, v = len; i >= 2; i--, v = Math.floor(v / 256)) out[at + i] = v & 0xff;
  }
  return at + hl;
}
