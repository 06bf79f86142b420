/** DER X.500 Names for Sigil's certificates: one attribute per RDN, in the usual C, O, CN order. */
import { oid, printableString, sequence, set, utf8String } from './der.js';

const OID_COUNTRY = oid('2.5.4.6');
const OID_ORGANIZATION = oid('2.5.4.10');
const OID_COMMON_NAME = oid('2.5.4.3');
const OID_SERIAL_NUMBER = oid('2.5.4.5');

/** Attributes of a distinguished name Sigil writes. */
export interface NameFields {
  readonly country?: string | undefined;
  readonly organization?: string | undefined;
  readonly commonName?: string | undefined;
  /** The subject's serialNumber attribute (SPIRE writes the certificate serial here so CA names differ). */
  readonly serialNumber?: string | undefined;
}

/** Encodes a Name; country and serialNumber as PrintableString, the rest as UTF8String (RFC 5280). */
export function encodeName(fields: NameFields): Buffer {
  const rdns: Buffer[] = [];
  if (fields.country !== undefined) rdns.push(set(sequence(OID_COUNTRY, printableString(fields.country))));
  if (fields.organization !== undefined) rdns.push(set(sequence(OID_ORGANIZATION, utf8String(fields.organization))));
  if (fields.commonName !== undefined) rdns.push(set(sequence(OID_COMMON_NAME, utf8String(fields.commonName))));
  if (fields.serialNumber !== undefined) rdns.push(set(sequence(OID_SERIAL_NUMBER, printableString(fields.serialNumber))));
  return sequence(...rdns);
}
