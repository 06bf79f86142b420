/**
 * Signing-certificate (CA) profile of the X509-SVID standard: cA=true, critical keyUsage
 * keyCertSign+cRLSign (never digitalSignature), SKI/AKI, and a URI SAN with the trust
 * domain's ID (no path). Built with the same DER pieces as the leaves; signed through
 * whatever signs for the issuer (a managed key, or the upstream authority's key).
 */
import {
  Tag,
  bitString,
  boolean,
  bytesOf,
  children,
  contentOf,
  contextConstructed,
  contextPrimitive,
  decodeOid,
  decodeTime,
  expectTag,
  octetString,
  oid,
  readWhole,
  sequence,
  smallInteger,
  tlv,
  unsignedInteger,
  x509Time,
} from './der.js';

const BC_CA = sequence(oid('2.5.29.19'), boolean(true), octetString(sequence(boolean(true))));
const KU_CA = sequence(oid('2.5.29.15'), boolean(true), octetString(bitString(Buffer.from([0x06]), 1)));

/** The variable parts of a CA certificate. */
export interface CaCertFields {
  readonly serial: Uint8Array;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  readonly subjectName: Uint8Array;
  readonly issuerName: Uint8Array;
  readonly spki: Uint8Array;
  readonly subjectKeyId: Uint8Array;
  readonly authorityKeyId: Uint8Array;
  /** `spiffe://<trust domain>`. */
  readonly trustDomainId: string;
  /** DER AlgorithmIdentifier of the issuer's signature. */
  readonly algorithmId: Uint8Array;
}

/** The DER TBSCertificate of a CA certificate. */
export function caTbs(f: CaCertFields): Buffer {
  const exts = sequence(
    KU_CA,
    BC_CA,
    sequence(oid('2.5.29.14'), octetString(tlv(Tag.octetString, f.subjectKeyId))),
    sequence(oid('2.5.29.35'), octetString(sequence(contextPrimitive(0, f.authorityKeyId)))),
    sequence(oid('2.5.29.17'), octetString(sequence(contextPrimitive(6, Buffer.from(f.trustDomainId, 'latin1'))))),
  );
  return sequence(
    contextConstructed(0, smallInteger(2)),
    unsignedInteger(f.serial),
    f.algorithmId,
    f.issuerName,
    sequence(x509Time(f.notBeforeMs), x509Time(f.notAfterMs)),
    f.subjectName,
    f.spki,
    contextConstructed(3, exts),
  );
}

/** A DER Certificate from its TBS, algorithm identifier and signature. */
export function assembleCertificate(tbs: Uint8Array, algorithmId: Uint8Array, signature: Uint8Array): Buffer {
  return sequence(tbs, algorithmId, bitString(signature));
}

/** The fields of a certificate Sigil needs to issue under it or to schedule around it. */
export interface CertInfo {
  /** Raw DER of the subject Name. */
  readonly subjectName: Buffer;
  /** Raw DER of the issuer Name. */
  readonly issuerName: Buffer;
  readonly spki: Buffer;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  /** The subjectKeyIdentifier extension's value, if present. */
  readonly subjectKeyId: Buffer | undefined;
  /** basicConstraints cA. */
  readonly isCa: boolean;
}

/** Reads a DER certificate's TBS fields without an ASN.1 object model; throws ERR_INVALID_ARGUMENT (`bad-der`). */
export function readCertInfo(der: Uint8Array): CertInfo {
  const root = expectTag(readWhole(der), Tag.sequence, 'Certificate');
  const [tbsNode] = children(der, root);
  const fields = children(der, expectTag(tbsNode, Tag.sequence, 'TBSCertificate'));
  let i = fields[0]?.tag === 0xa0 ? 1 : 0;
  i++; // serial
  i++; // signature
  const issuer = expectTag(fields[i++], Tag.sequence, 'issuer');
  const validity = expectTag(fields[i++], Tag.sequence, 'validity');
  const subject = expectTag(fields[i++], Tag.sequence, 'subject');
  const spki = expectTag(fields[i++], Tag.sequence, 'subjectPublicKeyInfo');
  const [nb, na] = children(der, validity);
  if (nb === undefined || na === undefined) throw new RangeError('validity');
  let subjectKeyId: Buffer | undefined;
  let isCa = false;
  for (; i < fields.length; i++) {
    const f = fields[i] as (typeof fields)[number];
    if (f.tag !== 0xa3) continue;
    const [extSeq] = children(der, f);
    for (const ext of children(der, expectTag(extSeq, Tag.sequence, 'extensions'))) {
      const parts = children(der, ext);
      const id = decodeOid(contentOf(der, expectTag(parts[0], Tag.oid, 'extnID')));
      const value = expectTag(parts[parts.length - 1], Tag.octetString, 'extnValue');
      const inner = contentOf(der, value);
      if (id === '2.5.29.14') {
        subjectKeyId = Buffer.from(contentOf(inner, expectTag(readWhole(inner), Tag.octetString, 'keyIdentifier')));
      } else if (id === '2.5.29.19') {
        const [first] = children(inner, expectTag(readWhole(inner), Tag.sequence, 'BasicConstraints'));
        isCa = first !== undefined && first.tag === Tag.boolean && inner[first.contentStart] === 0xff;
      }
    }
  }
  return {
    subjectName: Buffer.from(bytesOf(der, subject)),
    issuerName: Buffer.from(bytesOf(der, issuer)),
    spki: Buffer.from(bytesOf(der, spki)),
    notBeforeMs: decodeTime(nb.tag, contentOf(der, nb)),
    notAfterMs: decodeTime(na.tag, contentOf(der, na)),
    subjectKeyId,
    isCa,
  };
}
