/**
 * One certificate parsed once: its DER, Node's X509Certificate (for signatures), and the
 * extension facts SPIFFE validation needs, read straight from the DER. Bundles and SVIDs
 * keep these, so verifying a peer chain never re-parses a trust anchor.
 */
import { constants, createPublicKey, verify as verifySignature, X509Certificate, type KeyObject } from 'node:crypto';
import { childrenOf, contentOf, DerError, expectTlv, oidToString, smallUint, timeOf, type Tlv } from './der.js';

/** Key usage bits, numbered as in RFC 5280 4.2.1.3 (bit n is `1 << n`). */
export const KeyUsage = {
  digitalSignature: 1 << 0,
  nonRepudiation: 1 << 1,
  keyEncipherment: 1 << 2,
  dataEncipherment: 1 << 3,
  keyAgreement: 1 << 4,
  keyCertSign: 1 << 5,
  cRLSign: 1 << 6,
  encipherOnly: 1 << 7,
  decipherOnly: 1 << 8,
} as const;

/** Well-known OIDs used by the SPIFFE rules. */
export const Oid = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  extKeyUsage: '2.5.29.37',
  nameConstraints: '2.5.29.30',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** Extensions whose semantics the validator implements; any other critical one fails a path. */
const UNDERSTOOD = new Set<string>([
  Oid.basicConstraints,
  Oid.keyUsage,
  Oid.subjectAltName,
  Oid.extKeyUsage,
  Oid.subjectKeyIdentifier,
  Oid.authorityKeyIdentifier,
]);

/** The extension facts of a certificate that SPIFFE validation looks at. */
export interface CertificateFacts {
  /** serialNumber as uppercase hex without leading zero bytes (as Node prints it). */
  readonly serial: string;
  /** The signed TBSCertificate bytes. */
  readonly tbs: Uint8Array;
  /** signatureAlgorithm OID and its raw parameters (empty when absent). */
  readonly signatureAlgorithm: { readonly oid: string; readonly params: Uint8Array };
  /** The signature bits. */
  readonly signature: Uint8Array;
  /** subjectPublicKeyInfo, raw DER. */
  readonly spki: Uint8Array;
  /** Issuer Name, raw DER (compared byte-wise when building paths). */
  readonly issuerRaw: Uint8Array;
  /** Subject Name, raw DER. */
  readonly subjectRaw: Uint8Array;
  /** True when the subject Name has no RDNs. */
  readonly subjectEmpty: boolean;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** basicConstraints, or undefined when absent. */
  readonly basicConstraints: { readonly critical: boolean; readonly ca: boolean; readonly pathLen: number | undefined } | undefined;
  /** keyUsage bits (see KeyUsage), or undefined when absent. */
  readonly keyUsage: { readonly critical: boolean; readonly bits: number } | undefined;
  /** subjectAltName: URI entries and the count of other entries, or undefined when absent. */
  readonly subjectAltName: { readonly critical: boolean; readonly uris: readonly string[]; readonly others: number } | undefined;
  /** extKeyUsage purpose OIDs, or undefined when absent. */
  readonly extKeyUsage: { readonly critical: boolean; readonly purposes: readonly string[] } | undefined;
  /** OIDs of critical extensions this validator does not implement. */
  readonly unhandledCritical: readonly string[];
}

/** Digest of each signature algorithm verified directly (others fall back to X509Certificate). */
const SIG_HASH: Record<string, string | null> = {
  '1.2.840.10045.4.3.2': 'sha256', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.113549.1.1.11': 'sha256', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.3.101.112': null, // Ed25519
};

/** Parsed chain certificates by DER: peers present the same intermediates again and again. */
const CACHE = new Map<string, ParsedCertificate>();
const CACHE_MAX = 512;

/** A certificate parsed once and kept: DER, extension facts, cached public key and X509Certificate. */
export class ParsedCertificate {
  /** The DER encoding. */
  readonly der: Uint8Array;
  /** Extension facts read from the DER. */
  readonly facts: CertificateFacts;
  #x509: X509Certificate | undefined;
  #publicKey: KeyObject | undefined;

  private constructor(der: Uint8Array, facts: CertificateFacts, x509?: X509Certificate) {
    this.der = der;
    this.facts = facts;
    this.#x509 = x509;
  }

  /**
   * Parses one DER certificate; throws DerError when malformed. Node's X509Certificate is
   * not built here: under OpenSSL 3 it costs ~150 µs, mostly decoding a key a leaf's
   * verifier never needs.
   */
  static fromDer(der: Uint8Array): ParsedCertificate {
    // Keep an exact-length copy: callers may pass views into larger buffers they reuse.
    const own = new Uint8Array(der);
    return new ParsedCertificate(own, readFacts(own));
  }

  /** Like fromDer, but returns the same value for the same DER from a bounded cache. */
  static fromDerCached(der: Uint8Array): ParsedCertificate {
    const key = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('latin1');
    const hit = CACHE.get(key);
    if (hit !== undefined) return hit;
    const parsed = ParsedCertificate.fromDer(der);
    if (CACHE.size >= CACHE_MAX) CACHE.delete(CACHE.keys().next().value!);
    CACHE.set(key, parsed);
    return parsed;
  }

  /** Wraps an existing X509Certificate. */
  static fromX509(x509: X509Certificate): ParsedCertificate {
    const der = new Uint8Array(x509.raw);
    return new ParsedCertificate(der, readFacts(der), x509);
  }

  /** Node's view of the certificate, built on first use. */
  get x509(): X509Certificate {
    this.#x509 ??= new X509Certificate(this.der);
    return this.#x509;
  }

  /** The subject public key, imported once. */
  get publicKey(): KeyObject {
    this.#publicKey ??= createPublicKey({ key: Buffer.from(this.facts.spki), format: 'der', type: 'spki' });
    return this.#publicKey;
  }

  /** The serial number as uppercase hex, as Node prints it. */
  get serial(): string {
    return this.facts.serial;
  }

  /** True when subject and issuer are the same name (RFC 5280 "self-issued"). */
  get selfIssued(): boolean {
    return Buffer.from(this.facts.subjectRaw).equals(this.facts.issuerRaw);
  }

  /** True when this certificate says it is a CA (basicConstraints cA=true). */
  get isCa(): boolean {
    return this.facts.basicConstraints?.ca === true;
  }

  /** True when `issuer`'s key verifies this certificate's signature. */
  isSignedBy(issuer: ParsedCertificate): boolean {
    const { oid } = this.facts.signatureAlgorithm;
    const hash = SIG_HASH[oid];
    try {
      if (hash !== undefined) return verifySignature(hash, this.facts.tbs, issuer.publicKey, this.facts.signature);
      if (oid === '1.2.840.113549.1.1.10') {
        const pss = readPssParams(this.facts.signatureAlgorithm.params);
        return verifySignature(
          pss.hash,
          this.facts.tbs,
          { key: issuer.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: pss.saltLength },
          this.facts.signature,
        );
      }
      return this.x509.verify(issuer.publicKey);
    } catch {
      // A key of the wrong type for the algorithm is a failed signature, not a crash.
      return false;
    }
  }
}

const HASH_OID: Record<string, string> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

/** RSASSA-PSS-params (RFC 4055): hashAlgorithm [0] (default SHA-1), saltLength [2] (default 20). */
function readPssParams(params: Uint8Array): { hash: string; saltLength: number } {
  let hash = 'sha1';
  let saltLength = 20;
  if (params.length === 0) return { hash, saltLength };
  const seq = expectTlv(params, 0, params.length, 0x30, 'RSASSA-PSS-params');
  for (const f of childrenOf(params, seq)) {
    if (f.tag === 0xa0) {
      const alg = expectTlv(params, f.contentStart, f.end, 0x30, 'hashAlgorithm');
      const oidTlv = expectTlv(params, alg.contentStart, alg.end, 0x06, 'hash OID');
      const name = HASH_OID[oidToString(contentOf(params, oidTlv))];
      if (name === undefined) throw new DerError('unsupported PSS hash');
      hash = name;
    } else if (f.tag === 0xa2) {
      const n = expectTlv(params, f.contentStart, f.end, 0x02, 'saltLength');
      saltLength = smallUint(contentOf(params, n));
    }
  }
  return { hash, saltLength };
}

function readFacts(der: Uint8Array): CertificateFacts {
  const cert = expectTlv(der, 0, der.length, 0x30, 'Certificate');
  if (cert.end !== der.length) throw new DerError('trailing bytes after certificate');
  const tbs = expectTlv(der, cert.contentStart, cert.end, 0x30, 'TBSCertificate');
  const sigAlg = expectTlv(der, tbs.end, cert.end, 0x30, 'signatureAlgorithm');
  const sigBits = expectTlv(der, sigAlg.end, cert.end, 0x03, 'signatureValue');
  if (sigBits.end !== cert.end || sigBits.end - sigBits.contentStart < 2 || der[sigBits.contentStart] !== 0) {
    throw new DerError('bad signatureValue');
  }
  const sigAlgOid = expectTlv(der, sigAlg.contentStart, sigAlg.end, 0x06, 'signature algorithm OID');
  const fields = childrenOf(der, tbs);
  let i = 0;
  if (fields[i]?.tag === 0xa0) i++; // version
  const serial = fields[i++];
  i++; // signature
  const issuer = fields[i++];
  const validity = fields[i++];
  const subject = fields[i++];
  const spki = fields[i++];
  if (serial?.tag !== 0x02 || issuer?.tag !== 0x30 || validity?.tag !== 0x30 || subject?.tag !== 0x30 || spki?.tag !== 0x30) {
    throw new DerError('bad TBSCertificate');
  }
  const times = childrenOf(der, validity);
  if (times.length !== 2) throw new DerError('bad validity');
  let extensions: Tlv | undefined;
  for (; i < fields.length; i++) {
    if (fields[i]!.tag === 0xa3) extensions = fields[i];
  }

  let basicConstraints: CertificateFacts['basicConstraints'];
  let keyUsage: CertificateFacts['keyUsage'];
  let subjectAltName: CertificateFacts['subjectAltName'];
  let extKeyUsage: CertificateFacts['extKeyUsage'];
  const unhandledCritical: string[] = [];
  if (extensions !== undefined) {
    const seq = expectTlv(der, extensions.contentStart, extensions.end, 0x30, 'Extensions');
    const seen = new Set<string>();
    for (const ext of childrenOf(der, seq)) {
      const parts = childrenOf(der, ext);
      const oidTlv = parts[0];
      if (oidTlv?.tag !== 0x06) throw new DerError('bad extension id');
      const oid = oidToString(contentOf(der, oidTlv));
      if (seen.has(oid)) throw new DerError(`duplicate extension ${oid}`);
      seen.add(oid);
      let critical = false;
      let valueTlv = parts[1];
      if (valueTlv?.tag === 0x01) {
        critical = contentOf(der, valueTlv)[0] !== 0;
        valueTlv = parts[2];
      }
      if (valueTlv?.tag !== 0x04) throw new DerError('bad extension value');
      const value = contentOf(der, valueTlv);
      switch (oid) {
        case Oid.basicConstraints:
          basicConstraints = { critical, ...readBasicConstraints(value) };
          break;
        case Oid.keyUsage:
          keyUsage = { critical, bits: readKeyUsage(value) };
          break;
        case Oid.subjectAltName:
          subjectAltName = { critical, ...readSan(value) };
          break;
        case Oid.extKeyUsage:
          extKeyUsage = { critical, purposes: readEku(value) };
          break;
        default:
          if (critical && !UNDERSTOOD.has(oid)) unhandledCritical.push(oid);
      }
    }
  }
  let serialBytes = contentOf(der, serial);
  while (serialBytes.length > 1 && serialBytes[0] === 0) serialBytes = serialBytes.subarray(1);
  return {
    serial: Buffer.from(serialBytes).toString('hex').toUpperCase(),
    tbs: der.subarray(tbs.start, tbs.end),
    signatureAlgorithm: { oid: oidToString(contentOf(der, sigAlgOid)), params: der.subarray(sigAlgOid.end, sigAlg.end) },
    signature: der.subarray(sigBits.contentStart + 1, sigBits.end),
    spki: der.subarray(spki.start, spki.end),
    issuerRaw: der.subarray(issuer.start, issuer.end),
    subjectRaw: der.subarray(subject.start, subject.end),
    subjectEmpty: subject.end === subject.contentStart,
    notBefore: timeOf(der, times[0]!),
    notAfter: timeOf(der, times[1]!),
    basicConstraints,
    keyUsage,
    subjectAltName,
    extKeyUsage,
    unhandledCritical,
  };
}

function readBasicConstraints(v: Uint8Array): { ca: boolean; pathLen: number | undefined } {
  const seq = expectTlv(v, 0, v.length, 0x30, 'BasicConstraints');
  let ca = false;
  let pathLen: number | undefined;
  for (const f of childrenOf(v, seq)) {
    if (f.tag === 0x01) ca = contentOf(v, f)[0] !== 0;
    else if (f.tag === 0x02) pathLen = smallUint(contentOf(v, f));
    else throw new DerError('bad BasicConstraints');
  }
  return { ca, pathLen };
}

function readKeyUsage(v: Uint8Array): number {
  const bs = expectTlv(v, 0, v.length, 0x03, 'KeyUsage');
  const c = contentOf(v, bs);
  let bits = 0;
  // c[0] is the unused-bit count; named bit n is bit (7 - n % 8) of byte 1 + n / 8.
  for (let n = 0; n < 9; n++) {
    const byte = c[1 + (n >> 3)];
    if (byte !== undefined && (byte & (0x80 >> (n & 7))) !== 0) bits |= 1 << n;
  }
  return bits;
}

function readSan(v: Uint8Array): { uris: string[]; others: number } {
  const seq = expectTlv(v, 0, v.length, 0x30, 'GeneralNames');
  const uris: string[] = [];
  let others = 0;
  for (const gn of childrenOf(v, seq)) {
    // [6] IMPLICIT IA5String uniformResourceIdentifier
    if (gn.tag === 0x86) uris.push(Buffer.from(contentOf(v, gn)).toString('latin1'));
    else others++;
  }
  return { uris, others };
}

function readEku(v: Uint8Array): string[] {
  const seq = expectTlv(v, 0, v.length, 0x30, 'ExtKeyUsageSyntax');
  return childrenOf(v, seq).map((t) => {
    if (t.tag !== 0x06) throw new DerError('bad KeyPurposeId');
    return oidToString(contentOf(v, t));
  });
}
