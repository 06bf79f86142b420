/**
 * The key manager plugin interface: where the server's CA and JWT signing keys live.
 * Implementations: `memory` (tests), `disk` (envelope-encrypted files, the KEK in a file or a
 * PKCS#11 token) and `pkcs11` sign mode (the keys themselves in the token).
 */
import type { KeyObject } from 'node:crypto';

/** Key types Sigil can create for CAs, JWT signing and SVIDs. */
export type KeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048' | 'rsa-4096';

/** A private key held by a key manager; the private half never leaves it. */
export interface ManagedKey {
  /** The caller-chosen key ID (e.g. `x509-ca-<n>`, `jwt-<kid>`). */
  readonly id: string;
  readonly type: KeyType;
  readonly publicKey: KeyObject;
  /**
   * Signs `data` with the key. The digest is SHA-256 for p256/rsa, SHA-384 for p384;
   * ECDSA signatures are DER-encoded (as X.509 wants) unless `dsaEncoding` is `ieee-p1363` (as JWS wants).
   */
  sign(data: Uint8Array, options?: { readonly dsaEncoding?: 'der' | 'ieee-p1363' }): Promise<Buffer>;
}

/** Stores and uses private keys by ID. */
export interface KeyManager {
  /** Creates (or replaces) the key with this ID. */
  generateKey(id: string, type: KeyType): Promise<ManagedKey>;
  /** The key with this ID, or undefined. */
  getKey(id: string): Promise<ManagedKey | undefined>;
  /** Every key held. */
  listKeys(): Promise<ManagedKey[]>;
  /** Forgets the key (no error if absent). */
  deleteKey(id: string): Promise<void>;
}

/** The signature hash used for a key type. */
export function hashForKeyType(type: KeyType): 'sha256' | 'sha384' {
  return type === 'ec-p384' ? 'sha384' : 'sha256';
}

/** The JWS algorithm used for a key type. */
export function jwsAlgForKeyType(type: KeyType): 'ES256' | 'ES384' | 'RS256' {
  if (type === 'ec-p256') return 'ES256';
  if (type === 'ec-p384') return 'ES384';
  return 'RS256';
}
