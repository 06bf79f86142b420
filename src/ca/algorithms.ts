/**
 * Signature algorithms of Sigil's certificates and of the CSRs it accepts, as precomputed
 * DER AlgorithmIdentifiers plus the Node digest name for crypto.sign/verify.
 */
import type { KeyObject } from 'node:crypto';
import { SigilError } from '../common/errors.js';
import type { KeyType } from '../plugin/key-manager.js';
import { NULL, oid, sequence } from './der.js';

/** A signature algorithm: Node's digest name (null for Ed25519) and its DER AlgorithmIdentifier. */
export interface SignatureScheme {
  readonly hash: 'sha256' | 'sha384' | 'sha512' | null;
  readonly algorithmId: Buffer;
}

const ECDSA_SHA256: SignatureScheme = { hash: 'sha256', algorithmId: sequence(oid('1.2.840.10045.4.3.2')) };
const ECDSA_SHA384: SignatureScheme = { hash: 'sha384', algorithmId: sequence(oid('1.2.840.10045.4.3.3')) };
const ECDSA_SHA512: SignatureScheme = { hash: 'sha512', algorithmId: sequence(oid('1.2.840.10045.4.3.4')) };
// RFC 4055: the parameters of the PKCS#1 v1.5 algorithms are an explicit NULL.
const RSA_SHA256: SignatureScheme = { hash: 'sha256', algorithmId: sequence(oid('1.2.840.113549.1.1.11'), NULL) };
const ED25519: SignatureScheme = { hash: null, algorithmId: sequence(oid('1.3.101.112')) };

/** The scheme a managed key of this type signs with (matches hashForKeyType). */
export function schemeForKeyType(type: KeyType): SignatureScheme {
  switch (type) {
    case 'ec-p256':
      return ECDSA_SHA256;
    case 'ec-p384':
      return ECDSA_SHA384;
    case 'rsa-2048':
    case 'rsa-4096':
      return RSA_SHA256;
  }
}

/** The scheme an operator-provided private key (the upstream CA's) signs with. */
export function schemeForKeyObject(key: KeyObject): SignatureScheme {
  const kind = key.asymmetricKeyType;
  if (kind === 'rsa') return RSA_SHA256;
  if (kind === 'ed25519') return ED25519;
  if (kind === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1') return ECDSA_SHA256;
    if (curve === 'secp384r1') return ECDSA_SHA384;
    if (curve === 'secp521r1') return ECDSA_SHA512;
  }
  throw new SigilError('ERR_CONFIG_INVALID', `unsupported signing key type ${String(kind)}`, { reason: 'unsupported-key' });
}

/** Signature algorithms accepted on CSRs, by OID. */
export const CSR_SIGNATURE_ALGORITHMS: ReadonlyMap<string, { hash: SignatureScheme['hash']; keyType: 'ec' | 'rsa' | 'ed25519' }> = new Map([
  ['1.2.840.10045.4.3.2', { hash: 'sha256', keyType: 'ec' }],
  ['1.2.840.10045.4.3.3', { hash: 'sha384', keyType: 'ec' }],
  ['1.2.840.10045.4.3.4', { hash: 'sha512', keyType: 'ec' }],
  ['1.2.840.113549.1.1.11', { hash: 'sha256', keyType: 'rsa' }],
  ['1.2.840.113549.1.1.12', { hash: 'sha384', keyType: 'rsa' }],
  ['1.2.840.113549.1.1.13', { hash: 'sha512', keyType: 'rsa' }],
  ['1.3.101.112', { hash: null, keyType: 'ed25519' }],
] as const);

/** Minimum RSA modulus accepted for SVID keys. */
export const MIN_RSA_BITS = 2048;

/**
 * Checks that an SVID public key is one Sigil will certify (EC P-256/P-384/P-521, RSA of at
 * least 2048 bits, Ed25519) and says whether it is RSA (which gets keyEncipherment).
 */
export function checkSvidPublicKey(key: KeyObject): { rsa: boolean } {
  if (key.type !== 'public') {
    throw new SigilError('ERR_INVALID_ARGUMENT', 'SVID key must be a public key', { reason: 'not-public-key' });
  }
  const kind = key.asymmetricKeyType;
  if (kind === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === 'prime256v1' || curve === 'secp384r1' || curve === 'secp521r1') return { rsa: false };
    throw new SigilError('ERR_INVALID_ARGUMENT', `unsupported EC curve ${String(curve)}`, { reason: 'unsupported-key' });
  }
  if (kind === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      throw new SigilError('ERR_INVALID_ARGUMENT', `RSA key of ${bits} bits is too small, want at least ${MIN_RSA_BITS}`, { reason: 'weak-key' });
    }
    return { rsa: true };
  }
  if (kind === 'ed25519') return { rsa: false };
  throw new SigilError('ERR_INVALID_ARGUMENT', `unsupported key type ${String(kind)}`, { reason: 'unsupported-key' });
}
